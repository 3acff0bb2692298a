package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/stretchr/testify/require"

	"github.com/tollgate-dev/tollgate/xds/envoysim"
)

// A dedicated inference cluster: the parent gateway "inference" holds the
// credential and the backends; the child "workloads" (Parent mode) in a
// workload cluster forwards to it, on the parent's "from-children" port.
const parentGateways = `apiVersion: tollgate.dev/v1alpha1
kind: Gateway
metadata: {name: inference}
spec:
  addresses: [{ip: 127.0.0.1}]
  listeners:
  - {name: from-children, port: 10443, protocol: HTTP}
  - {name: local, port: 10080, protocol: HTTP}
---
apiVersion: tollgate.dev/v1alpha1
kind: Gateway
metadata: {name: workloads, namespace: team-a}
spec:
  mode: Parent
  parentRef: {name: inference, namespace: default, sectionName: from-children}
  listeners: [{name: http, port: 10080, protocol: HTTP}]
---
apiVersion: tollgate.dev/v1alpha1
kind: Backend
metadata: {name: openai}
spec: {provider: openai}
---
apiVersion: tollgate.dev/v1alpha1
kind: Backend
metadata: {name: vllm}
spec:
  hostname: vllm.inference.internal
  port: 8000
  addresses: [{ip: 127.0.0.1}]
---
apiVersion: tollgate.dev/v1alpha1
kind: CredentialInjector
metadata: {name: openai-key}
spec:
  targetRefs: [{kind: Backend, name: openai}]
  apiKey: {secret: {file: secrets/openai.key}}
`

// parentRoutes attaches one route to the child and to the parent's
// listener for children; parentRefs of the route are the first argument.
func parentRoutes(parentRefs, backend, timeout string) string {
	return fmt.Sprintf(`apiVersion: tollgate.dev/v1alpha1
kind: HTTPRoute
metadata: {name: chat, namespace: team-a}
spec:
  parentRefs: %s
  hostnames: [llm.corp.example]
  rules:
  - backendRefs: [{name: %s, namespace: default}]
    timeouts: {request: %s}
`, parentRefs, backend, timeout)
}

const bothParents = "[{name: workloads}, {name: inference, namespace: default, sectionName: from-children}]"

// onlyRoute returns the single Envoy route of a route configuration.
func onlyRoute(s envoysim.State, name string) *routev3.Route {
	rc, _ := envoysim.Get[*routev3.RouteConfiguration](s, name)
	for _, vh := range rc.GetVirtualHosts() {
		for _, r := range vh.GetRoutes() {
			return r
		}
	}
	return nil
}

func TestParentModeEndToEnd(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "secrets"), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "secrets", "openai.key"), []byte("sk-FAKE-parent-mode\n"), 0o600))
	writePolicies(t, dir, map[string]string{"gateways.yaml": parentGateways, "routes.yaml": parentRoutes(bothParents, "openai", "60s")})
	inst, logs := startTollgateWith(t, dir, allowPlaintextSecrets)

	// One Envoy of each gateway, one on each ADS flavour.
	parent := connect(t, inst, "inference-1", "inference", false, nil)
	child := connect(t, inst, "workloads-1", "team-a/workloads", true, nil)

	pst, err := parent.WaitFor(waitCtx(t), func(s envoysim.State) bool {
		_, ok := envoysim.Get[*routev3.RouteConfiguration](s, "route/from-children")
		return ok && len(s.Names(resourcev3.ListenerType)) == 2 && secretValue(s, "credential/default/openai") != "" &&
			strings.Join(s.Names(resourcev3.ClusterType), ",") == "backend/default/openai"
	})
	require.NoError(t, err)
	cst, err := child.WaitFor(waitCtx(t), complete("parent/default/inference"))
	require.NoError(t, err)

	// The child's cluster reaches the parent's address on the port of the
	// parent listener it names.
	lis, _ := envoysim.Get[*listenerv3.Listener](pst, "listener/from-children")
	port := lis.GetAddress().GetSocketAddress().GetPortValue()
	require.Equal(t, uint32(10443), port)
	cla, _ := envoysim.Get[*endpointv3.ClusterLoadAssignment](cst, "parent/default/inference")
	addr := cla.GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
	require.Equal(t, "127.0.0.1", addr.GetAddress())
	require.Equal(t, port, addr.GetPortValue())

	// The child forwards with the route's name, keeps the Host and the
	// timeout, and holds no credential; the parent has the backend.
	cr := onlyRoute(cst, "route/http")
	require.Equal(t, "parent/default/inference", cr.GetRoute().GetCluster())
	require.Nil(t, cr.GetRoute().GetHostRewriteSpecifier())
	require.Equal(t, "team-a/chat", cr.GetRequestHeadersToAdd()[0].GetHeader().GetValue())
	require.Equal(t, "connect-failure,refused-stream,reset-before-request", cr.GetRoute().GetRetryPolicy().GetRetryOn())
	pr := onlyRoute(pst, "route/from-children")
	require.Equal(t, "backend/default/openai", pr.GetRoute().GetCluster())
	require.Equal(t, pr.GetRoute().GetTimeout().AsDuration(), cr.GetRoute().GetTimeout().AsDuration())
	require.Empty(t, cst.Names(resourcev3.SecretType))
	for _, typ := range []string{resourcev3.ListenerType, resourcev3.RouteType, resourcev3.ClusterType, resourcev3.EndpointType} {
		for _, name := range cst.Names(typ) {
			require.NotContains(t, cst.Resources[typ][name].(fmt.Stringer).String(), "credential", "%s %s of the child", typ, name)
		}
	}

	// A change of the route's backend is the parent's business alone: the
	// child's configuration does not change.
	childVersions := inst.XDS.Versions("team-a/workloads")
	writePolicies(t, dir, map[string]string{"routes.yaml": parentRoutes(bothParents, "vllm", "60s")})
	_, err = parent.WaitFor(waitCtx(t), func(s envoysim.State) bool {
		return onlyRoute(s, "route/from-children").GetRoute().GetCluster() == "backend/default/vllm"
	})
	require.NoError(t, err)
	require.Equal(t, childVersions, inst.XDS.Versions("team-a/workloads"))

	// A change of the route itself reaches both.
	writePolicies(t, dir, map[string]string{"routes.yaml": parentRoutes(bothParents, "vllm", "15m")})
	for _, env := range []*envoysim.Client{parent, child} {
		_, err = env.WaitFor(waitCtx(t), func(s envoysim.State) bool {
			for _, name := range s.Names(resourcev3.RouteType) {
				if r := onlyRoute(s, name); r != nil && r.GetRoute().GetTimeout().AsDuration() == 15*time.Minute {
					return true
				}
			}
			return false
		})
		require.NoError(t, err)
	}

	// Detaching the route from the parent would make the child forward
	// requests the parent 404s: refused, and both keep what they have.
	before := len(child.History())
	writePolicies(t, dir, map[string]string{"routes.yaml": parentRoutes("[{name: workloads}]", "vllm", "15m")})
	require.Eventually(t, func() bool {
		return strings.Contains(logs.String(), `Gateway/team-a/workloads forwards this route to Gateway/inference (listener \"from-children\"), which does not serve it`)
	}, 10*time.Second, 10*time.Millisecond)
	require.False(t, inst.Store.Status().Applied)
	require.Len(t, child.History(), before)
	// The refused change never arrives later either: a marker change of
	// the route's timeout is the next thing both Envoys get.
	parentBefore := len(parent.History())
	writePolicies(t, dir, map[string]string{"routes.yaml": parentRoutes(bothParents, "vllm", "16m")})
	for _, m := range []struct {
		env    *envoysim.Client
		before int
	}{{parent, parentBefore}, {child, before}} {
		st, err := m.env.WaitFor(waitCtx(t), func(s envoysim.State) bool {
			for _, name := range s.Names(resourcev3.RouteType) {
				if r := onlyRoute(s, name); r != nil && r.GetRoute().GetTimeout().AsDuration() == 16*time.Minute {
					return true
				}
			}
			return false
		})
		require.NoError(t, err)
		onlyTheMarker(t, m.env, m.before, st, resourcev3.RouteType)
	}

	for _, env := range []*envoysim.Client{parent, child} {
		for _, r := range env.History() {
			require.True(t, r.Acked, "%s", r)
		}
	}
	require.NotContains(t, logs.String(), "sk-FAKE-parent-mode")
}
