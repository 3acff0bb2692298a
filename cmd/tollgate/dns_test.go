package main

import (
	"fmt"
	"net"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/stretchr/testify/require"

	"github.com/tollgate-dev/tollgate/xds/envoysim"
)

// serve wires the reverse-DNS verifier: a backend whose resolver does not
// answer is verified (and fails) before anything is served, instead of
// being reported as never checked; Envoy gets no cluster for it, and the
// rule that split traffic with it sends everything to the other backend.
func TestServeVerifiesReverseDNS(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := pc.LocalAddr().String() // nothing answers there once closed
	pc.Close()
	dir := t.TempDir()
	writePolicies(t, dir, map[string]string{"p.yaml": fmt.Sprintf(`apiVersion: tollgate.dev/v1alpha1
kind: Gateway
metadata: {name: egress}
spec:
  listeners: [{name: http, port: 10080, protocol: HTTP}]
---
apiVersion: tollgate.dev/v1alpha1
kind: Backend
metadata: {name: openai}
spec: {provider: openai}
---
apiVersion: tollgate.dev/v1alpha1
kind: Backend
metadata: {name: models}
spec: {hostname: models.example.test}
---
apiVersion: tollgate.dev/v1alpha1
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{name: egress}]
  rules: [{backendRefs: [{name: openai}, {name: models}]}]
---
apiVersion: tollgate.dev/v1alpha1
kind: DNSPolicy
metadata: {name: models}
spec:
  targetRefs: [{kind: Backend, name: models}]
  resolvers: [%q]
  reverseDNS: {allowedSuffixes: [.example.test]}
`, dead)})
	inst, logs := startTollgate(t, dir)

	conds := inst.Store.Status().Conditions
	require.Len(t, conds, 1)
	require.Equal(t, "ReverseDNSFailed", conds[0].Reason)
	require.Contains(t, conds[0].Message, "cannot resolve models.example.test")
	require.Contains(t, logs.String(), "reverse DNS: no address verified")

	egress := connect(t, inst, "vm-1", "egress", false, nil)
	st, err := egress.WaitFor(waitCtx(t), complete("backend/default/openai"))
	require.NoError(t, err)
	require.Equal(t, []string{"backend/default/openai"}, st.Names(resourcev3.ClusterType))
	rc, _ := envoysim.Get[*routev3.RouteConfiguration](st, "route/http")
	require.Equal(t, "backend/default/openai", rc.GetVirtualHosts()[0].GetRoutes()[0].GetRoute().GetCluster())
}

// validate resolves no names: it passes offline and notes the backend whose
// reverse DNS it did not check.
func TestValidateNotesUnverifiedReverseDNS(t *testing.T) {
	code, out, errOut := cli(t, "validate", "../../examples/07-controlled-dns")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "examples/07-controlled-dns: ok, 8 objects")
	require.Contains(t, out, "note: Backend/models: Programmed=False ReverseDNSNotVerified: DNSPolicy/models-rdns asks for reverse-DNS verification of vllm.models.corp.example")
}
