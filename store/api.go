package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/pmezard/go-difflib/difflib"
	yaml "go.yaml.in/yaml/v3"

	"github.com/tollgate-dev/tollgate/model"
)

// apiPathPrefix is the path of the API's group and version. An API object's
// Source.File is its path below it, so that violations name the object the
// way the API addresses it.
const apiPathPrefix = "/apis/tollgate.dev/v1alpha1/"

// Plural is the API's resource name of a kind: Gateway → gateways,
// RateLimitPolicy → ratelimitpolicies (a consonant and y make ies).
func Plural(kind string) string {
	k := strings.ToLower(kind)
	if n := len(k); n > 1 && k[n-1] == 'y' && !strings.ContainsRune("aeiou", rune(k[n-2])) {
		return k[:n-1] + "ies"
	}
	return k + "s"
}

// ObjectPath is the API path of an object.
func ObjectPath(ref model.Ref) string {
	return apiPathPrefix + "namespaces/" + ref.Namespace + "/" + Plural(ref.Kind) + "/" + ref.Name
}

// maxStaleRetries bounds how often a write is validated again after another
// writer (another replica) committed in between. Between attempts the
// writer waits a jittered, doubling pause (staleBackOff), so that two
// replicas writing in bursts do not starve one another: without it the
// replica that just lost has to read the store again and re-translate
// while the winner, already current, commits its next write first, and
// can lose every time.
const maxStaleRetries = 10

// staleBackOff is the pause before the next attempt after an ErrStale:
// 5 ms doubling to 250 ms, ±50% jitter; at most about 1.8 s over
// maxStaleRetries attempts.
func staleBackOff() *backoff.ExponentialBackOff {
	return &backoff.ExponentialBackOff{InitialInterval: 5 * time.Millisecond, RandomizationFactor: 0.5,
		Multiplier: 2, MaxInterval: 250 * time.Millisecond}
}

// APISource feeds the objects written through the HTTP API into the Store
// and persists them in a Backend. A write is validated with every other
// object (files included) exactly as a file change is, committed to the
// Backend (durably) only once valid, and served only once committed.
type APISource struct {
	backend Backend
	st      *Store
	scheme  *model.Scheme
	log     *slog.Logger
	now     func() time.Time

	// secretsDir is where API objects may name files (each namespace
	// under its own folder); "" forbids them any file or variable.
	secretsDir string

	mu      sync.Mutex // serialises writes and resyncs
	rev     uint64
	records map[model.Ref]Record
	objs    map[model.Ref]model.Object
}

// NewAPISource returns the API source of st, persisted in b.
func NewAPISource(b Backend, st *Store, scheme *model.Scheme, log *slog.Logger) *APISource {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &APISource{backend: b, st: st, scheme: scheme, log: log, now: time.Now,
		records: map[model.Ref]Record{}, objs: map[model.Ref]model.Object{}}
}

// SetSecretsDir lets API objects name files (keys, certificates) under
// dir/<their namespace>/, and nowhere else: a writer of one namespace must
// not be able to send another's credential, or any file of tollgate's host,
// to a backend of its choosing. Without it, API objects may name no file
// and no environment variable.
func (a *APISource) SetSecretsDir(dir string) { a.secretsDir = filepath.Clean(dir) }

// checkMaterials enforces SetSecretsDir on a decoded object.
func (a *APISource) checkMaterials(ref model.Ref, o model.Object) model.Violations {
	u, ok := o.(model.MaterialUser)
	if !ok {
		return nil
	}
	var out model.Violations
	bad := func(msg string) {
		out = append(out, model.Violation{File: ObjectPath(ref), Line: o.GetSource().Line, Object: ref.String(), Msg: msg})
	}
	for _, m := range u.Materials() {
		switch {
		case m.Env != "":
			bad(fmt.Sprintf("names the environment variable %s: objects written through the API may not read tollgate's environment; put the value in a file under --api-secrets-dir/%s/", m.Env, ref.Namespace))
		case a.secretsDir == "":
			bad(fmt.Sprintf("names the file %s, but objects written through the API may name files only when tollgate runs with --api-secrets-dir, and then only under its %s/ folder; define this object in a policy file instead", m.File, ref.Namespace))
		default:
			dir := filepath.Join(a.secretsDir, ref.Namespace) + string(filepath.Separator)
			if !filepath.IsAbs(m.File) || !strings.HasPrefix(filepath.Clean(m.File), dir) {
				bad(fmt.Sprintf("names the file %s, but objects of namespace %s written through the API may only name absolute paths under %s", m.File, ref.Namespace, dir))
			}
		}
	}
	return out
}

// Backend is where the source persists its objects.
func (a *APISource) Backend() Backend { return a.backend }

// Load reads every stored object into the store without resolving it: the
// file source's Start resolves files and API objects together, since
// either may refer to the other. A stored object that no longer decodes is
// an error naming it.
func (a *APISource) Load(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	objs, errs, err := a.read(ctx)
	if err != nil {
		return err
	}
	if err := errs.Err(); err != nil {
		return fmt.Errorf("objects in the API store no longer decode (was tollgate downgraded?): %w", err)
	}
	return a.st.Seed(APISourceName, objs)
}

// read loads the backend into the source's maps and returns its objects.
// The caller holds a.mu.
func (a *APISource) read(ctx context.Context) ([]model.Object, model.Violations, error) {
	snap, err := a.backend.Load(ctx)
	if err != nil {
		return nil, nil, err
	}
	records := make(map[model.Ref]Record, len(snap.Records))
	objs := make(map[model.Ref]model.Object, len(snap.Records))
	var errs model.Violations
	for _, rec := range snap.Records {
		o, vs := a.decodeRecord(rec)
		errs = append(errs, vs...)
		records[rec.Ref()] = rec
		if o != nil {
			objs[rec.Ref()] = o
		}
	}
	a.rev, a.records, a.objs = snap.Revision, records, objs
	return a.objectList(), errs, nil
}

// decodeRecord decodes a stored object.
func (a *APISource) decodeRecord(rec Record) (model.Object, model.Violations) {
	var doc yaml.Node
	if err := yaml.Unmarshal(rec.Body, &doc); err != nil || len(doc.Content) == 0 {
		return nil, model.Violations{{File: ObjectPath(rec.Ref()), Msg: fmt.Sprintf("stored object does not parse: %v", err)}}
	}
	o, vs := a.scheme.DecodeNode(ObjectPath(rec.Ref()), doc.Content[0])
	if o != nil {
		o.GetMeta().Generation = rec.Generation
	}
	return o, vs
}

// objectList is the source's objects, sorted.
func (a *APISource) objectList() []model.Object {
	out := make([]model.Object, 0, len(a.objs))
	for _, obj := range a.objs {
		out = append(out, obj)
	}
	model.SortObjects(out)
	return out
}

// Run follows the backend's other writers (replicas sharing etcd) until
// ctx ends: each change they commit is read and served here too.
func (a *APISource) Run(ctx context.Context) error {
	ch := a.backend.Watch(ctx)
	if ch == nil {
		<-ctx.Done()
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case rev, ok := <-ch:
			if !ok {
				return nil
			}
			a.mu.Lock()
			if rev != a.rev {
				if err := a.resync(ctx); err != nil {
					a.log.Error("API store changed by another replica, and the change is refused here; serving the last good configuration", "revision", rev, "error", err)
				}
			}
			a.mu.Unlock()
		}
	}
}

// resync reads the whole backend again and serves it. The caller holds
// a.mu.
func (a *APISource) resync(ctx context.Context) error {
	objs, errs, err := a.read(ctx)
	if err != nil {
		return err
	}
	_, err = a.st.Replace(APISourceName, objs, errs)
	return err
}

// Revision is the store revision the source last read or wrote.
func (a *APISource) Revision() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.rev
}

// Record returns the stored record of ref.
func (a *APISource) Record(ref model.Ref) (Record, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	r, ok := a.records[ref]
	return r, ok
}

// Records lists every stored record, sorted.
func (a *APISource) Records() []Record {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]Record, 0, len(a.records))
	for _, r := range a.records {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Ref().Less(out[j].Ref()) })
	return out
}

// WriteRequest is one write through the API.
type WriteRequest struct {
	// Verb is "create" (fails if it exists), "replace" (fails if it does
	// not), "apply" (either) or "delete".
	Verb string
	Ref  model.Ref
	// Body is the object as sent, JSON or YAML; nil for a delete.
	Body []byte
	// ResourceVersion, if set, must be the stored object's.
	ResourceVersion string
	DryRun          bool
	// Who is the authenticated identity, for the audit log.
	Who string
}

// WriteResult is what a write did.
type WriteResult struct {
	Record    Record
	Object    model.Object
	Created   bool
	Unchanged bool
}

// APIError is a refused request, with the HTTP status it maps to.
type APIError struct {
	Code       int
	Reason     string
	Message    string
	Violations model.Violations
}

func (e *APIError) Error() string { return e.Message }

func apiErrorf(code int, reason, format string, args ...any) *APIError {
	return &APIError{Code: code, Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// Write validates and applies one write. Invalid input and violated
// preconditions come back as *APIError.
func (a *APISource) Write(ctx context.Context, req WriteRequest) (WriteResult, error) {
	var doc *parsedBody
	if req.Verb != "delete" {
		var err error
		if doc, err = a.parseBody(req.Ref, req.Body); err != nil {
			return WriteResult{}, err
		}
		if req.ResourceVersion == "" {
			req.ResourceVersion = doc.resourceVersion
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	pause := staleBackOff()
	pause.Reset()
	for attempt := 0; ; attempt++ {
		res, err := a.writeOnce(ctx, req, doc)
		if !errors.Is(err, ErrStale) {
			return res, err
		}
		if attempt == maxStaleRetries || !sleepCtx(ctx, pause.NextBackOff()) {
			return res, apiErrorf(http.StatusConflict, "Conflict",
				"the API store kept changing under this write (other replicas are writing; %d attempts): nothing was written, send it again", attempt+1)
		}
		// Another writer committed since this source last read: read
		// everything again and validate the write against that.
		if err := a.resync(ctx); err != nil {
			a.log.Warn("API store changed by another replica, and the change is refused here", "error", err)
		}
	}
}

// sleepCtx waits d, or less if ctx ends first; it reports whether the
// wait ran its course.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// writeOnce is one attempt of Write. The caller holds a.mu.
func (a *APISource) writeOnce(ctx context.Context, req WriteRequest, doc *parsedBody) (WriteResult, error) {
	ref := req.Ref
	cur, exists := a.records[ref]
	if f := a.fileCopy(ref); f != nil && !(req.Verb == "delete" && exists) {
		src := f.GetSource()
		return WriteResult{}, apiErrorf(http.StatusConflict, "ReadOnly",
			"%s is defined by the file %s:%d, and objects defined by files are read-only through the API: edit that file instead", ref, src.File, src.Line)
	}
	if req.ResourceVersion != "" {
		want, err := strconv.ParseUint(req.ResourceVersion, 10, 64)
		if err != nil {
			return WriteResult{}, apiErrorf(http.StatusBadRequest, "BadRequest", "resourceVersion %q is not a number: send the metadata.resourceVersion of the object as read", req.ResourceVersion)
		}
		if !exists || cur.ResourceVersion != want {
			have := "it does not exist"
			if exists {
				have = fmt.Sprintf("it is at %d", cur.ResourceVersion)
			}
			return WriteResult{}, apiErrorf(http.StatusConflict, "Conflict", "%s changed since it was read: the write expects resourceVersion %d, but %s; read it again and reapply your change", ref, want, have)
		}
	}
	switch {
	case req.Verb == "create" && exists:
		return WriteResult{}, apiErrorf(http.StatusConflict, "AlreadyExists", "%s already exists: replace it with PUT (tollgate apply)", ref)
	case (req.Verb == "replace" || req.Verb == "delete") && !exists:
		return WriteResult{}, apiErrorf(http.StatusNotFound, "NotFound", "%s does not exist", ref)
	}
	now := a.now().UTC().Truncate(time.Second)
	rec := Record{Kind: ref.Kind, Namespace: ref.Namespace, Name: ref.Name}
	var obj model.Object
	if req.Verb == "delete" {
		rec = cur
	} else {
		if exists && bytes.Equal(doc.canonical, cur.Body) {
			return WriteResult{Record: cur, Object: a.objs[ref], Unchanged: true}, nil
		}
		obj = doc.obj
		rec.Body = doc.canonical
		rec.Created, rec.Updated, rec.Generation, rec.UID = now, now, 1, newUID()
		if exists {
			rec.Created, rec.UID, rec.Generation = cur.Created, cur.UID, cur.Generation
			if specHash(cur.Body) != doc.specHash {
				rec.Generation++
			}
		}
		obj.GetMeta().Generation = rec.Generation
	}
	if req.DryRun {
		if _, err := a.st.PreviewUpdate(APISourceName, ref, obj); err != nil {
			return WriteResult{}, refusal(err)
		}
		rec.ResourceVersion = cur.ResourceVersion
		return WriteResult{Record: rec, Object: obj, Created: !exists}, nil
	}
	verb := req.Verb
	if verb == "apply" {
		verb = "replace"
		if !exists {
			verb = "create"
		}
	}
	ch := Change{Verb: verb, Record: rec, Who: req.Who, Time: now, Diff: unifiedDiff(ref, cur.Body, rec.Body)}
	var (
		committed uint64
		commitErr error
	)
	_, err := a.st.UpdateWith(APISourceName, ref, obj, func(*model.Config) error {
		committed, commitErr = a.backend.Commit(ctx, a.rev, ch)
		return commitErr
	})
	if commitErr != nil && !errors.Is(commitErr, ErrStale) {
		// The backend did not confirm the commit (etcd: a lost
		// connection may have applied it): read the store again and serve
		// what it holds, and let the client look.
		a.log.Error("API store did not confirm a write; reading it again", "object", ref.String(), "error", commitErr)
		if rerr := a.resync(ctx); rerr != nil {
			a.log.Error("API store could not be read again; serving the last good configuration", "error", rerr)
		}
		return WriteResult{}, apiErrorf(http.StatusServiceUnavailable, "ServiceUnavailable",
			"the API store did not confirm the write, so it may or may not be stored: read %s again before retrying (%v)", ref, commitErr)
	}
	if errors.Is(err, ErrNotAccepted) {
		// Committed, then refused by the xDS server: put the previous
		// state back, so that what is stored is what is served.
		a.rev = committed
		a.revert(ctx, ref, cur, exists, err)
		return WriteResult{}, refusal(err)
	}
	if err != nil {
		if errors.Is(err, ErrStale) {
			return WriteResult{}, err
		}
		return WriteResult{}, refusal(err)
	}
	a.rev = committed
	rec.ResourceVersion = committed
	if verb == "delete" {
		delete(a.records, ref)
		delete(a.objs, ref)
		return WriteResult{Record: rec}, nil
	}
	a.records[ref], a.objs[ref] = rec, obj
	return WriteResult{Record: rec, Object: obj, Created: !exists}, nil
}

// revert undoes a committed change the xDS server then refused. The
// caller holds a.mu.
func (a *APISource) revert(ctx context.Context, ref model.Ref, prev Record, existed bool, why error) {
	ch := Change{Verb: "revert", Who: "tollgate", Time: a.now().UTC(), Record: prev,
		Diff: "reverted: " + why.Error()}
	if !existed {
		ch.Verb, ch.Record = "delete", Record{Kind: ref.Kind, Namespace: ref.Namespace, Name: ref.Name}
	}
	rev, err := a.backend.Commit(ctx, a.rev, ch)
	if err != nil {
		a.log.Error("could not revert a refused API write: the API store holds what is not served; restart tollgate to serve what is stored, or fix and reapply the object", "object", ref.String(), "error", err)
		return
	}
	a.rev = rev
	if existed {
		prev.ResourceVersion = rev
		a.records[ref] = prev
	}
}

// refusal maps a store refusal to an API error.
func refusal(err error) error {
	if vs, ok := model.AsViolations(err); ok {
		return &APIError{Code: http.StatusUnprocessableEntity, Reason: "Invalid",
			Message:    fmt.Sprintf("refused: %d violation(s); nothing was stored, and tollgate keeps serving what it served", len(vs)),
			Violations: vs}
	}
	var ae *APIError
	if errors.As(err, &ae) {
		return ae
	}
	return &APIError{Code: http.StatusUnprocessableEntity, Reason: "Invalid", Message: "refused: " + err.Error()}
}

// fileCopy is the object a file defines under ref, if any. The caller
// holds a.mu.
func (a *APISource) fileCopy(ref model.Ref) model.Object {
	for _, l := range a.st.Lookup(ref) {
		if l.Source != APISourceName {
			return l.Object
		}
	}
	return nil
}

// newUID returns a random UUID (version 4).
func newUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// unifiedDiff is the audit log's diff between two stored bodies.
func unifiedDiff(ref model.Ref, from, to []byte) string {
	d, err := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
		A: difflib.SplitLines(string(from)), B: difflib.SplitLines(string(to)),
		FromFile: "a" + ObjectPath(ref), ToFile: "b" + ObjectPath(ref), Context: 3,
	})
	if err != nil {
		return ""
	}
	return d
}

// Server-managed metadata: ignored on input (resourceVersion is a
// precondition), set on output.
var managedMetadata = []string{"resourceVersion", "generation", "uid", "creationTimestamp", "managedFields", "selfLink"}

// parsedBody is a request body, decoded and made canonical.
type parsedBody struct {
	obj             model.Object
	canonical       []byte // YAML without managed metadata and status
	specHash        [sha256.Size]byte
	resourceVersion string
}

// parseBody decodes a request body for ref: exactly one object, of ref's
// kind, namespace and name (metadata.name and namespace may be left out).
// Violations keep the lines of the body as sent.
func (a *APISource) parseBody(ref model.Ref, body []byte) (*parsedBody, error) {
	if len(body) > model.MaxFileSize {
		return nil, apiErrorf(http.StatusRequestEntityTooLarge, "RequestEntityTooLarge", "the object is %d bytes, more than the %d a policy object may have", len(body), model.MaxFileSize)
	}
	file := ObjectPath(ref)
	dec := yaml.NewDecoder(bytes.NewReader(body))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil || len(doc.Content) == 0 {
		msg := "the body is empty"
		if err != nil {
			msg = "the body is not JSON or YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")
		}
		return nil, apiErrorf(http.StatusBadRequest, "BadRequest", "%s", msg)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil && len(extra.Content) > 0 {
		return nil, apiErrorf(http.StatusBadRequest, "BadRequest", "the body holds several documents: send one object per request (tollgate apply -f splits files)")
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, apiErrorf(http.StatusBadRequest, "BadRequest", "the body must be one object: a mapping with apiVersion, kind, metadata and spec")
	}
	dropKey(root, "status")
	meta := mappingValue(root, "metadata")
	if meta == nil {
		meta = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		root.Content = append(root.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: "metadata"}, meta)
	}
	p := &parsedBody{}
	if meta.Kind == yaml.MappingNode {
		if rv := mappingValue(meta, "resourceVersion"); rv != nil && rv.Value != "" && rv.Value != "0" {
			p.resourceVersion = rv.Value
		}
		for _, k := range managedMetadata {
			dropKey(meta, k)
		}
		for _, f := range []struct{ key, want string }{{"name", ref.Name}, {"namespace", ref.Namespace}} {
			v := mappingValue(meta, f.key)
			switch {
			case v == nil:
				meta.Content = append(meta.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: f.key}, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: f.want})
			case v.Kind == yaml.ScalarNode && v.Value != f.want && !(f.key == "namespace" && v.Value == "" && f.want == model.DefaultNamespace):
				return nil, apiErrorf(http.StatusBadRequest, "BadRequest", "metadata.%s is %q but the URL names %q: they must agree", f.key, v.Value, f.want)
			}
		}
	}
	if k := mappingValue(root, "kind"); k != nil && k.Value != ref.Kind {
		return nil, apiErrorf(http.StatusBadRequest, "BadRequest", "the body is a %s but the URL is for %s objects: send it to %s", k.Value, Plural(ref.Kind), apiPathPrefix+"namespaces/"+ref.Namespace+"/"+Plural(k.Value))
	}
	obj, vs := a.scheme.DecodeNode(file, root)
	if obj != nil {
		vs = append(vs, a.checkMaterials(ref, obj)...)
	}
	if err := vs.Err(); err != nil {
		return nil, &APIError{Code: http.StatusUnprocessableEntity, Reason: "Invalid",
			Message: fmt.Sprintf("%s is not valid: %d violation(s); nothing was stored", ref, len(vs)), Violations: vs}
	}
	plain(root)
	canonical, err := marshalYAML(root)
	if err != nil {
		return nil, apiErrorf(http.StatusBadRequest, "BadRequest", "the body cannot be stored: %v", err)
	}
	p.obj, p.canonical, p.specHash = obj, canonical, specHash(canonical)
	return p, nil
}

// specHash digests a stored body without its metadata: what a generation
// counts.
func specHash(body []byte) [sha256.Size]byte {
	var doc yaml.Node
	if yaml.Unmarshal(body, &doc) != nil || len(doc.Content) == 0 {
		return sha256.Sum256(body)
	}
	root := doc.Content[0]
	dropKey(root, "metadata")
	data, _ := marshalYAML(root)
	return sha256.Sum256(data)
}

// marshalYAML renders a node as files have it: block style, indented by
// two.
func marshalYAML(n *yaml.Node) ([]byte, error) {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(n); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// mappingValue is the value of key in a mapping node, or nil.
func mappingValue(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// dropKey removes key from a mapping node.
func dropKey(m *yaml.Node, key string) {
	if m == nil || m.Kind != yaml.MappingNode {
		return
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			m.Content = append(m.Content[:i], m.Content[i+2:]...)
			return
		}
	}
}

// plain resets the styles of a node tree, so that a JSON body is stored as
// block YAML like a file (strings that need quotes keep them).
func plain(n *yaml.Node) {
	n.Style = 0
	for _, c := range n.Content {
		plain(c)
	}
}
