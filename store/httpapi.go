package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	yaml "go.yaml.in/yaml/v3"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/tollgate-dev/tollgate/model"
)

// APIHandlerOptions configure the HTTP API.
type APIHandlerOptions struct {
	Store *Store
	// API is the API source; nil serves reads only, and answers writes
	// with how to turn the API store on.
	API    *APISource
	Scheme *model.Scheme
	// Auth checks writes; nil (or one without writers) refuses them all.
	Auth *Authenticator
	// Conditions are those of the other parts, for status: the xDS
	// server's Programmed and NACKs, Envoy versions, tollgate's SVID.
	Conditions func() []model.Condition
	Log        *slog.Logger
}

// APIHandler serves the Kubernetes-shaped API over the store's objects:
// every object is readable (file objects included, marked read-only), API
// objects are writable by authorized writers.
type APIHandler struct {
	o      APIHandlerOptions
	plural map[string]string // plural → kind
}

// NewAPIHandler returns the API handler; Register mounts it.
func NewAPIHandler(o APIHandlerOptions) *APIHandler {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	h := &APIHandler{o: o, plural: map[string]string{}}
	for _, k := range o.Scheme.Kinds() {
		h.plural[Plural(k)] = k
	}
	return h
}

// Register mounts the API's paths on mux.
func (h *APIHandler) Register(mux *http.ServeMux) {
	p := strings.TrimSuffix(apiPathPrefix, "/")
	mux.HandleFunc("GET "+p, h.discovery)
	mux.HandleFunc("GET "+p+"/{$}", h.discovery)
	mux.HandleFunc("GET "+p+"/audit", h.audit)
	mux.HandleFunc("GET "+p+"/{plural}", h.list)
	mux.HandleFunc("GET "+p+"/namespaces/{ns}/{plural}", h.list)
	mux.HandleFunc("POST "+p+"/namespaces/{ns}/{plural}", h.write("create"))
	mux.HandleFunc("GET "+p+"/namespaces/{ns}/{plural}/{name}", h.get)
	mux.HandleFunc("PUT "+p+"/namespaces/{ns}/{plural}/{name}", h.write("apply"))
	mux.HandleFunc("DELETE "+p+"/namespaces/{ns}/{plural}/{name}", h.write("delete"))
	mux.HandleFunc("GET "+p+"/namespaces/{ns}/{plural}/{name}/history", h.history)
	mux.HandleFunc("GET /status/objects", h.objectStatus)
}

// statusBody is the API's answer to a refused (or, for deletes, done)
// request, shaped like Kubernetes' Status.
type statusBody struct {
	Kind       string            `json:"kind"`
	APIVersion string            `json:"apiVersion"`
	Status     string            `json:"status"`
	Code       int               `json:"code"`
	Reason     string            `json:"reason,omitempty"`
	Message    string            `json:"message"`
	Violations []model.Violation `json:"violations,omitempty"`
}

// writeError answers err as a Status body.
func (h *APIHandler) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var ae *APIError
	if !errors.As(err, &ae) {
		h.o.Log.Error("API request failed", "method", r.Method, "path", r.URL.Path, "error", err)
		ae = &APIError{Code: http.StatusInternalServerError, Reason: "InternalError", Message: err.Error()}
	}
	h.answer(w, r, ae.Code, statusBody{Kind: "Status", APIVersion: "v1", Status: "Failure", Code: ae.Code,
		Reason: ae.Reason, Message: ae.Message, Violations: ae.Violations})
}

// answer writes v as JSON, or as YAML when the client asks for it.
func (h *APIHandler) answer(w http.ResponseWriter, r *http.Request, code int, v any) {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if strings.Contains(r.Header.Get("Accept"), "yaml") {
		if y, err := sigsyaml.JSONToYAML(data); err == nil {
			w.Header().Set("Content-Type", "application/yaml")
			w.WriteHeader(code)
			_, _ = w.Write(y)
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(append(data, '\n'))
}

// discovery lists the API's resources.
func (h *APIHandler) discovery(w http.ResponseWriter, r *http.Request) {
	type resource struct {
		Name       string `json:"name"`
		Kind       string `json:"kind"`
		Namespaced bool   `json:"namespaced"`
	}
	var out []resource
	for _, k := range h.o.Scheme.Kinds() {
		out = append(out, resource{Name: Plural(k), Kind: k, Namespaced: true})
	}
	h.answer(w, r, http.StatusOK, map[string]any{"kind": "APIResourceList", "groupVersion": model.APIVersion, "resources": out})
}

// kindOf resolves the {plural} of a path.
func (h *APIHandler) kindOf(r *http.Request) (string, error) {
	p := r.PathValue("plural")
	if k, ok := h.plural[p]; ok {
		return k, nil
	}
	names := make([]string, 0, len(h.plural))
	for n := range h.plural {
		names = append(names, n)
	}
	sort.Strings(names)
	return "", apiErrorf(http.StatusNotFound, "NotFound", "%q is not a resource of %s: use one of %s", p, model.APIVersion, strings.Join(names, ", "))
}

// refOf resolves the object a path names.
func (h *APIHandler) refOf(r *http.Request) (model.Ref, error) {
	kind, err := h.kindOf(r)
	if err != nil {
		return model.Ref{}, err
	}
	return model.Ref{Kind: kind, Namespace: r.PathValue("ns"), Name: r.PathValue("name")}, nil
}

// statuses indexes the objects' status by object.
func (h *APIHandler) statuses() map[string]ObjectStatus {
	var conds []model.Condition
	if h.o.Conditions != nil {
		conds = h.o.Conditions()
	}
	out := map[string]ObjectStatus{}
	for _, s := range h.o.Store.ObjectStatuses(conds) {
		out[s.Object] = s
	}
	return out
}

// objectStatus serves GET /status/objects.
func (h *APIHandler) objectStatus(w http.ResponseWriter, r *http.Request) {
	var conds []model.Condition
	if h.o.Conditions != nil {
		conds = h.o.Conditions()
	}
	out := h.o.Store.ObjectStatuses(conds)
	if ns := r.URL.Query().Get("namespace"); ns != "" {
		kept := out[:0]
		for _, s := range out {
			if s.Namespace == ns {
				kept = append(kept, s)
			}
		}
		out = kept
	}
	if out == nil {
		out = []ObjectStatus{}
	}
	h.answer(w, r, http.StatusOK, map[string]any{"objects": out})
}

// served lists the refs of kind (in namespace ns, or all when ns is "")
// that the store serves or the API holds.
func (h *APIHandler) served(kind, ns string) []model.Ref {
	seen := map[model.Ref]bool{}
	var out []model.Ref
	addRef := func(ref model.Ref) {
		if ref.Kind == kind && (ns == "" || ref.Namespace == ns) && !seen[ref] {
			seen[ref] = true
			out = append(out, ref)
		}
	}
	if cfg := h.o.Store.Config(); cfg != nil {
		for _, o := range cfg.Objects {
			addRef(model.RefOf(o))
		}
	}
	if h.o.API != nil {
		for _, rec := range h.o.API.Records() {
			addRef(rec.Ref())
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Less(out[j]) })
	return out
}

// list serves a kind's objects.
func (h *APIHandler) list(w http.ResponseWriter, r *http.Request) {
	kind, err := h.kindOf(r)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	statuses := h.statuses()
	items := []map[string]any{}
	for _, ref := range h.served(kind, r.PathValue("ns")) {
		obj, err := h.render(ref, statuses)
		if err != nil {
			h.writeError(w, r, err)
			return
		}
		if obj != nil {
			items = append(items, obj)
		}
	}
	var rev uint64
	if h.o.API != nil {
		rev = h.o.API.Revision()
	}
	h.answer(w, r, http.StatusOK, map[string]any{
		"apiVersion": model.APIVersion, "kind": kind + "List",
		"metadata": map[string]any{"resourceVersion": strconv.FormatUint(rev, 10)}, "items": items,
	})
}

// get serves one object.
func (h *APIHandler) get(w http.ResponseWriter, r *http.Request) {
	ref, err := h.refOf(r)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	obj, err := h.render(ref, h.statuses())
	if err == nil && obj == nil {
		err = apiErrorf(http.StatusNotFound, "NotFound", "%s does not exist (tollgate get %s -A lists them)", ref, Plural(ref.Kind))
	}
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	h.answer(w, r, http.StatusOK, obj)
}

// render is the API's view of the object ref: the served one (a file's
// wins over the API's), or the API's when only it has one; nil when
// neither has.
func (h *APIHandler) render(ref model.Ref, statuses map[string]ObjectStatus) (map[string]any, error) {
	var (
		body  []byte
		meta  = map[string]any{}
		st    = statuses[ref.String()]
		extra = map[string]any{}
	)
	located := h.o.Store.Lookup(ref)
	var file model.Object
	for _, l := range located {
		if l.Source != APISourceName {
			file = l.Object
			break
		}
	}
	var rec Record
	var inAPI bool
	if h.o.API != nil {
		rec, inAPI = h.o.API.Record(ref)
	}
	switch {
	case file != nil:
		src := file.GetSource()
		data, err := fileDocument(src.File, src.Line)
		if err != nil {
			return nil, err
		}
		body = data
		meta["generation"] = st.Generation
		extra["source"] = SourceOf("file", file)
		extra["readOnly"] = true
	case inAPI:
		body = rec.Body
		meta["uid"] = rec.UID
		meta["resourceVersion"] = strconv.FormatUint(rec.ResourceVersion, 10)
		meta["generation"] = rec.Generation
		meta["creationTimestamp"] = rec.Created.UTC().Format(time.RFC3339)
		extra["source"] = "api"
	default:
		return nil, nil
	}
	obj, err := yamlObject(body)
	if err != nil {
		return nil, err
	}
	m, _ := obj["metadata"].(map[string]any)
	if m == nil {
		m = map[string]any{}
	}
	if _, ok := m["namespace"]; !ok {
		m["namespace"] = ref.Namespace
	}
	for k, v := range meta {
		m[k] = v
	}
	obj["metadata"] = m
	status := map[string]any{}
	for k, v := range extra {
		status[k] = v
	}
	if st.Object != "" {
		status["conditions"] = st.Conditions
	}
	obj["status"] = status
	return obj, nil
}

// yamlObject converts one YAML document to a JSON-shaped map.
func yamlObject(body []byte) (map[string]any, error) {
	data, err := sigsyaml.YAMLToJSON(body)
	if err != nil {
		return nil, fmt.Errorf("stored object: %w", err)
	}
	var obj map[string]any
	if err := json.Unmarshal(data, &obj); err != nil {
		return nil, fmt.Errorf("stored object: %w", err)
	}
	return obj, nil
}

// fileDocument is the document of a policy file whose first key is at
// line: the object as its file has it now.
func fileDocument(path string, line int) ([]byte, error) {
	data, err := readRegular(path, MaxPolicyFileSize)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	for {
		var doc yaml.Node
		if err := dec.Decode(&doc); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
		if len(doc.Content) > 0 && doc.Content[0].Line == line {
			return yaml.Marshal(doc.Content[0])
		}
	}
	return nil, apiErrorf(http.StatusConflict, "Conflict", "%s changed since tollgate read it (no object at line %d any more): retry in a moment", path, line)
}

// dryRun reads the dryRun query parameter.
func dryRun(r *http.Request) (bool, error) {
	switch v := r.URL.Query().Get("dryRun"); v {
	case "":
		return false, nil
	case "true", "All", "all":
		return true, nil
	default:
		return false, apiErrorf(http.StatusBadRequest, "BadRequest", "dryRun=%q: use dryRun=true", v)
	}
}

// ifMatch reads a resourceVersion precondition from If-Match, or from
// ?resourceVersion= (deletes).
func ifMatch(r *http.Request) string {
	v := strings.TrimSpace(r.Header.Get("If-Match"))
	v = strings.TrimPrefix(v, "W/")
	v = strings.Trim(v, `"`)
	if v == "" || v == "*" {
		v = r.URL.Query().Get("resourceVersion")
	}
	return v
}

// write serves POST (create), PUT (apply) and DELETE.
func (h *APIHandler) write(verb string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		err := h.doWrite(w, r, verb)
		if err != nil {
			h.writeError(w, r, err)
		}
	}
}

func (h *APIHandler) doWrite(w http.ResponseWriter, r *http.Request, verb string) error {
	if h.o.API == nil {
		return apiErrorf(http.StatusServiceUnavailable, "ServiceUnavailable", "the API store is off, so objects can only be read: start tollgate with --state-dir DIR (bbolt, one machine) or --store etcd://HOST:2379 (replicas)")
	}
	if !h.o.Auth.Enabled() {
		return apiErrorf(http.StatusForbidden, "Forbidden", "API writes are disabled because no writer is configured: give tollgate --api-tokens FILE (hashed bearer tokens) or api-identities (client certificates) in its config file")
	}
	p, err := h.o.Auth.Authenticate(r)
	if err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="tollgate"`)
		return apiErrorf(http.StatusUnauthorized, "Unauthorized", "%v", err)
	}
	kind, err := h.kindOf(r)
	if err != nil {
		return err
	}
	ns := r.PathValue("ns")
	if !p.CanWrite(ns) {
		return apiErrorf(http.StatusForbidden, "Forbidden", "%s may not write namespace %q: grant it in --api-tokens or api-identities", p.Name, ns)
	}
	dry, err := dryRun(r)
	if err != nil {
		return err
	}
	req := WriteRequest{Verb: verb, Ref: model.Ref{Kind: kind, Namespace: ns, Name: r.PathValue("name")},
		ResourceVersion: ifMatch(r), DryRun: dry, Who: p.Name}
	if verb != "delete" {
		body, err := io.ReadAll(io.LimitReader(r.Body, model.MaxFileSize+1))
		if err != nil {
			return apiErrorf(http.StatusBadRequest, "BadRequest", "reading the body: %v", err)
		}
		req.Body = body
		if verb == "create" {
			if req.Ref.Name, err = bodyName(body); err != nil {
				return err
			}
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	res, err := h.o.API.Write(ctx, req)
	if err != nil {
		return err
	}
	if !dry && !res.Unchanged {
		h.o.Log.Info("API write", "who", p.Name, "verb", verb, "object", req.Ref.String(), "revision", res.Record.ResourceVersion, "generation", res.Record.Generation)
	}
	if verb == "delete" {
		msg := req.Ref.String() + " deleted"
		if dry {
			msg += " (dry run: nothing changed)"
		}
		h.answer(w, r, http.StatusOK, statusBody{Kind: "Status", APIVersion: "v1", Status: "Success", Code: http.StatusOK, Message: msg})
		return nil
	}
	code := http.StatusOK
	if res.Created {
		code = http.StatusCreated
	}
	var obj map[string]any
	if dry {
		obj, err = yamlObject(res.Record.Body)
		if err == nil {
			obj["status"] = map[string]any{"source": "api", "dryRun": true}
		}
	} else {
		obj, err = h.render(req.Ref, h.statuses())
	}
	if err != nil {
		return err
	}
	h.answer(w, r, code, obj)
	return nil
}

// RequireOperator lets through only writers of every namespace ("*"):
// endpoints that read the whole policy set with files of tollgate's host,
// such as POST /diff, are for operators, not for one team's writer.
func (h *APIHandler) RequireOperator(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !h.o.Auth.Enabled() {
			h.writeError(w, r, apiErrorf(http.StatusForbidden, "Forbidden", "%s needs an operator's credentials, and no writer is configured: give tollgate --api-tokens FILE or api-identities", r.URL.Path))
			return
		}
		p, err := h.o.Auth.Authenticate(r)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="tollgate"`)
			h.writeError(w, r, apiErrorf(http.StatusUnauthorized, "Unauthorized", "%v", err))
			return
		}
		if !p.CanWrite("*") {
			h.writeError(w, r, apiErrorf(http.StatusForbidden, "Forbidden", "%s is for writers of every namespace (namespaces: [\"*\"]); %s may write only some", r.URL.Path, p.Name))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// bodyName is the metadata.name of a create's body.
func bodyName(body []byte) (string, error) {
	var doc struct {
		Metadata struct {
			Name string `yaml:"name"`
		} `yaml:"metadata"`
	}
	if err := yaml.Unmarshal(body, &doc); err != nil {
		return "", apiErrorf(http.StatusBadRequest, "BadRequest", "the body is not JSON or YAML: %v", err)
	}
	if doc.Metadata.Name == "" {
		return "", apiErrorf(http.StatusBadRequest, "BadRequest", "metadata.name is required")
	}
	return doc.Metadata.Name, nil
}

// history serves an object's revisions.
func (h *APIHandler) history(w http.ResponseWriter, r *http.Request) {
	ref, err := h.refOf(r)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	if h.o.API == nil {
		h.writeError(w, r, apiErrorf(http.StatusNotFound, "NotFound", "the API store is off: there is no history"))
		return
	}
	recs, err := h.o.API.Backend().History(r.Context(), ref)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	type item struct {
		ResourceVersion string         `json:"resourceVersion"`
		Generation      int64          `json:"generation,omitempty"`
		Updated         time.Time      `json:"updated"`
		Deleted         bool           `json:"deleted,omitempty"`
		Object          map[string]any `json:"object,omitempty"`
	}
	items := []item{}
	for _, rec := range recs {
		it := item{ResourceVersion: strconv.FormatUint(rec.ResourceVersion, 10), Generation: rec.Generation, Updated: rec.Updated, Deleted: rec.Deleted}
		if len(rec.Body) > 0 {
			if it.Object, err = yamlObject(rec.Body); err != nil {
				h.writeError(w, r, err)
				return
			}
		}
		items = append(items, it)
	}
	h.answer(w, r, http.StatusOK, map[string]any{"object": ref.String(), "items": items})
}

// audit serves the audit log.
func (h *APIHandler) audit(w http.ResponseWriter, r *http.Request) {
	if h.o.API == nil {
		h.answer(w, r, http.StatusOK, map[string]any{"items": []AuditEntry{}})
		return
	}
	q := r.URL.Query()
	after, _ := strconv.ParseUint(q.Get("after"), 10, 64)
	limit := 100
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			h.writeError(w, r, apiErrorf(http.StatusBadRequest, "BadRequest", "limit=%q: use 1 to 1000", v))
			return
		}
		limit = n
	}
	entries, err := h.o.API.Backend().Audit(r.Context(), after, limit)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	if entries == nil {
		entries = []AuditEntry{}
	}
	h.answer(w, r, http.StatusOK, map[string]any{"items": entries})
}

// ReadTokenFile reads --api-tokens.
func ReadTokenFile(path string) ([]TokenEntry, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--api-tokens: %w", err)
	}
	return ParseTokenFile(path, data)
}
