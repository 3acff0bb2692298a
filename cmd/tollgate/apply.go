package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	yamlv3 "go.yaml.in/yaml/v3"

	"github.com/tollgate-dev/tollgate/model"
)

// applyOptions are the flags of tollgate apply.
type applyOptions struct {
	clientOptions
	Files     []string
	DryRun    bool
	Namespace string
}

// newApplyCmd returns tollgate apply: create or replace objects from YAML
// files through the admin API.
func newApplyCmd() *cobra.Command {
	var o applyOptions
	cmd := &cobra.Command{
		Use:   "apply -f FILE|DIR [-f ...]",
		Short: "Create or replace policy objects through a running tollgate's admin API",
		Long: "apply sends every object of the YAML files given with -f (a directory is read recursively for\n" +
			"*.yaml and *.yml files, skipping hidden ones; - reads standard input) to tollgate's admin API,\n" +
			"which validates it exactly like `tollgate validate` and serves it. Gateways go first, then backends,\n" +
			"routes and policies, so that objects that refer to each other apply in one pass. One line per object:\n" +
			"created, configured or unchanged. A refused object is reported with its violations, the others are\n" +
			"still applied, and apply exits 1. --dry-run validates without storing or serving anything.\n" +
			"Writes need credentials: --token, --token-file (or TOLLGATE_TOKEN), or a client certificate.",
		Example: "  tollgate apply -f policies/ --token-file ~/.tollgate-token\n" +
			"  tollgate apply -f route.yaml -n team-a --dry-run",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runApply(cmd, &o) },
	}
	addClientFlags(cmd, &o.clientOptions)
	f := cmd.Flags()
	f.StringArrayVarP(&o.Files, "filename", "f", nil, "file or directory of objects to apply (repeatable; - for standard input)")
	f.BoolVar(&o.DryRun, "dry-run", false, "validate on the server like a real write, but store and serve nothing")
	f.StringVarP(&o.Namespace, "namespace", "n", "", `namespace of the objects that name none (default "default")`)
	return cmd
}

// runApply applies every document of o.Files, one by one.
func runApply(cmd *cobra.Command, o *applyOptions) error {
	if len(o.Files) == 0 {
		return fmt.Errorf("apply needs -f FILE or -f DIR: the objects to apply")
	}
	c, err := o.client()
	if err != nil {
		return err
	}
	stderr := cmd.ErrOrStderr()
	docs, localFailed, err := loadDocuments(o.Files, cmd.InOrStdin(), o.Namespace, stderr)
	if err != nil {
		return err
	}
	if len(docs) == 0 && localFailed == 0 {
		return fmt.Errorf("no objects in %s: apply needs YAML documents with kind and metadata.name", strings.Join(o.Files, ", "))
	}
	sortForApply(docs)
	var kinds *kindMap
	if len(docs) > 0 {
		if kinds, err = discover(cmd.Context(), c); err != nil {
			return err
		}
	}
	failed, invalid, answers := applyAll(cmd, c, kinds, docs, o)
	if o.Output != "text" && len(answers) > 0 {
		if err := printObjects(cmd.OutOrStdout(), o.Output, answers); err != nil {
			return err
		}
	}
	if failed += localFailed; failed > 0 {
		fmt.Fprintf(stderr, "%d of %d object(s) not applied\n", failed, len(docs)+localFailed)
		if o.DryRun && invalid && len(docs) > 1 {
			fmt.Fprintln(stderr, "note: a dry run checks each object against what the server holds, not against the other objects "+
				"of this apply: an object that refers to one this apply would create fails it (apply the referred object first)")
		}
		return exitError{code: 1}
	}
	return nil
}

// applyAll applies docs in order, printing a line per object applied (for
// -o text) and the refusals, and returns how many failed, whether one
// was refused as invalid, and the server's answers. A 401 stops it: the
// other writes would fail the same way.
func applyAll(cmd *cobra.Command, c *apiClient, kinds *kindMap, docs []document, o *applyOptions) (failed int, invalid bool, answers []json.RawMessage) {
	stderr := cmd.ErrOrStderr()
	for i, d := range docs {
		outcome, answer, err := applyDocument(cmd.Context(), c, kinds, d, o.DryRun)
		if err == nil {
			answers = append(answers, answer)
			if o.Output == "text" {
				fmt.Fprintf(cmd.OutOrStdout(), "%s %s%s\n", d.ref(), outcome, dryRunSuffix(o.DryRun))
			}
			continue
		}
		failed++
		var locate func(model.Violation) model.Violation
		if r, err := kinds.lookup(d.Kind); err == nil {
			locate = d.locator(violationPath(r, d.Namespace, d.Name))
		}
		printRefusal(stderr, d.where(), err, locate)
		invalid = invalid || isInvalid(err)
		if isUnauthorized(err) {
			fmt.Fprintln(stderr, unauthorizedHint)
			return failed + len(docs) - i - 1, invalid, answers
		}
	}
	return failed, invalid, answers
}

// applyOrder ranks the core kinds: what others refer to goes first, so that
// a directory applies in one pass (gateways and backends, then routes, then
// the policies that attach to them).
var applyOrder = map[string]int{"gateway": 0, "backend": 1, "httproute": 2}

// kindRank is the rank of a kind in applyOrder; policies come last.
func kindRank(kind string) int {
	if r, ok := applyOrder[strings.ToLower(kind)]; ok {
		return r
	}
	return len(applyOrder)
}

// sortForApply orders documents by kind rank, keeping the files' order
// within a rank.
func sortForApply(docs []document) {
	slices.SortStableFunc(docs, func(a, b document) int { return kindRank(a.Kind) - kindRank(b.Kind) })
}

// printObjects prints one object as is, several as a List.
func printObjects(w io.Writer, format string, objs []json.RawMessage) error {
	if len(objs) == 1 {
		return printStructured(w, format, objs[0])
	}
	return printStructured(w, format, listOf(objs))
}

// dryRunSuffix marks the lines of a dry run.
func dryRunSuffix(dryRun bool) string {
	if dryRun {
		return " (dry run)"
	}
	return ""
}

// applyDocument PUTs one document and says what that did: created,
// configured or unchanged. It reads the object first, to tell the last
// two apart.
func applyDocument(ctx context.Context, c *apiClient, kinds *kindMap, d document, dryRun bool) (string, json.RawMessage, error) {
	r, err := kinds.lookup(d.Kind)
	if err != nil {
		return "", nil, err
	}
	var before apiObject
	err = c.do(ctx, http.MethodGet, objectPath(r, d.Namespace, d.Name, false), nil, &before)
	existed := err == nil
	if err != nil && !isNotFound(err) {
		return "", nil, err
	}
	var answer json.RawMessage
	body := rawBody{data: d.Text, contentType: "application/yaml"}
	if err := c.do(ctx, http.MethodPut, objectPath(r, d.Namespace, d.Name, dryRun), body, &answer); err != nil {
		return "", nil, err
	}
	var after apiObject
	if err := json.Unmarshal(answer, &after); err != nil {
		return "", nil, fmt.Errorf("unexpected answer to PUT: %w", err)
	}
	switch {
	case !existed:
		return "created", answer, nil
	case unchanged(&before, &after, dryRun):
		return "unchanged", answer, nil
	default:
		return "configured", answer, nil
	}
}

// unchanged reports whether a PUT left the object as it was: the server
// keeps its resourceVersion then. A dry run stores nothing, so its answer
// is compared by content.
func unchanged(before, after *apiObject, dryRun bool) bool {
	if !dryRun && before.Metadata.ResourceVersion != "" {
		return before.Metadata.ResourceVersion == after.Metadata.ResourceVersion
	}
	return compactJSON(before.Spec) == compactJSON(after.Spec) &&
		maps.Equal(before.Metadata.Labels, after.Metadata.Labels) &&
		maps.Equal(before.Metadata.Annotations, after.Metadata.Annotations)
}

// compactJSON is data without insignificant white space, for comparing.
func compactJSON(data json.RawMessage) string {
	var b bytes.Buffer
	if json.Compact(&b, data) != nil {
		return string(data)
	}
	return b.String()
}

// document is one YAML document of a file given with -f.
type document struct {
	File string
	// Line is the line of the document's first content; Start the line
	// of the file that is Text's first line.
	Line, Start int
	// Text is the document as the file has it, sent as is so that the
	// server's line numbers map back to the file.
	Text                  []byte
	Kind, Namespace, Name string
}

// ref is Kind/namespace/name.
func (d document) ref() string { return refString(d.Kind, d.Namespace, d.Name) }

// where names the document for messages: file:line: ref.
func (d document) where() string { return fmt.Sprintf("%s:%d: %s", d.File, d.Line, d.ref()) }

// locator maps the violations the server found in the document's text
// back to the file. The server names a request's body by the object's API
// path (apiPath) and numbers the lines of the body it was sent; violations
// of other objects (files of the server's policy directory, other API
// objects) are left as they are.
func (d document) locator(apiPath string) func(model.Violation) model.Violation {
	return func(v model.Violation) model.Violation {
		if v.File != apiPath {
			return v
		}
		v.File = d.File
		if v.Line > 0 {
			v.Line += d.Start - 1
		} else {
			v.Line = d.Line
		}
		return v
	}
}

// loadDocuments reads every document of paths. Problems with a document
// (bad YAML, no kind, no name) are printed to w and counted in failed; an
// error is a path that cannot be read at all.
func loadDocuments(paths []string, stdin io.Reader, namespace string, w io.Writer) (docs []document, failed int, err error) {
	for _, p := range paths {
		files, err := policyFiles(p, w)
		if err != nil {
			return nil, 0, err
		}
		for _, f := range files {
			data, err := readInput(f, stdin)
			if err != nil {
				return nil, 0, err
			}
			ds, problems := parseDocuments(f, data, namespace)
			for _, pr := range problems {
				fmt.Fprintln(w, "error: "+pr.Error())
			}
			docs, failed = append(docs, ds...), failed+len(problems)
		}
	}
	return docs, failed, nil
}

// readInput reads a file, or standard input for "-".
func readInput(path string, stdin io.Reader) ([]byte, error) {
	if path == "-" {
		data, err := io.ReadAll(stdin)
		if err != nil {
			return nil, fmt.Errorf("read standard input: %w", err)
		}
		return data, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return data, nil
}

// policyFiles is path itself when it is a file, or every *.yaml and *.yml
// file under it, like serve reads a policy directory: hidden files and
// directories are skipped, and so (with a warning to w) are files that are
// not regular.
func policyFiles(path string, w io.Writer) ([]string, error) {
	if path == "-" {
		return []string{"-"}, nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("-f %s: %w", path, err)
	}
	if !fi.IsDir() {
		return []string{path}, nil
	}
	var files []string
	root := walkDirRoot(path)
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != root && strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasPrefix(d.Name(), ".") || (filepath.Ext(p) != ".yaml" && filepath.Ext(p) != ".yml") {
			return nil
		}
		if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() {
			fmt.Fprintf(w, "warning: %s: skipped: not a regular file\n", p)
			return nil
		}
		files = append(files, p)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("-f %s: %w", path, err)
	}
	return files, nil
}

// walkDirRoot makes WalkDir enter a root that is a symbolic link to a
// directory.
func walkDirRoot(dir string) string {
	if fi, err := os.Lstat(dir); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		return dir + string(filepath.Separator)
	}
	return dir
}

// yamlLine finds the line number in a YAML parser's message.
var yamlLine = regexp.MustCompile(`^yaml: line (\d+): `)

// parseDocuments splits a file into its documents and reads each one's
// kind, namespace and name; namespace is the one of documents that name
// none (default "default"). Documents that cannot be applied are returned
// as violations naming file and line.
func parseDocuments(file string, data []byte, namespace string) ([]document, model.Violations) {
	var docs []document
	var problems model.Violations
	for _, ch := range splitYAML(data) {
		d, v, ok := parseDocument(file, ch, namespace)
		switch {
		case v != nil:
			problems = append(problems, *v)
		case ok:
			docs = append(docs, d)
		}
	}
	return docs, problems
}

// parseDocument reads one document's kind, namespace and name; ok is
// false for a document that holds nothing (comments only).
func parseDocument(file string, ch yamlChunk, namespace string) (document, *model.Violation, bool) {
	fail := func(line int, field, format string, args ...any) (document, *model.Violation, bool) {
		return document{}, &model.Violation{File: file, Line: line, Field: field, Msg: fmt.Sprintf(format, args...)}, false
	}
	var root yamlv3.Node
	if err := yamlv3.Unmarshal(ch.text, &root); err != nil {
		msg, line := err.Error(), ch.start
		if m := yamlLine.FindStringSubmatch(msg); m != nil {
			n, _ := strconv.Atoi(m[1])
			msg, line = msg[len(m[0]):], ch.start+n-1
		}
		return fail(line, "", "invalid YAML: %s", strings.TrimPrefix(msg, "yaml: "))
	}
	if root.Kind == 0 || len(root.Content) == 0 {
		return document{}, nil, false
	}
	top := root.Content[0]
	line := ch.start + top.Line - 1
	if top.Kind != yamlv3.MappingNode {
		return fail(line, "", "a document must be a mapping with apiVersion, kind, metadata and spec")
	}
	d := document{File: file, Line: line, Start: ch.start, Text: ch.text, Kind: scalarAt(top, "kind")}
	meta := valueAt(top, "metadata")
	d.Name, d.Namespace = scalarAt(meta, "name"), scalarAt(meta, "namespace")
	switch {
	case d.Kind == "":
		return fail(line, "kind", "is required: every document names its kind (kind: HTTPRoute, ...)")
	case d.Name == "":
		return fail(line, "metadata.name", "is required: %s documents name their object (metadata: {name: ...})", d.Kind)
	case namespace != "" && d.Namespace != "" && d.Namespace != namespace:
		return fail(line, "metadata.namespace", "is %q but -n says %q: drop -n, or make them agree", d.Namespace, namespace)
	}
	if d.Namespace == "" {
		d.Namespace = cmp.Or(namespace, model.DefaultNamespace)
	}
	return d, nil, true
}

// valueAt returns the value of key in a mapping node, or nil.
func valueAt(n *yamlv3.Node, key string) *yamlv3.Node {
	if n == nil || n.Kind != yamlv3.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// scalarAt returns the scalar value of key in a mapping node, or "".
func scalarAt(n *yamlv3.Node, key string) string {
	if v := valueAt(n, key); v != nil && v.Kind == yamlv3.ScalarNode {
		return v.Value
	}
	return ""
}

// yamlChunk is one document's text and the file line of its first line.
type yamlChunk struct {
	start int
	text  []byte
}

// splitYAML cuts a multi-document YAML file at its document markers
// ("---" or "..." at the start of a line: YAML allows them nowhere else).
// A marker line is kept in the next document as spaces, so that each
// chunk's lines and columns map to the file's by an offset.
func splitYAML(data []byte) []yamlChunk {
	var chunks []yamlChunk
	cur := yamlChunk{start: 1}
	for n := 1; len(data) > 0; n++ {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line = data[:i+1]
		}
		data = data[len(line):]
		if isMarker(line) {
			chunks = append(chunks, cur)
			cur = yamlChunk{start: n, text: append(bytes.Repeat([]byte{' '}, 3), line[3:]...)}
			continue
		}
		cur.text = append(cur.text, line...)
	}
	return append(chunks, cur)
}

// isMarker reports whether a line starts or ends a YAML document.
func isMarker(line []byte) bool {
	if !bytes.HasPrefix(line, []byte("---")) && !bytes.HasPrefix(line, []byte("...")) {
		return false
	}
	return len(line) == 3 || strings.ContainsRune(" \t\r\n", rune(line[3]))
}
