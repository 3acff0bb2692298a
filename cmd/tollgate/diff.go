package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/policies"
	"github.com/tollgate-dev/tollgate/store"
	"github.com/tollgate-dev/tollgate/xds"
)

// maxDiffRequest bounds the body of POST /diff: every policy file of a
// directory, far above any real policy set.
const maxDiffRequest = 64 << 20

// diffRequest is the body of POST /diff: the policy files of a directory,
// as the client read them.
type diffRequest struct {
	// Dir is the directory the files were read from. Files are decoded
	// as if read from there: violations name them there, and relative
	// paths in policies (secrets/openai.key) are resolved from there, on
	// tollgate's host (a relative Dir from tollgate's working directory).
	Dir string `json:"dir"`
	// Files maps each file's path relative to Dir (slash-separated) to
	// its content.
	Files map[string]string `json:"files"`
}

// diffStatus is the body of a refusal of POST /diff, shaped like the
// admin API's other refusals.
type diffStatus struct {
	Kind       string            `json:"kind"`
	APIVersion string            `json:"apiVersion"`
	Status     string            `json:"status"`
	Code       int               `json:"code"`
	Reason     string            `json:"reason"`
	Message    string            `json:"message"`
	Violations []model.Violation `json:"violations,omitempty"`
}

// writeDiffStatus answers a refusal.
func writeDiffStatus(w http.ResponseWriter, code int, reason, msg string, vs model.Violations) {
	w.WriteHeader(code)
	xds.WriteJSON(w, diffStatus{Kind: "Status", APIVersion: "v1", Status: "Failure", Code: code, Reason: reason, Message: msg, Violations: vs})
}

// diffHandler serves POST /diff: what serving the posted files in place of
// the file source named source would change. The files are decoded and
// resolved together with every other source's objects exactly as a reload
// would (store.Store.Preview: the files the policies name are read on
// tollgate's host, and the store's Check, xds.Server.Check in tollgate
// serve, judges the result); nothing is served. The answer is an
// xds.ConfigDiff, or a 422 Status with every violation (or the refusal,
// such as secrets over plaintext xDS).
func diffHandler(st *store.Store, source string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			writeDiffStatus(w, http.StatusBadRequest, "BadRequest", "use POST /diff with a JSON body {\"dir\": DIR, \"files\": {PATH: CONTENT}}", nil)
			return
		}
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxDiffRequest))
		dec.DisallowUnknownFields()
		var req diffRequest
		if err := dec.Decode(&req); err != nil {
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				writeDiffStatus(w, http.StatusRequestEntityTooLarge, "RequestEntityTooLarge",
					fmt.Sprintf("the request is larger than %d MiB: diff a smaller policy directory", maxDiffRequest>>20), nil)
				return
			}
			writeDiffStatus(w, http.StatusBadRequest, "BadRequest", "the body is not a diff request ({\"dir\": DIR, \"files\": {PATH: CONTENT}}): "+err.Error(), nil)
			return
		}
		if req.Dir == "" {
			writeDiffStatus(w, http.StatusBadRequest, "BadRequest", "dir is empty: name the directory the files were read from", nil)
			return
		}
		paths := make([]string, 0, len(req.Files))
		for rel := range req.Files {
			if !filepath.IsLocal(filepath.FromSlash(rel)) {
				writeDiffStatus(w, http.StatusBadRequest, "BadRequest", fmt.Sprintf("files: %q is not a path inside dir: give paths relative to it, without ..", rel), nil)
				return
			}
			paths = append(paths, rel)
		}
		sort.Strings(paths)
		scheme := policies.NewScheme()
		var (
			objs       []model.Object
			violations model.Violations
		)
		for _, rel := range paths {
			o, vs := scheme.Decode(filepath.Join(req.Dir, filepath.FromSlash(rel)), []byte(req.Files[rel]))
			objs = append(objs, o...)
			violations = append(violations, vs...)
		}
		violations.Sort()
		current := st.Config()
		next, err := st.Preview(source, objs, violations)
		var d *xds.ConfigDiff
		if err == nil {
			d, err = xds.Diff(current, next)
		}
		if err != nil {
			if vs, ok := model.AsViolations(err); ok {
				writeDiffStatus(w, http.StatusUnprocessableEntity, "Invalid",
					fmt.Sprintf("%s is not valid: %d violation(s); tollgate would refuse it and keep serving what it serves", req.Dir, len(vs)), vs)
				return
			}
			if errors.Is(err, xds.ErrPlaintextSecrets) {
				writeDiffStatus(w, http.StatusUnprocessableEntity, "Refused",
					fmt.Sprintf("tollgate would refuse %s and keep serving what it serves: %v", req.Dir, err), nil)
				return
			}
			writeDiffStatus(w, http.StatusInternalServerError, "InternalError", err.Error(), nil)
			return
		}
		xds.WriteJSON(w, d)
	})
}

// newDiffCmd is `tollgate diff DIR`.
func newDiffCmd() *cobra.Command {
	var (
		o    clientOptions
		full bool
	)
	cmd := &cobra.Command{
		Use:   "diff DIR",
		Short: "Show what serving the policies in DIR would change, gateway by gateway",
		Long: "diff reads every *.yaml and *.yml file under DIR (recursively; hidden files and directories are\n" +
			"skipped) and asks a running tollgate what serving them instead of its policy directory would change:\n" +
			"per gateway, the Envoy resources added, removed and changed, with a unified diff of each change.\n" +
			"tollgate validates DIR exactly as a reload would, reading the files the policies name on its own host;\n" +
			"nothing is served. Secret values never appear: a secret is shown as its name, type and SHA-256 digest.\n" +
			"Exit status, as diff(1): 0 no change, 1 changes, 2 trouble (DIR is invalid: its violations are printed).",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			stderr := cmd.ErrOrStderr()
			fail := func(err error) error {
				fmt.Fprintln(stderr, "error:", err)
				return exitError{code: 2}
			}
			c, err := o.client()
			if err != nil {
				return fail(err)
			}
			dir := args[0]
			files, warnings, err := readDiffDir(dir)
			for _, w := range warnings {
				fmt.Fprintln(stderr, "warning: "+w)
			}
			if vs, ok := model.AsViolations(err); ok {
				return diffViolations(stderr, dir, vs)
			}
			if err != nil {
				return fail(err)
			}
			abs, err := filepath.Abs(dir)
			if err != nil {
				return fail(err)
			}
			var raw json.RawMessage
			err = c.do(cmd.Context(), http.MethodPost, "/diff", diffRequest{Dir: abs, Files: files}, &raw)
			var ae *apiError
			if errors.As(err, &ae) && len(ae.Violations) > 0 {
				// Named as the user named DIR, not as sent.
				for i := range ae.Violations {
					ae.Violations[i].File = relocate(ae.Violations[i].File, abs, dir)
				}
				return diffViolations(stderr, dir, ae.Violations)
			}
			if err != nil {
				return fail(err)
			}
			var d xds.ConfigDiff
			if err := json.Unmarshal(raw, &d); err != nil {
				return fail(fmt.Errorf("POST /diff: unexpected answer: %w", err))
			}
			out := cmd.OutOrStdout()
			switch o.Output {
			case "json":
				fmt.Fprintln(out, strings.TrimSpace(string(raw)))
			case "yaml":
				y, err := yaml.JSONToYAML(raw)
				if err != nil {
					return fail(err)
				}
				_, _ = out.Write(y)
			default:
				printDiff(out, dir, &d, full)
			}
			if d.Changes() > 0 {
				return exitError{code: 1}
			}
			return nil
		},
	}
	addClientFlags(cmd, &o)
	cmd.Flags().BoolVar(&full, "full", false, "also print the whole YAML of added and removed resources (text output)")
	return cmd
}

// diffViolations prints violations the way validate does and ends with
// exit status 2.
func diffViolations(w io.Writer, dir string, vs model.Violations) error {
	for _, v := range vs {
		fmt.Fprintln(w, v.Error())
	}
	fmt.Fprintf(w, "%d violation(s) in %s: tollgate would refuse it and keep serving what it serves\n", len(vs), dir)
	return exitError{code: 2}
}

// relocate names file, a path under abs, under dir instead.
func relocate(file, abs, dir string) string {
	rel, err := filepath.Rel(abs, file)
	if err != nil || !filepath.IsLocal(rel) {
		return file
	}
	return filepath.Join(dir, rel)
}

// printDiff writes the text output: a header per gateway, a line per
// added (+), changed (~) and removed (-) resource, and the unified diff of
// each change (of additions and removals too with full).
func printDiff(w io.Writer, dir string, d *xds.ConfigDiff, full bool) {
	if d.Changes() == 0 {
		n := 0
		for _, g := range d.Gateways {
			n += g.Unchanged
		}
		fmt.Fprintf(w, "no changes: serving %s would change nothing (%d gateway(s), %d resource(s))\n", dir, len(d.Gateways), n)
		return
	}
	for _, g := range d.Gateways {
		fmt.Fprintf(w, "gateway %s: %d added, %d changed, %d removed, %d unchanged\n", g.Gateway, len(g.Added), len(g.Changed), len(g.Removed), g.Unchanged)
		line := func(mark string, r xds.ResourceDiff, diff bool) {
			fmt.Fprintf(w, "%s %s %s", mark, r.Type, r.Name)
			if r.Note != "" {
				fmt.Fprintf(w, ": %s", r.Note)
			}
			fmt.Fprintln(w)
			if diff {
				fmt.Fprint(w, r.Diff)
			}
		}
		for _, r := range g.Added {
			line("+", r, full)
		}
		for _, r := range g.Changed {
			line("~", r, true)
		}
		for _, r := range g.Removed {
			line("-", r, full)
		}
	}
}

// readDiffDir reads the policy files under dir as tollgate's file source
// does (store/file.go): every *.yaml and *.yml, recursively, hidden files
// and directories skipped, symbolic links followed to regular files only
// (anything else is skipped with a warning). Files are keyed by their
// slash-separated path relative to dir. A file over the size a policy
// file may have is a violation.
func readDiffDir(dir string) (files map[string]string, warnings []string, err error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("read policy directory: %w", err)
	}
	if !fi.IsDir() {
		return nil, nil, fmt.Errorf("%s is a file, not a directory: give the directory that holds it (every *.yaml and *.yml under it is read)", dir)
	}
	root := dir
	if li, err := os.Lstat(dir); err == nil && li.Mode()&fs.ModeSymlink != 0 {
		root = dir + string(filepath.Separator) // WalkDir enters a linked root only so
	}
	var paths []string
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != root && strings.HasPrefix(name, ".") {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasPrefix(name, ".") || (filepath.Ext(name) != ".yaml" && filepath.Ext(name) != ".yml") {
			return nil
		}
		if !d.Type().IsRegular() {
			fi, err := os.Stat(path)
			if err != nil || !fi.Mode().IsRegular() {
				why := "it does not resolve"
				if err == nil {
					why = "it is not a regular file"
				}
				warnings = append(warnings, fmt.Sprintf("%s: skipped: %s", path, why))
				return nil
			}
		}
		paths = append(paths, path)
		return nil
	})
	if err != nil {
		return nil, warnings, fmt.Errorf("read policy directory: %w", err)
	}
	if len(paths) == 0 {
		return nil, warnings, fmt.Errorf("%s holds no *.yaml or *.yml files: check the path (to see what removing every policy would change, diff a directory holding one empty .yaml file)", dir)
	}
	files = make(map[string]string, len(paths))
	var vs model.Violations
	total := 0
	for _, path := range paths {
		data, err := readPolicyFile(path)
		if v, ok := model.AsViolations(err); ok {
			vs = append(vs, v...)
			continue
		}
		total += len(data)
		if total > maxDiffRequest-(1<<20) {
			return nil, warnings, fmt.Errorf("%s holds more than %d MiB of policy files, more than tollgate diffs at once", dir, maxDiffRequest>>20)
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return nil, warnings, err
		}
		files[filepath.ToSlash(rel)] = string(data)
	}
	if len(vs) > 0 {
		return nil, warnings, vs.Err()
	}
	return files, warnings, nil
}

// readPolicyFile reads one policy file, at most store.MaxPolicyFileSize
// bytes of it, and refuses one that is not UTF-8; its error is a
// model.Violation.
func readPolicyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, model.Violation{File: path, Msg: "cannot read: " + err.Error()}
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, store.MaxPolicyFileSize+1))
	if err != nil {
		return nil, model.Violation{File: path, Msg: "cannot read: " + err.Error()}
	}
	if len(data) > store.MaxPolicyFileSize {
		return nil, model.Violation{File: path, Msg: fmt.Sprintf("is larger than %d MiB, the most a policy file may hold: split it into several files", store.MaxPolicyFileSize>>20)}
	}
	// JSON strings carry UTF-8 only: a byte that is not would arrive as
	// U+FFFD and decode, where a reload refuses the file. Refuse it here,
	// as the decoder does.
	if !utf8.Valid(data) {
		line, col := 1, 1
		for i := 0; i < len(data); {
			r, size := utf8.DecodeRune(data[i:])
			if r == utf8.RuneError && size <= 1 {
				return nil, model.Violation{File: path, Line: line, Msg: fmt.Sprintf("invalid YAML: byte 0x%02x at column %d is not UTF-8: save the file as UTF-8", data[i], col)}
			}
			if r == '\n' {
				line, col = line+1, 0
			}
			i += size
			col++
		}
	}
	return data, nil
}
