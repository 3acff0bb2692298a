package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	bootstrap "github.com/tollgate-dev/tollgate/envoy-bootstrap"
	"github.com/tollgate-dev/tollgate/xds/xdstest"
)

// TestRealEnvoyMTLS runs a real Envoy (ENVOY_BIN=/path/to/envoy) against
// tollgate over mutual TLS: the bootstrap's TLS context must pass Envoy's
// validation and connect, tollgate must see the Envoy's SPIFFE ID, and an
// Envoy asking for a gateway its identity is not bound to must be refused.
func TestRealEnvoyMTLS(t *testing.T) {
	envoy := os.Getenv("ENVOY_BIN")
	if envoy == "" {
		t.Skip("set ENVOY_BIN to an Envoy 1.40 binary to run this test")
	}
	p := newPKI(t)
	dir := t.TempDir()
	writePolicies(t, dir, map[string]string{"gateways.yaml": policyGateways, "backends.yaml": policyBackends, "routes.yaml": policyRoutes("60s")})
	inst, logs := startWith(t, p.mtlsConfig(dir))

	client := p.ca.Client(t, []string{egressSPIFFE}, nil)
	certDir := t.TempDir()
	cert := xdstest.WriteFile(t, certDir, "envoy.crt", client.CertPEM)
	key := xdstest.WriteFile(t, certDir, "envoy.key", client.KeyPEM)
	ca := xdstest.WriteFile(t, certDir, "ca.crt", p.ca.PEM)

	run := func(node, gateway string) {
		t.Helper()
		port := freePort(t)
		bs, err := bootstrap.Render(bootstrap.Options{Gateway: gateway, NodeID: node, XDSAddr: inst.XDSAddr.String(), AdminPort: uint32(port),
			XDSCAFile: ca, XDSCertFile: cert, XDSKeyFile: key})
		require.NoError(t, err)
		bsFile := filepath.Join(certDir, node+".yaml")
		require.NoError(t, os.WriteFile(bsFile, bs, 0o644))
		out, err := exec.Command(envoy, "--mode", "validate", "-c", bsFile).CombinedOutput()
		require.NoError(t, err, "envoy rejected the bootstrap:\n%s", out)

		ctx, cancel := context.WithCancel(context.Background())
		cmd := exec.CommandContext(ctx, envoy, "-c", bsFile, "--base-id", fmt.Sprint(port), "--log-level", "warn")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		require.NoError(t, cmd.Start())
		t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	}

	run("envoy-egress", "egress")
	require.Eventually(t, func() bool {
		for _, n := range inst.XDS.Status().Nodes {
			if n.NodeID == "envoy-egress" && n.Acked["listeners"] != "" && n.Identity == egressSPIFFE {
				return true
			}
		}
		return false
	}, 30*time.Second, 50*time.Millisecond, "Envoy did not connect over mutual TLS and ACK")

	run("envoy-wrong", "other")
	require.Eventually(t, func() bool {
		return strings.Contains(logs.String(), `xDS stream refused`) && strings.Contains(logs.String(), `node=envoy-wrong gateway=other`)
	}, 30*time.Second, 50*time.Millisecond, "the Envoy of the wrong gateway was not refused")
}
