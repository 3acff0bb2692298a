package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestRealEnvoyModelRouting runs a real Envoy (ENVOY_BIN) against fake
// providers on 127.0.0.1 and checks the body-driven pipeline end to end:
//   - the body's model selects the rule (gpt-* to one provider, claude-*
//     to another), with no model condition in headers or path;
//   - a model on the gateway's deny list is refused with 403 and a JSON
//     error before any provider sees it;
//   - a fail-over from a provider that refuses connections to a second
//     one renames the model, on that attempt, to the second provider's
//     name (its hop's model map), and leaves the rest of the body alone.
func TestRealEnvoyModelRouting(t *testing.T) {
	envoy := envoyBin(t)
	type seen struct {
		provider string
		body     map[string]any
		headers  http.Header
	}
	var mu sync.Mutex
	var got []seen
	provider := func(name string) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var body map[string]any
			_ = json.NewDecoder(r.Body).Decode(&body)
			mu.Lock()
			got = append(got, seen{provider: name, body: body, headers: r.Header.Clone()})
			mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			_, _ = fmt.Fprintf(w, `{"id":"x","model":%q,"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}`, body["model"])
		}))
	}
	gpt, claude, azure := provider("gpt"), provider("claude"), provider("azure")
	defer gpt.Close()
	defer claude.Close()
	defer azure.Close()
	port := func(s *httptest.Server) int { return s.Listener.Addr().(*net.TCPAddr).Port }
	deadPort := freePort(t)
	listenerPort := freePort(t)

	dir := t.TempDir()
	writePolicies(t, dir, map[string]string{"policies.yaml": fmt.Sprintf(`apiVersion: tollgate.dev/v1alpha1
kind: Gateway
metadata: {name: egress}
spec:
  listeners: [{name: http, address: 127.0.0.1, port: %d, protocol: HTTP}]
---
apiVersion: tollgate.dev/v1alpha1
kind: Backend
metadata: {name: gpt}
spec: {hostname: gpt.internal, port: %d, addresses: [{ip: 127.0.0.1}]}
---
apiVersion: tollgate.dev/v1alpha1
kind: Backend
metadata: {name: claude}
spec: {hostname: claude.internal, port: %d, addresses: [{ip: 127.0.0.1}]}
---
apiVersion: tollgate.dev/v1alpha1
kind: Backend
metadata: {name: dead}
spec: {hostname: dead.internal, port: %d, addresses: [{ip: 127.0.0.1}]}
---
apiVersion: tollgate.dev/v1alpha1
kind: Backend
metadata: {name: azure}
spec:
  hostname: azure.internal
  port: %d
  addresses: [{ip: 127.0.0.1}]
  modelMap: [{from: gpt-4o-fo, to: corp-deployment}]
---
apiVersion: tollgate.dev/v1alpha1
kind: HTTPRoute
metadata: {name: models}
spec:
  parentRefs: [{name: egress}]
  rules:
  - name: failover
    matches: [{model: {value: gpt-4o-fo}}]
    backendRefs: [{name: dead}, {name: azure, priority: 1}]
  - name: gpt
    matches: [{model: {type: Prefix, value: gpt-}}]
    backendRefs: [{name: gpt}]
  - name: claude
    matches: [{model: {type: Prefix, value: claude-}}]
    backendRefs: [{name: claude}]
---
apiVersion: tollgate.dev/v1alpha1
kind: GuardRailsPolicy
metadata: {name: deny}
spec:
  targetRefs: [{kind: Gateway, name: egress}]
  models: {deny: [{value: gpt-4-32k}]}
`, listenerPort, port(gpt), port(claude), deadPort, port(azure))})
	inst, _ := startTollgate(t, dir)
	runEnvoy(t, envoy, inst, dir, listenerPort)

	post := func(model string) (int, string) {
		body := fmt.Sprintf(`{"model":%q,"max_tokens":16,"messages":[{"role":"user","content":"hi"}]}`, model)
		resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/v1/chat/completions", listenerPort), "application/json", strings.NewReader(body))
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	last := func() seen {
		mu.Lock()
		defer mu.Unlock()
		require.NotEmpty(t, got)
		return got[len(got)-1]
	}
	require.Eventually(t, func() bool { code, _ := post("gpt-4o-mini"); return code == http.StatusOK }, 30*time.Second, 100*time.Millisecond)
	require.Equal(t, "gpt", last().provider)
	require.Empty(t, last().headers.Get("x-tollgate-model"), "routing headers end at the gateway")

	code, _ := post("claude-sonnet-4-5")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "claude", last().provider)

	mu.Lock()
	before := len(got)
	mu.Unlock()
	code, body := post("gpt-4-32k")
	require.Equal(t, http.StatusForbidden, code, body)
	require.Contains(t, body, "model_not_allowed")
	mu.Lock()
	require.Equal(t, before, len(got), "a denied model reaches no provider")
	mu.Unlock()

	code, body = post("gpt-4o-fo")
	require.Equal(t, http.StatusOK, code, body)
	s := last()
	require.Equal(t, "azure", s.provider)
	require.Equal(t, "corp-deployment", s.body["model"], "the fail-over attempt asks for the second provider's name")
	require.EqualValues(t, 16, s.body["max_tokens"])
	require.Empty(t, s.headers.Get("x-tollgate-model"))
	require.Nil(t, inst.XDS.Status().LastNack)
}

// envoyBin is ENVOY_BIN, or skips the test.
func envoyBin(t *testing.T) string {
	t.Helper()
	envoy := os.Getenv("ENVOY_BIN")
	if envoy == "" {
		t.Skip("set ENVOY_BIN to an Envoy 1.37–1.40 binary to run this test")
	}
	return envoy
}
