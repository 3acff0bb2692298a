package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tollgate-dev/tollgate/store"
	"github.com/tollgate-dev/tollgate/xds"
)

// diffCredential puts an API key, read from secrets/openai.key, on openai.
const diffCredential = `apiVersion: tollgate.dev/v1alpha1
kind: CredentialInjector
metadata: {name: openai-key}
spec:
  targetRefs: [{kind: Backend, name: openai}]
  apiKey: {secret: {file: secrets/openai.key}}
`

// diffPolicyDir writes a policy directory: serve_test.go's gateways,
// backends and routes with the request timeout, and an API key.
func diffPolicyDir(t *testing.T, timeout, key string) string {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(dir, "secrets"), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "secrets", "openai.key"), []byte(key), 0o600))
	writePolicies(t, dir, map[string]string{
		"gateways.yaml":   policyGateways,
		"backends.yaml":   policyBackends,
		"routes.yaml":     policyRoutes(timeout),
		"credential.yaml": diffCredential,
	})
	return dir
}

// TestDiffAgainstARunningTollgate diffs a changed copy of the served
// directory (exit 1, the route and the rotated key), the served directory
// itself (exit 0) and an invalid one (exit 2, its violation), and checks
// that nothing of it was served.
func TestDiffAgainstARunningTollgate(t *testing.T) {
	const servedKey, nextKey = "sk-served-3a7c0f1e9b", "sk-next-6d2e8b4a1c"
	served := diffPolicyDir(t, "60s", servedKey)
	withToken, token := operatorToken(t)
	inst, _ := startTollgateWith(t, served, both(allowPlaintextSecrets, withToken))
	server := "http://" + inst.AdminAddr.String()
	before := inst.XDS.Versions("egress")
	require.NotEmpty(t, before)

	next := diffPolicyDir(t, "90s", nextKey)
	code, out, errOut := cli(t, "diff", next, "--server", server, "--token", token)
	require.Equal(t, 1, code, errOut)
	require.Empty(t, errOut)
	t.Logf("tollgate diff:\n%s", out)
	require.Regexp(t, `(?m)^gateway egress: 0 added, 2 changed, 0 removed, \d+ unchanged$`, out)
	require.Regexp(t, `(?m)^gateway other: 0 added, 0 changed, 0 removed, \d+ unchanged$`, out)
	require.Contains(t, out, "\n~ routes route/http\n--- a/routes/route/http\n+++ b/routes/route/http\n@@ ")
	require.Contains(t, out, "\n-      timeout: 60s\n+      timeout: 90s\n")
	require.Contains(t, out, "\n~ secrets credential/default/openai: value changed (hidden)\n")
	for _, key := range []string{servedKey, nextKey} {
		require.NotContains(t, out, key)
	}
	require.Equal(t, before, inst.XDS.Versions("egress"), "a diff serves nothing")

	// -o json is the server's answer, with the same exit status.
	code, out, errOut = cli(t, "diff", next, "--server", server, "--token", token, "-o", "json")
	require.Equal(t, 1, code, errOut)
	var d xds.ConfigDiff
	require.NoError(t, json.Unmarshal([]byte(out), &d))
	require.Equal(t, 2, d.Changes())
	require.Equal(t, []string{"egress", "other"}, []string{d.Gateways[0].Gateway, d.Gateways[1].Gateway})

	// The served directory itself: no change.
	code, out, errOut = cli(t, "diff", served, "--server", server, "--token", token)
	require.Equal(t, 0, code, errOut)
	require.Regexp(t, `^no changes: serving .* would change nothing \(2 gateway\(s\), \d+ resource\(s\)\)\n$`, out)

	// An invalid directory: its violations, named as the user named the
	// directory, and exit 2.
	bad := t.TempDir()
	writePolicies(t, bad, map[string]string{"bad.yaml": "apiVersion: tollgate.dev/v1alpha1\nkind: Gateway\nmetadata: {name: g}\nspec: {listeners: [{name: h, port: 80, protocol: HTTP, tsl: true}]}\n"})
	code, out, errOut = cli(t, "diff", bad, "--server", server, "--token", token)
	require.Equal(t, 2, code)
	require.Empty(t, out)
	require.Contains(t, errOut, filepath.Join(bad, "bad.yaml")+`:4: Gateway/g: spec.listeners[0].tsl: unknown field "tsl"`)
	require.Contains(t, errOut, "1 violation(s) in "+bad+": tollgate would refuse it and keep serving what it serves\n")
	require.Equal(t, before, inst.XDS.Versions("egress"))

	// A directory with no policy file is a wrong path, not "remove all".
	code, _, errOut = cli(t, "diff", t.TempDir(), "--server", server, "--token", token)
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "holds no *.yaml or *.yml files")
}

// TestDiffHandlerRefusals checks the Status bodies of POST /diff.
func TestDiffHandlerRefusals(t *testing.T) {
	st, err := store.New(store.Options{})
	require.NoError(t, err)
	h := diffHandler(st, "file:/policies")
	for _, c := range []struct {
		method, body string
		code         int
		reason, msg  string
	}{
		{http.MethodGet, "", 400, "BadRequest", "use POST /diff"},
		{http.MethodPost, "{", 400, "BadRequest", "not a diff request"},
		{http.MethodPost, `{"dir": "/p", "files": {}, "extra": 1}`, 400, "BadRequest", "unknown field"},
		{http.MethodPost, `{"files": {}}`, 400, "BadRequest", "dir is empty"},
		{http.MethodPost, `{"dir": "/p", "files": {"../x.yaml": ""}}`, 400, "BadRequest", "not a path inside dir"},
		{http.MethodPost, `{"dir": "/p", "files": {"g.yaml": "kind: Gateway\n"}}`, 422, "Invalid", "/p is not valid: 1 violation(s); tollgate would refuse it"},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(c.method, "/diff", strings.NewReader(c.body)))
		require.Equal(t, c.code, rec.Code, rec.Body.String())
		var s diffStatus
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &s))
		require.Equal(t, "Status", s.Kind)
		require.Equal(t, "Failure", s.Status)
		require.Equal(t, c.code, s.Code)
		require.Equal(t, c.reason, s.Reason)
		require.Contains(t, s.Message, c.msg)
		if c.code == 422 {
			require.Len(t, s.Violations, 1)
			require.Equal(t, "/p/g.yaml", s.Violations[0].File)
		}
	}
}

// TestDiffRefusalOfPlaintextSecrets: a tollgate on plaintext xDS would
// refuse a directory that adds an API key; so does its diff, exit 2.
func TestDiffRefusalOfPlaintextSecrets(t *testing.T) {
	served := t.TempDir()
	writePolicies(t, served, map[string]string{
		"gateways.yaml": policyGateways,
		"backends.yaml": policyBackends,
		"routes.yaml":   policyRoutes("60s"),
	})
	withToken, token := operatorToken(t)
	inst, _ := startTollgateWith(t, served, withToken)
	code, out, errOut := cli(t, "diff", diffPolicyDir(t, "60s", "sk-plaintext-5e1f"), "--server", "http://"+inst.AdminAddr.String(), "--token", token)
	require.Equal(t, 2, code, out)
	require.Empty(t, out)
	require.Contains(t, errOut, "Refused (422): tollgate would refuse")
	require.Contains(t, errOut, "refusing to serve secrets over plaintext xDS")
	require.NotContains(t, errOut, "sk-plaintext-5e1f")
}
