package store_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/policies"
	"github.com/tollgate-dev/tollgate/store"
)

const apiBase = "/apis/tollgate.dev/v1alpha1"

// apiEnv is a store with a file source and an API source on bbolt, served
// by the API handler.
type apiEnv struct {
	t       *testing.T
	dir     string
	db      string
	st      *store.Store
	files   *store.FileSource
	api     *store.APISource
	srv     *httptest.Server
	mu      sync.Mutex
	refuse  error // Accept refuses with it when set
	applied int
}

// Tokens of the tests: admin writes everywhere, team writes team-a.
const (
	adminToken = "admin-secret-token"
	teamToken  = "team-secret-token"
)

func tokenEntry(name, token string, ns ...string) store.TokenEntry {
	sum := sha256.Sum256([]byte(token))
	return store.TokenEntry{Name: name, SHA256: hex.EncodeToString(sum[:]), Namespaces: ns}
}

func newAPIEnv(t *testing.T, files map[string]string) *apiEnv {
	t.Helper()
	e := &apiEnv{t: t, dir: t.TempDir(), db: filepath.Join(t.TempDir(), "tollgate.db")}
	for name, content := range files {
		write(t, filepath.Join(e.dir, name), content)
	}
	e.open()
	return e
}

// open starts (or restarts) the store on the same directory and database.
func (e *apiEnv) open() {
	t := e.t
	st, err := store.New(store.Options{Accept: func(*model.Config) error {
		e.mu.Lock()
		defer e.mu.Unlock()
		if e.refuse != nil {
			return e.refuse
		}
		e.applied++
		return nil
	}})
	require.NoError(t, err)
	b, err := store.OpenBolt(e.db)
	require.NoError(t, err)
	scheme := policies.NewScheme()
	api := store.NewAPISource(b, st, scheme, nil)
	require.NoError(t, api.Load(context.Background()))
	files := store.NewFileSource(e.dir, scheme, nil)
	files.AllowEmpty()
	require.NoError(t, files.Start(st))
	auth, err := store.NewAuthenticator([]store.TokenEntry{
		tokenEntry("admin", adminToken, "*"),
		tokenEntry("team", teamToken, "team-a"),
	}, nil)
	require.NoError(t, err)
	mux := http.NewServeMux()
	store.NewAPIHandler(store.APIHandlerOptions{Store: st, API: api, Scheme: scheme, Auth: auth}).Register(mux)
	srv := httptest.NewServer(mux)
	e.st, e.files, e.api, e.srv = st, files, api, srv
	t.Cleanup(func() { e.close() })
}

func (e *apiEnv) close() {
	if e.srv == nil {
		return
	}
	e.srv.Close()
	_ = e.api.Backend().Close()
	e.srv = nil
}

// do sends a request and decodes the JSON answer.
func (e *apiEnv) do(method, path, token, body string) (int, map[string]any) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	require.NoError(e.t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(e.t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(e.t, err)
	out := map[string]any{}
	require.NoError(e.t, json.Unmarshal(data, &out), string(data))
	return resp.StatusCode, out
}

func routeYAML(ns, name, backend, host string) string {
	return "apiVersion: tollgate.dev/v1alpha1\nkind: HTTPRoute\nmetadata: {name: " + name + ", namespace: " + ns + "}\n" +
		"spec:\n  parentRefs: [{name: egress, namespace: default}]\n  hostnames: [" + host + "]\n" +
		"  rules: [{backendRefs: [{name: " + backend + ", namespace: default}]}]\n"
}

func routePath(ns, name string) string {
	return apiBase + "/namespaces/" + ns + "/httproutes/" + name
}

func meta(obj map[string]any) map[string]any { return obj["metadata"].(map[string]any) }

func conditions(obj map[string]any) map[string]map[string]any {
	out := map[string]map[string]any{}
	st, _ := obj["status"].(map[string]any)
	list, _ := st["conditions"].([]any)
	for _, c := range list {
		m := c.(map[string]any)
		out[m["type"].(string)] = m
	}
	return out
}

var baseFiles = map[string]string{"gw.yaml": gateway + "---\n" + backend("openai")}

func TestAPICreateReplaceUnchangedAndGenerations(t *testing.T) {
	e := newAPIEnv(t, baseFiles)
	p := routePath("team-a", "chat")
	code, obj := e.do("PUT", p, teamToken, routeYAML("team-a", "chat", "openai", "chat.llm.internal"))
	require.Equal(t, http.StatusCreated, code, obj)
	require.Equal(t, "1", meta(obj)["resourceVersion"])
	require.EqualValues(t, 1, meta(obj)["generation"])
	uid := meta(obj)["uid"]
	require.NotEmpty(t, uid)
	c := conditions(obj)
	require.Equal(t, "True", c["Accepted"]["status"])
	require.EqualValues(t, 1, c["Accepted"]["observedGeneration"])

	// The same content again: no new revision.
	code, obj = e.do("PUT", p, teamToken, routeYAML("team-a", "chat", "openai", "chat.llm.internal"))
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "1", meta(obj)["resourceVersion"])

	// A label changes the resourceVersion, not the generation.
	labelled := strings.Replace(routeYAML("team-a", "chat", "openai", "chat.llm.internal"), "namespace: team-a}", "namespace: team-a, labels: {team: a}}", 1)
	code, obj = e.do("PUT", p, teamToken, labelled)
	require.Equal(t, http.StatusOK, code, obj)
	require.Equal(t, "2", meta(obj)["resourceVersion"])
	require.EqualValues(t, 1, meta(obj)["generation"])

	// A spec change bumps the generation; the uid stays.
	code, obj = e.do("PUT", p, teamToken, routeYAML("team-a", "chat", "openai", "chat2.llm.internal"))
	require.Equal(t, http.StatusOK, code, obj)
	require.Equal(t, "3", meta(obj)["resourceVersion"])
	require.EqualValues(t, 2, meta(obj)["generation"])
	require.Equal(t, uid, meta(obj)["uid"])
	require.EqualValues(t, 2, conditions(obj)["Accepted"]["observedGeneration"])

	// A JSON body is stored as YAML, and its server-managed metadata and
	// status are ignored (the resourceVersion is a precondition).
	js := `{"apiVersion":"tollgate.dev/v1alpha1","kind":"HTTPRoute","metadata":{"name":"chat","namespace":"team-a","resourceVersion":"3","uid":"forged","generation":99},` +
		`"spec":{"parentRefs":[{"name":"egress","namespace":"default"}],"hostnames":["chat3.llm.internal"],"rules":[{"backendRefs":[{"name":"openai","namespace":"default"}]}]},"status":{"conditions":[]}}`
	code, obj = e.do("PUT", p, teamToken, js)
	require.Equal(t, http.StatusOK, code, obj)
	require.Equal(t, uid, meta(obj)["uid"])
	require.EqualValues(t, 3, meta(obj)["generation"])
	rec, ok := e.api.Record(model.Ref{Kind: "HTTPRoute", Namespace: "team-a", Name: "chat"})
	require.True(t, ok)
	require.Contains(t, string(rec.Body), "- chat3.llm.internal\n")
	require.NotContains(t, string(rec.Body), "forged")
	require.NotContains(t, string(rec.Body), "status")

	// The served configuration has it.
	cfg := e.st.Config()
	require.NotNil(t, servedRoute(cfg, model.Ref{Kind: "HTTPRoute", Namespace: "team-a", Name: "chat"}))
}

func TestAPIPreconditionsAndCreate(t *testing.T) {
	e := newAPIEnv(t, baseFiles)
	body := routeYAML("team-a", "chat", "openai", "chat.llm.internal")
	code, obj := e.do("POST", apiBase+"/namespaces/team-a/httproutes", teamToken, body)
	require.Equal(t, http.StatusCreated, code, obj)
	code, obj = e.do("POST", apiBase+"/namespaces/team-a/httproutes", teamToken, body)
	require.Equal(t, http.StatusConflict, code)
	require.Equal(t, "AlreadyExists", obj["reason"])

	stale := strings.Replace(routeYAML("team-a", "chat", "openai", "x.llm.internal"), "namespace: team-a}", "namespace: team-a, resourceVersion: \"7\"}", 1)
	code, obj = e.do("PUT", routePath("team-a", "chat"), teamToken, stale)
	require.Equal(t, http.StatusConflict, code)
	require.Equal(t, "Conflict", obj["reason"])
	require.Contains(t, obj["message"], "expects resourceVersion 7, but it is at 1")

	req, _ := http.NewRequest("DELETE", e.srv.URL+routePath("team-a", "chat"), nil)
	req.Header.Set("Authorization", "Bearer "+teamToken)
	req.Header.Set("If-Match", `"5"`)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusConflict, resp.StatusCode)

	code, _ = e.do("DELETE", routePath("team-a", "chat")+"?resourceVersion=1", teamToken, "")
	require.Equal(t, http.StatusOK, code)
	code, obj = e.do("DELETE", routePath("team-a", "chat"), teamToken, "")
	require.Equal(t, http.StatusNotFound, code)
	require.Equal(t, "NotFound", obj["reason"])

	// The URL and the body must agree.
	code, obj = e.do("PUT", routePath("team-a", "other"), teamToken, body)
	require.Equal(t, http.StatusBadRequest, code)
	require.Contains(t, obj["message"], `metadata.name is "chat" but the URL names "other"`)
	code, _ = e.do("PUT", apiBase+"/namespaces/team-a/backends/chat", teamToken, body)
	require.Equal(t, http.StatusBadRequest, code)
	code, _ = e.do("PUT", routePath("team-a", "chat"), teamToken, body+"---\n"+body)
	require.Equal(t, http.StatusBadRequest, code)
}

func TestAPIValidationIsTheFilesOne(t *testing.T) {
	e := newAPIEnv(t, baseFiles)
	code, obj := e.do("PUT", routePath("team-a", "chat"), teamToken, routeYAML("team-a", "chat", "missing", "chat.llm.internal"))
	require.Equal(t, http.StatusUnprocessableEntity, code)
	require.Equal(t, "Invalid", obj["reason"])
	vs := obj["violations"].([]any)
	require.Len(t, vs, 1)
	v := vs[0].(map[string]any)
	require.Equal(t, apiBase+"/namespaces/team-a/httproutes/chat", v["file"])
	require.EqualValues(t, 7, v["line"], "the line of the body as sent")
	require.Equal(t, "HTTPRoute/team-a/chat", v["object"])
	require.Equal(t, "spec.rules[0].backendRefs[0].name", v["field"])
	require.Contains(t, v["message"], "does not exist")

	// Unknown fields are the decoder's violations, with the body's line.
	code, obj = e.do("PUT", routePath("team-a", "chat"), teamToken, strings.Replace(routeYAML("team-a", "chat", "openai", "h"), "hostnames", "hostname", 1))
	require.Equal(t, http.StatusUnprocessableEntity, code)
	v = obj["violations"].([]any)[0].(map[string]any)
	require.Equal(t, "spec.hostname", v["field"])
	require.EqualValues(t, 6, v["line"])

	// Nothing was stored, nothing served.
	require.Empty(t, e.api.Records())
	require.Zero(t, e.api.Revision())

	// A delete that would break another object is refused the same way.
	backendDoc := "apiVersion: tollgate.dev/v1alpha1\nkind: Backend\nmetadata: {name: anthropic, namespace: team-a}\nspec: {provider: anthropic, schema: anthropic}\n"
	code, obj = e.do("PUT", apiBase+"/namespaces/team-a/backends/anthropic", teamToken, backendDoc)
	require.Equal(t, http.StatusCreated, code, obj)
	code, obj = e.do("PUT", routePath("team-a", "claude"), teamToken, strings.Replace(routeYAML("team-a", "claude", "anthropic", "claude.llm.internal"), "name: anthropic, namespace: default", "name: anthropic", 1))
	require.Equal(t, http.StatusCreated, code, obj)
	code, obj = e.do("DELETE", apiBase+"/namespaces/team-a/backends/anthropic", teamToken, "")
	require.Equal(t, http.StatusUnprocessableEntity, code, obj)
	require.Contains(t, obj["violations"].([]any)[0].(map[string]any)["message"], "does not exist")
}

func TestAPIDryRunStoresNothing(t *testing.T) {
	e := newAPIEnv(t, baseFiles)
	code, obj := e.do("PUT", routePath("team-a", "chat")+"?dryRun=true", teamToken, routeYAML("team-a", "chat", "openai", "chat.llm.internal"))
	require.Equal(t, http.StatusCreated, code, obj)
	require.Equal(t, true, obj["status"].(map[string]any)["dryRun"])
	code, _ = e.do("GET", routePath("team-a", "chat"), "", "")
	require.Equal(t, http.StatusNotFound, code)
	code, obj = e.do("PUT", routePath("team-a", "chat")+"?dryRun=true", teamToken, routeYAML("team-a", "chat", "missing", "chat.llm.internal"))
	require.Equal(t, http.StatusUnprocessableEntity, code, obj)
	code, _ = e.do("PUT", routePath("team-a", "chat")+"?dryRun=maybe", teamToken, routeYAML("team-a", "chat", "openai", "c"))
	require.Equal(t, http.StatusBadRequest, code)
	require.Zero(t, e.api.Revision())
	entries, err := e.api.Backend().Audit(context.Background(), 0, 0)
	require.NoError(t, err)
	require.Empty(t, entries)
}

func TestAPIAuthentication(t *testing.T) {
	e := newAPIEnv(t, baseFiles)
	body := routeYAML("team-b", "chat", "openai", "chat.llm.internal")
	code, obj := e.do("PUT", routePath("team-b", "chat"), "", body)
	require.Equal(t, http.StatusUnauthorized, code)
	require.Equal(t, "Unauthorized", obj["reason"])
	code, _ = e.do("PUT", routePath("team-b", "chat"), "wrong-token", body)
	require.Equal(t, http.StatusUnauthorized, code)
	code, obj = e.do("PUT", routePath("team-b", "chat"), teamToken, body)
	require.Equal(t, http.StatusForbidden, code)
	require.Contains(t, obj["message"], `token:team may not write namespace "team-b"`)
	code, _ = e.do("PUT", routePath("team-b", "chat"), adminToken, body)
	require.Equal(t, http.StatusCreated, code)
	// Reads need no credentials; no answer carries a token.
	code, obj = e.do("GET", apiBase+"/httproutes", "", "")
	require.Equal(t, http.StatusOK, code)
	data, _ := json.Marshal(obj)
	require.NotContains(t, string(data), adminToken)
	entries, err := e.api.Backend().Audit(context.Background(), 0, 0)
	require.NoError(t, err)
	require.Len(t, entries, 1)
	require.Equal(t, "token:admin", entries[0].Who)
}

func TestAPIFileObjectsAreReadOnlyAndFilesWinConflicts(t *testing.T) {
	e := newAPIEnv(t, map[string]string{"gw.yaml": gateway + "---\n" + backend("openai") + "---\n" + route("files", "openai")})
	code, obj := e.do("GET", routePath("default", "files"), "", "")
	require.Equal(t, http.StatusOK, code)
	st := obj["status"].(map[string]any)
	require.Equal(t, true, st["readOnly"])
	require.Contains(t, st["source"], "gw.yaml:")
	code, obj = e.do("PUT", routePath("default", "files"), adminToken, routeYAML("default", "files", "openai", "x"))
	require.Equal(t, http.StatusConflict, code)
	require.Equal(t, "ReadOnly", obj["reason"])
	require.Contains(t, obj["message"], "gw.yaml:")
	code, _ = e.do("DELETE", routePath("default", "files"), adminToken, "")
	require.Equal(t, http.StatusConflict, code)

	// An API object, then a file defining the same name: the file wins,
	// both are reported, and deleting through the API removes the API's.
	code, _ = e.do("PUT", routePath("default", "chat"), adminToken, routeYAML("default", "chat", "openai", "api.llm.internal"))
	require.Equal(t, http.StatusCreated, code)
	write(t, filepath.Join(e.dir, "chat.yaml"), strings.Replace(route("chat", "openai"), "spec:\n", "spec:\n  hostnames: [file.llm.internal]\n", 1))
	require.NoError(t, e.files.Sync(e.st))
	r := servedRoute(e.st.Config(), model.Ref{Kind: "HTTPRoute", Namespace: "default", Name: "chat"})
	require.Equal(t, []string{"file.llm.internal"}, r.Hostnames)
	code, obj = e.do("GET", routePath("default", "chat"), "", "")
	require.Equal(t, http.StatusOK, code)
	c := conditions(obj)
	require.Equal(t, "True", c["Conflicted"]["status"], obj)
	require.Equal(t, "DefinedByFileAndAPI", c["Conflicted"]["reason"])
	code, _ = e.do("DELETE", routePath("default", "chat"), adminToken, "")
	require.Equal(t, http.StatusOK, code)
	code, obj = e.do("GET", routePath("default", "chat"), "", "")
	require.Equal(t, http.StatusOK, code)
	_, conflicted := conditions(obj)["Conflicted"]
	require.False(t, conflicted)
}

func TestAPIPersistsAcrossRestartWithHistoryAndAudit(t *testing.T) {
	e := newAPIEnv(t, baseFiles)
	for _, host := range []string{"a.llm.internal", "b.llm.internal"} {
		code, obj := e.do("PUT", routePath("team-a", "chat"), teamToken, routeYAML("team-a", "chat", "openai", host))
		require.Less(t, code, 300, obj)
	}
	code, _ := e.do("PUT", routePath("team-a", "gone"), teamToken, routeYAML("team-a", "gone", "openai", "g.llm.internal"))
	require.Equal(t, http.StatusCreated, code)
	code, _ = e.do("DELETE", routePath("team-a", "gone"), teamToken, "")
	require.Equal(t, http.StatusOK, code)

	e.close()
	e.open()
	code, obj := e.do("GET", routePath("team-a", "chat"), "", "")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "2", meta(obj)["resourceVersion"])
	require.EqualValues(t, 2, meta(obj)["generation"])
	require.Equal(t, []any{"b.llm.internal"}, obj["spec"].(map[string]any)["hostnames"])
	require.NotNil(t, servedRoute(e.st.Config(), model.Ref{Kind: "HTTPRoute", Namespace: "team-a", Name: "chat"}))
	code, _ = e.do("GET", routePath("team-a", "gone"), "", "")
	require.Equal(t, http.StatusNotFound, code)

	code, obj = e.do("GET", routePath("team-a", "gone")+"/history", "", "")
	require.Equal(t, http.StatusOK, code)
	items := obj["items"].([]any)
	require.Len(t, items, 2)
	require.Equal(t, true, items[1].(map[string]any)["deleted"])

	code, obj = e.do("GET", apiBase+"/audit?after=1&limit=2", "", "")
	require.Equal(t, http.StatusOK, code)
	items = obj["items"].([]any)
	require.Len(t, items, 2)
	first := items[0].(map[string]any)
	require.EqualValues(t, 2, first["revision"])
	require.Equal(t, "replace", first["verb"])
	require.Equal(t, "token:team", first["who"])
	require.Contains(t, first["diff"], "-    - a.llm.internal")
	require.Contains(t, first["diff"], "+    - b.llm.internal")
}

func TestAPIRefusedAfterCommitIsReverted(t *testing.T) {
	e := newAPIEnv(t, baseFiles)
	code, _ := e.do("PUT", routePath("team-a", "chat"), teamToken, routeYAML("team-a", "chat", "openai", "a.llm.internal"))
	require.Equal(t, http.StatusCreated, code)
	e.mu.Lock()
	e.refuse = errors.New("publication refused")
	e.mu.Unlock()
	code, obj := e.do("PUT", routePath("team-a", "chat"), teamToken, routeYAML("team-a", "chat", "openai", "b.llm.internal"))
	require.Equal(t, http.StatusUnprocessableEntity, code, obj)
	require.Contains(t, obj["message"], "publication refused")
	code, obj = e.do("PUT", routePath("team-a", "new"), teamToken, routeYAML("team-a", "new", "openai", "n.llm.internal"))
	require.Equal(t, http.StatusUnprocessableEntity, code, obj)
	e.mu.Lock()
	e.refuse = nil
	e.mu.Unlock()

	// What is stored is what is served: the first version, and no "new".
	e.close()
	e.open()
	code, obj = e.do("GET", routePath("team-a", "chat"), "", "")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, []any{"a.llm.internal"}, obj["spec"].(map[string]any)["hostnames"])
	code, _ = e.do("GET", routePath("team-a", "new"), "", "")
	require.Equal(t, http.StatusNotFound, code)
	entries, err := e.api.Backend().Audit(context.Background(), 0, 0)
	require.NoError(t, err)
	var verbs []string
	for _, en := range entries {
		verbs = append(verbs, en.Verb+" "+en.Object)
	}
	require.Equal(t, []string{"create HTTPRoute/team-a/chat", "replace HTTPRoute/team-a/chat", "revert HTTPRoute/team-a/chat",
		"create HTTPRoute/team-a/new", "delete HTTPRoute/team-a/new"}, verbs)
}

func TestAPIStatusOfObjects(t *testing.T) {
	e := newAPIEnv(t, baseFiles)
	code, _ := e.do("PUT", routePath("team-a", "chat"), teamToken, routeYAML("team-a", "chat", "openai", "a.llm.internal"))
	require.Equal(t, http.StatusCreated, code)
	// A file change that breaks: the file objects keep their served
	// version and say why the latest is refused.
	write(t, filepath.Join(e.dir, "broken.yaml"), route("broken", "missing"))
	require.Error(t, e.files.Sync(e.st))
	code, obj := e.do("GET", "/status/objects", "", "")
	require.Equal(t, http.StatusOK, code)
	byObject := map[string]map[string]any{}
	for _, o := range obj["objects"].([]any) {
		m := o.(map[string]any)
		byObject[m["object"].(string)] = m
	}
	require.Contains(t, byObject, "HTTPRoute/team-a/chat")
	require.Equal(t, "api", byObject["HTTPRoute/team-a/chat"]["source"])
	broken := byObject["HTTPRoute/broken"]
	require.NotNil(t, broken, obj)
	conds := map[string]map[string]any{}
	for _, c := range broken["conditions"].([]any) {
		m := c.(map[string]any)
		conds[m["type"].(string)] = m
	}
	require.Equal(t, "False", conds["Accepted"]["status"])
	require.Equal(t, "Invalid", conds["Accepted"]["reason"])
	require.Equal(t, "False", conds["ResolvedRefs"]["status"])
	require.Equal(t, "InvalidReference", conds["ResolvedRefs"]["reason"])
	require.Contains(t, conds["Accepted"]["message"], "it is not served")

	code, obj = e.do("GET", "/status/objects?namespace=team-a", "", "")
	require.Equal(t, http.StatusOK, code)
	require.Len(t, obj["objects"].([]any), 1)
}

func TestAPIWithoutWritersOrStore(t *testing.T) {
	st, err := store.New(store.Options{})
	require.NoError(t, err)
	dir := t.TempDir()
	write(t, filepath.Join(dir, "gw.yaml"), gateway+"---\n"+backend("openai"))
	require.NoError(t, store.NewFileSource(dir, policies.NewScheme(), nil).Start(st))
	mux := http.NewServeMux()
	store.NewAPIHandler(store.APIHandlerOptions{Store: st, Scheme: policies.NewScheme()}).Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	resp, err := http.Post(srv.URL+apiBase+"/namespaces/default/httproutes", "application/yaml", bytes.NewReader([]byte(route("x", "openai"))))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	resp, err = http.Get(srv.URL + apiBase + "/backends")
	require.NoError(t, err)
	var list map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&list))
	resp.Body.Close()
	require.Len(t, list["items"].([]any), 1)
	require.Equal(t, "BackendList", list["kind"])
}

func TestTokenFile(t *testing.T) {
	_, err := store.ParseTokenFile("t.yaml", []byte("tokens:\n- name: ci\n  sha256: abc\n  namespaces: [a]\n"))
	require.ErrorContains(t, err, "64 hex digits")
	_, err = store.ParseTokenFile("t.yaml", []byte("tokens:\n- name: ci\n  sha256: "+strings.Repeat("a", 64)+"\n"))
	require.ErrorContains(t, err, "namespaces is empty")
	_, err = store.ParseTokenFile("t.yaml", []byte("tokens:\n- nam: ci\n"))
	require.ErrorContains(t, err, "t.yaml")
	ts, err := store.ParseTokenFile("t.yaml", []byte("tokens:\n- name: ci\n  sha256: "+strings.Repeat("a", 64)+"\n  namespaces: ['*']\n"))
	require.NoError(t, err)
	require.Len(t, ts, 1)
}

// servedRoute finds a route in the served configuration.
func servedRoute(cfg *model.Config, ref model.Ref) *model.RouteConfig {
	for _, g := range cfg.Gateways {
		for _, l := range g.Listeners {
			for _, r := range l.Routes {
				if r.Ref == ref {
					return r
				}
			}
		}
	}
	return nil
}

func TestAPIObjectsNameOnlyTheirNamespacesFiles(t *testing.T) {
	e := newAPIEnv(t, baseFiles)
	injector := func(ns, source string) string {
		return "apiVersion: tollgate.dev/v1alpha1\nkind: CredentialInjector\nmetadata: {name: key, namespace: " + ns + "}\n" +
			"spec:\n  targetRefs: [{kind: Backend, name: mine}]\n  apiKey: {secret: {" + source + "}}\n"
	}
	p := apiBase + "/namespaces/team-a/credentialinjectors/key"
	code, obj := e.do("PUT", p, teamToken, injector("team-a", "env: OPENAI_API_KEY"))
	require.Equal(t, http.StatusUnprocessableEntity, code)
	require.Contains(t, obj["violations"].([]any)[0].(map[string]any)["message"], "may not read tollgate's environment")
	code, obj = e.do("PUT", p, teamToken, injector("team-a", "file: /etc/tollgate/secrets/openai.key"))
	require.Equal(t, http.StatusUnprocessableEntity, code)
	require.Contains(t, obj["violations"].([]any)[0].(map[string]any)["message"], "--api-secrets-dir")

	dir := t.TempDir()
	e.api.SetSecretsDir(dir)
	for _, f := range []string{dir + "/team-b/openai.key", dir + "/team-a/../team-b/openai.key", "team-a/openai.key", dir + "/team-a"} {
		code, obj = e.do("PUT", p, teamToken, injector("team-a", "file: "+f))
		require.Equal(t, http.StatusUnprocessableEntity, code, f)
		require.Contains(t, obj["violations"].([]any)[0].(map[string]any)["message"], "may only name absolute paths under "+dir+"/team-a/", f)
	}
	// A file under the namespace's folder is read like any other.
	write(t, filepath.Join(dir, "team-a", "openai.key"), "sk-team-a-test-key")
	backendDoc := "apiVersion: tollgate.dev/v1alpha1\nkind: Backend\nmetadata: {name: mine, namespace: team-a}\nspec: {provider: openai}\n"
	code, obj = e.do("PUT", apiBase+"/namespaces/team-a/backends/mine", teamToken, backendDoc)
	require.Equal(t, http.StatusCreated, code, obj)
	code, obj = e.do("PUT", p, teamToken, injector("team-a", "file: "+dir+"/team-a/openai.key"))
	require.Equal(t, http.StatusCreated, code, obj)
	data, _ := json.Marshal(obj)
	require.NotContains(t, string(data), "sk-team-a-test-key")
}

func TestPlural(t *testing.T) {
	for kind, want := range map[string]string{
		"Gateway": "gateways", "Backend": "backends", "HTTPRoute": "httproutes",
		"RateLimitPolicy": "ratelimitpolicies", "GuardRailsPolicy": "guardrailspolicies", "QoSController": "qoscontrollers",
	} {
		require.Equal(t, want, store.Plural(kind), kind)
	}
}

// TestTokenFileIsFollowed grants and revokes a token by editing the token
// file, without a restart; a broken edit keeps the tokens it held.
func TestTokenFileIsFollowed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.yaml")
	file := func(entries ...store.TokenEntry) string {
		s := "tokens:\n"
		for _, e := range entries {
			s += "- name: " + e.Name + "\n  sha256: " + e.SHA256 + "\n  namespaces: [\"*\"]\n"
		}
		return s
	}
	write(t, path, file(tokenEntry("first", "first-token", "*")))
	entries, err := store.ReadTokenFile(path)
	require.NoError(t, err)
	auth, err := store.NewAuthenticator(entries, nil)
	require.NoError(t, err)
	auth.FollowTokenFile(path, nil)
	as := func(token string) (store.Principal, error) {
		r := httptest.NewRequest("PUT", "/", nil)
		r.Header.Set("Authorization", "Bearer "+token)
		return auth.Authenticate(r)
	}
	p, err := as("first-token")
	require.NoError(t, err)
	require.Equal(t, "token:first", p.Name)

	write(t, path, file(tokenEntry("second", "second-token", "*")))
	require.Eventually(t, func() bool {
		_, err := as("second-token")
		return err == nil
	}, 5*time.Second, 50*time.Millisecond)
	_, err = as("first-token")
	require.Error(t, err, "revoked by the edit")

	write(t, path, "tokens: [broken")
	time.Sleep(1100 * time.Millisecond) // past the re-check interval
	_, err = as("second-token")
	require.NoError(t, err, "a broken file keeps the tokens it held")
}
