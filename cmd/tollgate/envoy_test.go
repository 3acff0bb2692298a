package main

import (
	"context"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	bootstrap "github.com/tollgate-dev/tollgate/envoy-bootstrap"
)

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestRealEnvoy runs a real Envoy (ENVOY_BIN=/path/to/envoy) against
// tollgate: the bootstrap must pass Envoy's own validation, Envoy must
// accept what tollgate serves, and a request through its listener must
// reach the backend with the Host rewritten.
func TestRealEnvoy(t *testing.T) {
	envoy := os.Getenv("ENVOY_BIN")
	if envoy == "" {
		t.Skip("set ENVOY_BIN to an Envoy 1.40 binary to run this test")
	}
	var gotHost atomic.Value
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotHost.Store(r.Host)
		_, _ = io.WriteString(w, "hello from the model server")
	}))
	defer backend.Close()
	backendPort := backend.Listener.Addr().(*net.TCPAddr).Port
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
metadata: {name: local}
spec:
  hostname: model.internal
  port: %d
  addresses: [{ip: 127.0.0.1}]
---
apiVersion: tollgate.dev/v1alpha1
kind: HTTPRoute
metadata: {name: local}
spec:
  parentRefs: [{name: egress}]
  rules: [{backendRefs: [{name: local}]}]
`, listenerPort, backendPort)})
	inst, _ := startTollgate(t, dir)
	runEnvoy(t, envoy, inst, dir, listenerPort)

	var body string
	require.Eventually(t, func() bool {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/v1/models", listenerPort))
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 100*time.Millisecond)
	require.Equal(t, "hello from the model server", body)
	require.Equal(t, "model.internal", gotHost.Load())
	require.Nil(t, inst.XDS.Status().LastNack)
}

// runEnvoy validates the rendered bootstrap with Envoy itself, starts Envoy
// for gateway egress until the test ends, and waits until it ACKed its
// listeners and routes.
func runEnvoy(t *testing.T, envoy string, inst *instance, dir string, baseID int) {
	t.Helper()
	bs, err := bootstrap.Render(bootstrap.Options{Gateway: "egress", NodeID: "envoy-test", XDSAddr: inst.XDSAddr.String(), AdminPort: uint32(freePort(t))})
	require.NoError(t, err)
	bsFile := filepath.Join(dir, "..", "envoy.yaml")
	require.NoError(t, os.WriteFile(bsFile, bs, 0o644))
	out, err := exec.Command(envoy, "--mode", "validate", "-c", bsFile).CombinedOutput()
	require.NoError(t, err, "envoy rejected the bootstrap:\n%s", out)

	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, envoy, "-c", bsFile, "--base-id", fmt.Sprint(baseID), "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })

	require.Eventually(t, func() bool {
		st := inst.XDS.Status()
		return len(st.Nodes) == 1 && st.Nodes[0].Acked["listeners"] != "" && st.Nodes[0].Acked["routes"] != "" && st.LastNack == nil
	}, 30*time.Second, 50*time.Millisecond, "Envoy did not ACK the configuration: %+v", inst.XDS.Status())
}

// TestRealEnvoyFailoverWithCredentials checks the fail-over construction on
// a real Envoy: the priority-0 backend refuses connections, so the request
// must move to the priority-1 backend — through its hop — and arrive there
// over TLS with that backend's Host and injected key, and without the
// workload's own key.
func TestRealEnvoyFailoverWithCredentials(t *testing.T) {
	envoy := os.Getenv("ENVOY_BIN")
	if envoy == "" {
		t.Skip("set ENVOY_BIN to an Envoy 1.40 binary to run this test")
	}
	type seen struct{ host, key, auth string }
	var got atomic.Value
	provider := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Store(seen{host: r.Host, key: r.Header.Get("x-api-key"), auth: r.Header.Get("authorization")})
		_, _ = io.WriteString(w, "hello from the fail-over provider")
	}))
	defer provider.Close()
	providerPort := provider.Listener.Addr().(*net.TCPAddr).Port
	deadPort := freePort(t) // nothing listens: connections are refused
	listenerPort := freePort(t)

	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "secrets"), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "secrets", "provider.key"), []byte("sk-FAKE-envoy-failover\n"), 0o600))
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: provider.Certificate().Raw})
	require.NoError(t, os.WriteFile(filepath.Join(dir, "secrets", "provider-ca.pem"), certPEM, 0o644))
	writePolicies(t, dir, map[string]string{"policies.yaml": fmt.Sprintf(`apiVersion: tollgate.dev/v1alpha1
kind: Gateway
metadata: {name: egress}
spec:
  listeners: [{name: http, address: 127.0.0.1, port: %d, protocol: HTTP}]
---
apiVersion: tollgate.dev/v1alpha1
kind: Backend
metadata: {name: local}
spec: {hostname: model.internal, port: %d, addresses: [{ip: 127.0.0.1}]}
---
apiVersion: tollgate.dev/v1alpha1
kind: Backend
metadata: {name: provider}
spec: {hostname: example.com, port: %d, tls: true, protocol: HTTP/1.1, addresses: [{ip: 127.0.0.1}]}
---
apiVersion: tollgate.dev/v1alpha1
kind: BackendTLSPolicy
metadata: {name: provider}
spec:
  targetRefs: [{kind: Backend, name: provider}]
  caCertificates: {file: secrets/provider-ca.pem}
---
apiVersion: tollgate.dev/v1alpha1
kind: CredentialInjector
metadata: {name: provider}
spec:
  targetRefs: [{kind: Backend, name: provider}]
  apiKey: {header: x-api-key, secret: {file: secrets/provider.key}}
---
apiVersion: tollgate.dev/v1alpha1
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{name: egress}]
  rules:
  - backendRefs:
    - {name: local}
    - {name: provider, priority: 1}
`, listenerPort, deadPort, providerPort)})
	inst, _ := startTollgateWith(t, dir, allowPlaintextSecrets)
	runEnvoy(t, envoy, inst, dir, listenerPort)

	require.Eventually(t, func() bool {
		req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/v1/chat/completions", listenerPort), nil)
		req.Header.Set("Authorization", "Bearer workload-own-key")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 100*time.Millisecond)
	s := got.Load().(seen)
	require.Equal(t, "example.com", s.host)
	require.Equal(t, "sk-FAKE-envoy-failover", s.key)
	require.Empty(t, s.auth, "the workload's own key must not reach the provider")
	require.Nil(t, inst.XDS.Status().LastNack)
}

// TestRealEnvoyHopRefusalsFailOver checks, on a real Envoy, the two sides
// of the refusal mark: a credentialed provider that refuses the connection
// is a refusal of Envoy's own (the hop's 503 carries the mark), which the
// route retries on the next backend and strips from the response; a
// provider's own 503 carries no mark and is not retried, since the
// provider may have run the request.
func TestRealEnvoyHopRefusalsFailOver(t *testing.T) {
	envoy := os.Getenv("ENVOY_BIN")
	if envoy == "" {
		t.Skip("set ENVOY_BIN to an Envoy 1.37–1.40 binary to run this test")
	}
	var localHits atomic.Int64
	local := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		localHits.Add(1)
		_, _ = io.WriteString(w, "hello from the local model server")
	}))
	defer local.Close()
	busy := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A provider's own 503, with a forged mark that must not count.
		w.Header().Set("x-tollgate-envoy-refusal", "1")
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer busy.Close()
	localPort := local.Listener.Addr().(*net.TCPAddr).Port
	busyPort := busy.Listener.Addr().(*net.TCPAddr).Port
	deadPort := freePort(t) // nothing listens: connections are refused
	listenerPort := freePort(t)

	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "secrets"), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "secrets", "provider.key"), []byte("sk-FAKE-envoy-refusal\n"), 0o600))
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: busy.Certificate().Raw})
	require.NoError(t, os.WriteFile(filepath.Join(dir, "secrets", "provider-ca.pem"), certPEM, 0o644))
	policies := func(first string) map[string]string {
		return map[string]string{"policies.yaml": fmt.Sprintf(`apiVersion: tollgate.dev/v1alpha1
kind: Gateway
metadata: {name: egress}
spec:
  listeners: [{name: http, address: 127.0.0.1, port: %d, protocol: HTTP}]
---
apiVersion: tollgate.dev/v1alpha1
kind: Backend
metadata: {name: local}
spec: {hostname: model.internal, port: %d, addresses: [{ip: 127.0.0.1}]}
---
apiVersion: tollgate.dev/v1alpha1
kind: Backend
metadata: {name: dead}
spec: {hostname: example.com, port: %d, tls: true, protocol: HTTP/1.1, addresses: [{ip: 127.0.0.1}]}
---
apiVersion: tollgate.dev/v1alpha1
kind: Backend
metadata: {name: busy}
spec: {hostname: example.com, port: %d, tls: true, protocol: HTTP/1.1, addresses: [{ip: 127.0.0.1}]}
---
apiVersion: tollgate.dev/v1alpha1
kind: BackendTLSPolicy
metadata: {name: providers}
spec:
  targetRefs: [{kind: Backend, name: dead}, {kind: Backend, name: busy}]
  caCertificates: {file: secrets/provider-ca.pem}
---
apiVersion: tollgate.dev/v1alpha1
kind: CredentialInjector
metadata: {name: providers}
spec:
  targetRefs: [{kind: Backend, name: dead}, {kind: Backend, name: busy}]
  apiKey: {header: x-api-key, secret: {file: secrets/provider.key}}
---
apiVersion: tollgate.dev/v1alpha1
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{name: egress}]
  rules:
  - backendRefs:
    - {name: %s}
    - {name: local, priority: 1}
`, listenerPort, localPort, deadPort, busyPort, first)}
	}
	writePolicies(t, dir, policies("dead"))
	inst, _ := startTollgateWith(t, dir, allowPlaintextSecrets)
	runEnvoy(t, envoy, inst, dir, listenerPort)
	post := func() (*http.Response, error) {
		req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/v1/chat/completions", listenerPort), nil)
		return http.DefaultClient.Do(req)
	}

	// The refused connection fails over, and the mark never leaves.
	var mark []string
	require.Eventually(t, func() bool {
		resp, err := post()
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		mark = resp.Header.Values("x-tollgate-envoy-refusal")
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 100*time.Millisecond)
	require.Empty(t, mark, "the refusal mark reached the client")
	require.NotZero(t, localHits.Load())

	// A provider's 503 is the provider's answer: not retried elsewhere.
	writePolicies(t, dir, policies("busy"))
	require.Eventually(t, func() bool {
		resp, err := post()
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		return resp.StatusCode == http.StatusServiceUnavailable
	}, 30*time.Second, 100*time.Millisecond)
	before := localHits.Load()
	for i := 0; i < 5; i++ {
		resp, err := post()
		require.NoError(t, err)
		require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "a provider's 503 was retried on another backend")
		require.Empty(t, resp.Header.Values("x-tollgate-envoy-refusal"))
		resp.Body.Close()
	}
	require.Equal(t, before, localHits.Load(), "a provider's 503 was retried on another backend")
	require.Nil(t, inst.XDS.Status().LastNack)
}
