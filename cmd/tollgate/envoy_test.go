package main

import (
	"context"
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

	bs, err := bootstrap.Render(bootstrap.Options{Gateway: "egress", NodeID: "envoy-test", XDSAddr: inst.XDSAddr.String(), AdminPort: uint32(freePort(t))})
	require.NoError(t, err)
	bsFile := filepath.Join(dir, "..", "envoy.yaml")
	require.NoError(t, os.WriteFile(bsFile, bs, 0o644))
	out, err := exec.Command(envoy, "--mode", "validate", "-c", bsFile).CombinedOutput()
	require.NoError(t, err, "envoy rejected the bootstrap:\n%s", out)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, envoy, "-c", bsFile, "--base-id", fmt.Sprint(listenerPort), "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	require.NoError(t, cmd.Start())
	defer func() { cancel(); _ = cmd.Wait() }()

	require.Eventually(t, func() bool {
		st := inst.XDS.Status()
		return len(st.Nodes) == 1 && st.Nodes[0].Acked["listeners"] != "" && st.Nodes[0].Acked["routes"] != "" && st.LastNack == nil
	}, 30*time.Second, 50*time.Millisecond, "Envoy did not ACK the configuration")

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
