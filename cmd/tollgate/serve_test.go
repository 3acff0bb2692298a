package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/xds"
	"github.com/tollgate-dev/tollgate/xds/envoysim"
)

// syncBuffer collects log output from several goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

const policyGateways = `apiVersion: tollgate.dev/v1alpha1
kind: Gateway
metadata: {name: egress}
spec:
  listeners: [{name: http, port: 10080, protocol: HTTP}]
---
apiVersion: tollgate.dev/v1alpha1
kind: Gateway
metadata: {name: other}
spec:
  listeners: [{name: http, port: 10090, protocol: HTTP}]
`

const policyBackends = `apiVersion: tollgate.dev/v1alpha1
kind: Backend
metadata: {name: openai}
spec: {provider: openai}
---
apiVersion: tollgate.dev/v1alpha1
kind: Backend
metadata: {name: vllm}
spec:
  hostname: vllm.internal
  port: 8000
  addresses: [{ip: 10.0.0.7}]
---
apiVersion: tollgate.dev/v1alpha1
kind: Backend
metadata: {name: anthropic}
spec: {provider: anthropic, schema: openai} # its OpenAI-compatible endpoint: chat may split OpenAI requests to it
`

func policyRoutes(timeout string) string {
	return fmt.Sprintf(`apiVersion: tollgate.dev/v1alpha1
kind: HTTPRoute
metadata: {name: chat}
spec:
  parentRefs: [{name: egress}]
  hostnames: [api.openai.com]
  rules:
  - backendRefs: [{name: openai, weight: 9}, {name: vllm}]
    timeouts: {request: %s}
---
apiVersion: tollgate.dev/v1alpha1
kind: HTTPRoute
metadata: {name: claude}
spec:
  parentRefs: [{name: other}]
  rules:
  - backendRefs: [{name: anthropic}]
`, timeout)
}

func writePolicies(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		path := filepath.Join(dir, name)
		tmp := filepath.Join(dir, "."+name+".tmp")
		require.NoError(t, os.WriteFile(tmp, []byte(content), 0o644))
		require.NoError(t, os.Rename(tmp, path)) // atomic, as editors save
	}
}

// startTollgate runs the real serve wiring on loopback ports chosen by the
// kernel and stops it when the test ends.
func startTollgate(t *testing.T, dir string) (*instance, *syncBuffer) {
	t.Helper()
	return startTollgateWith(t, dir, nil)
}

// startTollgateWith is startTollgate with changes to the serve settings.
func startTollgateWith(t *testing.T, dir string, change func(*serveConfig)) (*instance, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("tollgate logs:\n%s", logs.String())
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	cfg := serveConfig{
		Policies: dir, XDSAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
		SystemCABundle: "/etc/ssl/certs/ca-certificates.crt",
		Debounce:       10 * time.Millisecond, LogLevel: "info", LogFormat: "text",
	}
	if change != nil {
		change(&cfg)
	}
	inst, err := start(ctx, cfg, logs)
	require.NoError(t, err)
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			require.NoError(t, inst.wait())
		}
	}
	t.Cleanup(stop)
	inst.stop = stop
	return inst, logs
}

func connect(t *testing.T, inst *instance, node, gateway string, delta bool, reject func(string, proto.Message) error) *envoysim.Client {
	t.Helper()
	c, err := envoysim.New(context.Background(), inst.XDSAddr.String(), envoysim.Options{
		NodeID: node, Gateway: gateway, Delta: delta, Reject: reject,
		DialOptions: []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())},
		Logf:        t.Logf,
	})
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c
}

func waitCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// complete reports whether the client holds a full configuration: its
// listener, its route configuration and every cluster with, for EDS
// clusters, the endpoints.
func complete(clusters ...string) func(envoysim.State) bool {
	return func(s envoysim.State) bool {
		if len(s.Names(resourcev3.ListenerType)) != 1 || len(s.Names(resourcev3.RouteType)) != 1 {
			return false
		}
		// Backend clusters; fail-over aggregates over them come along.
		var got []string
		for _, name := range s.Names(resourcev3.ClusterType) {
			if !strings.HasPrefix(name, "failover/") {
				got = append(got, name)
			}
		}
		if strings.Join(got, ",") != strings.Join(clusters, ",") {
			return false
		}
		for _, name := range got {
			c, _ := envoysim.Get[*clusterv3.Cluster](s, name)
			if c.GetType() == clusterv3.Cluster_EDS {
				if _, ok := envoysim.Get[*endpointv3.ClusterLoadAssignment](s, name); !ok {
					return false
				}
			}
		}
		return true
	}
}

// onlyTheMarker asserts that nothing reached env between its response
// number before and the marker change it now holds in st: every response
// since is of a type the marker changes, with the version st holds. A
// refused change checked with "nothing was pushed" right after its log
// line would pass if its push came late; a marker written after the
// refusal and delivered first proves it never came.
//
// The marker's publication may still be arriving when st was taken (a
// listener before its route configuration), so each response is compared
// with the client's state read after the history: the client records a
// response and applies it under one lock, so that state holds every
// response of the history, the marker's included.
func onlyTheMarker(t *testing.T, env *envoysim.Client, before int, st envoysim.State, markerTypes ...string) {
	t.Helper()
	since := env.History()[before:]
	cur := env.State()
	require.NotEmpty(t, since, "the marker did not arrive")
	for typeURL, v := range st.Versions {
		if v != "" && slices.Contains(markerTypes, typeURL) {
			require.Equal(t, v, cur.Versions[typeURL], "the marker's %s was replaced by a later response", typeURL)
		}
	}
	for _, r := range since {
		require.Contains(t, markerTypes, r.TypeURL, "a response the marker does not explain: %s", r)
		require.Equal(t, cur.Versions[r.TypeURL], r.Version, "a response before the marker: %s", r)
	}
}

func routeTimeout(s envoysim.State) time.Duration {
	rc, _ := envoysim.Get[*routev3.RouteConfiguration](s, "route/http")
	return rc.GetVirtualHosts()[0].GetRoutes()[0].GetRoute().GetTimeout().AsDuration()
}

func TestServeEndToEnd(t *testing.T) {
	for _, delta := range []bool{false, true} {
		t.Run(map[bool]string{false: "sotw", true: "delta"}[delta], func(t *testing.T) {
			dir := t.TempDir()
			writePolicies(t, dir, map[string]string{"gateways.yaml": policyGateways, "backends.yaml": policyBackends, "routes.yaml": policyRoutes("60s")})
			inst, logs := startTollgate(t, dir)

			egress := connect(t, inst, "vm-1", "egress", delta, nil)
			st, err := egress.WaitFor(waitCtx(t), complete("backend/default/openai", "backend/default/vllm"))
			require.NoError(t, err)
			require.Equal(t, 60*time.Second, routeTimeout(st))
			cla, _ := envoysim.Get[*endpointv3.ClusterLoadAssignment](st, "backend/default/vllm")
			require.Equal(t, "10.0.0.7", cla.GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress().GetAddress())

			// An Envoy of the other gateway gets only that gateway's config.
			other := connect(t, inst, "vm-9", "other", delta, nil)
			ost, err := other.WaitFor(waitCtx(t), complete("backend/default/anthropic"))
			require.NoError(t, err)
			require.NotContains(t, strings.Join(ost.Names(resourcev3.ClusterType), ","), "openai")

			// Editing a file reaches the Envoy.
			writePolicies(t, dir, map[string]string{"routes.yaml": policyRoutes("120s")})
			st, err = egress.WaitFor(waitCtx(t), func(s envoysim.State) bool { return routeTimeout(s) == 120*time.Second })
			require.NoError(t, err)
			good := st.Versions[resourcev3.RouteType]

			// An invalid file is logged with its violation and nothing new
			// is sent.
			before := len(egress.History())
			extra := "apiVersion: tollgate.dev/v1alpha1\nkind: HTTPRoute\nmetadata: {name: internal}\n" +
				"spec:\n  parentRefs: [{name: egress}]\n  hostnames: [llm.internal]\n  rules:\n  - backendRefs: [{name: vllm}]\n"
			writePolicies(t, dir, map[string]string{"extra.yaml": extra + "    retries: 3\n"})
			require.Eventually(t, func() bool {
				return strings.Contains(logs.String(), `extra.yaml:9: HTTPRoute/internal: spec.rules[0].retries: unknown field \"retries\"`)
			}, 10*time.Second, 10*time.Millisecond)
			require.False(t, inst.Store.Status().Applied)

			// Fixing it delivers the update; the broken state never arrived.
			writePolicies(t, dir, map[string]string{"extra.yaml": extra})
			st, err = egress.WaitFor(waitCtx(t), func(s envoysim.State) bool {
				rc, _ := envoysim.Get[*routev3.RouteConfiguration](s, "route/http")
				return len(rc.GetVirtualHosts()) == 2
			})
			require.NoError(t, err)
			require.NotEqual(t, good, st.Versions[resourcev3.RouteType])
			for _, r := range egress.History()[before:] {
				require.True(t, r.Acked, "every response after the broken edit is the fixed config: %s", r)
			}
			onlyTheMarker(t, egress, before, st, resourcev3.RouteType)
			require.True(t, inst.Store.Status().Applied)
		})
	}
}

func TestServeSharedAndStableVersions(t *testing.T) {
	dir := t.TempDir()
	writePolicies(t, dir, map[string]string{"gateways.yaml": policyGateways, "backends.yaml": policyBackends, "routes.yaml": policyRoutes("60s")})
	inst, _ := startTollgate(t, dir)

	a := connect(t, inst, "vm-1", "egress", false, nil)
	b := connect(t, inst, "vm-2", "egress", true, nil)
	want := complete("backend/default/openai", "backend/default/vllm")
	sa, err := a.WaitFor(waitCtx(t), want)
	require.NoError(t, err)
	sb, err := b.WaitFor(waitCtx(t), want)
	require.NoError(t, err)
	for _, typ := range []string{resourcev3.ListenerType, resourcev3.RouteType, resourcev3.ClusterType, resourcev3.EndpointType} {
		require.Equal(t, sa.Names(typ), sb.Names(typ), typ)
		for _, name := range sa.Names(typ) {
			require.True(t, proto.Equal(sa.Resources[typ][name], sb.Resources[typ][name]), "%s %s differs between two Envoys of one gateway", typ, name)
		}
	}
	require.Equal(t, sa.Versions[resourcev3.ClusterType], inst.XDS.Versions("egress")["clusters"])
	versions := inst.XDS.Versions("egress")

	// A restarted tollgate (or a second replica) on the same files serves
	// the same versions.
	inst.stop()
	again, _ := startTollgate(t, dir)
	require.Equal(t, versions, again.XDS.Versions("egress"))
	c := connect(t, again, "vm-1", "egress", false, nil)
	sc, err := c.WaitFor(waitCtx(t), want)
	require.NoError(t, err)
	require.Equal(t, sa.Versions, sc.Versions)
}

func TestServeNackIsRecordedAndNotResent(t *testing.T) {
	for _, delta := range []bool{false, true} {
		t.Run(map[bool]string{false: "sotw", true: "delta"}[delta], func(t *testing.T) {
			dir := t.TempDir()
			writePolicies(t, dir, map[string]string{"gateways.yaml": policyGateways, "backends.yaml": policyBackends, "routes.yaml": policyRoutes("60s")})
			inst, logs := startTollgate(t, dir)

			// This Envoy refuses any cluster for anthropic, as an Envoy
			// lacking an extension would.
			reject := func(typeURL string, m proto.Message) error {
				if c, ok := m.(*clusterv3.Cluster); ok && strings.Contains(c.GetName(), "anthropic") {
					return fmt.Errorf("cluster %s: unsupported by this Envoy", c.GetName())
				}
				return nil
			}
			env := connect(t, inst, "vm-1", "egress", delta, reject)
			_, err := env.WaitFor(waitCtx(t), complete("backend/default/openai", "backend/default/vllm"))
			require.NoError(t, err)

			// Route some traffic to anthropic: the Envoy NACKs the clusters.
			writePolicies(t, dir, map[string]string{"routes.yaml": strings.Replace(policyRoutes("60s"), "[{name: openai, weight: 9}, {name: vllm}]", "[{name: openai, weight: 9}, {name: vllm}, {name: anthropic}]", 1)})
			nack, err := env.WaitForResponse(waitCtx(t), func(r envoysim.Response) bool { return r.Err != "" })
			require.NoError(t, err)
			require.Equal(t, resourcev3.ClusterType, nack.TypeURL)

			// The NACK is visible on the admin port.
			var status xds.Status
			require.Eventually(t, func() bool {
				resp, err := http.Get("http://" + inst.AdminAddr.String() + "/status/nodes")
				if err != nil {
					return false
				}
				defer resp.Body.Close()
				status = xds.Status{}
				return json.NewDecoder(resp.Body).Decode(&status) == nil && status.LastNack != nil
			}, 10*time.Second, 10*time.Millisecond)
			require.Equal(t, "vm-1", status.LastNack.NodeID)
			require.Equal(t, "egress", status.LastNack.Gateway)
			require.Equal(t, "clusters", status.LastNack.Type)
			require.Equal(t, nack.Version, status.LastNack.Version)
			require.Contains(t, status.LastNack.Message, "unsupported by this Envoy")
			// Mapped back to the resource Envoy named and the objects
			// behind it, shown on those objects until a later version
			// replaces the rejected one.
			require.Contains(t, status.LastNack.Resources, "backend/default/anthropic")
			require.Contains(t, status.LastNack.Objects, "Backend/anthropic")
			programmed := func() *model.Condition {
				resp, err := http.Get("http://" + inst.AdminAddr.String() + "/status/policies")
				require.NoError(t, err)
				defer resp.Body.Close()
				var ps struct {
					Conditions []model.Condition `json:"conditions"`
				}
				require.NoError(t, json.NewDecoder(resp.Body).Decode(&ps))
				for _, c := range ps.Conditions {
					if c.Object == "Backend/anthropic" && c.Type == xds.ConditionProgrammed {
						return &c
					}
				}
				return nil
			}
			c := programmed()
			require.NotNil(t, c, "the NACK shows on the object that caused it")
			require.False(t, c.Status)
			require.Equal(t, xds.ReasonRejected, c.Reason)
			require.Contains(t, c.Message, "node vm-1 (gateway egress) rejected clusters backend/default/anthropic")
			require.Contains(t, c.Message, "unsupported by this Envoy")
			require.Len(t, status.Nodes, 1)
			require.Equal(t, "vm-1", status.Nodes[0].NodeID)
			require.NotEmpty(t, status.Nodes[0].Acked["listeners"])
			// The status is recorded before the log line is written.
			require.Eventually(t, func() bool { return strings.Contains(logs.String(), "envoy rejected configuration (NACK)") }, 10*time.Second, 10*time.Millisecond)

			// No resend storm: the next cluster response the Envoy gets is
			// the next configuration, not the rejected one again.
			nacked := env.Responses(resourcev3.ClusterType)
			seen, after := 0, len(env.History())
			writePolicies(t, dir, map[string]string{"routes.yaml": policyRoutes("90s")})
			next, err := env.WaitForResponse(waitCtx(t), func(r envoysim.Response) bool {
				seen++
				return seen > after && r.TypeURL == resourcev3.ClusterType
			})
			require.NoError(t, err)
			require.True(t, next.Acked, "%s", next)
			require.NotEqual(t, nack.Version, next.Version)
			require.Equal(t, nacked+1, env.Responses(resourcev3.ClusterType), "the rejected clusters were sent again: %v", env.History())
			_, err = env.WaitFor(waitCtx(t), func(s envoysim.State) bool { return routeTimeout(s) == 90*time.Second })
			require.NoError(t, err)
			// The accepted configuration replaced the rejected one: the
			// object is no longer shown as rejected.
			require.Eventually(t, func() bool { return programmed() == nil }, 10*time.Second, 10*time.Millisecond)
		})
	}
}

func TestServeUnknownGateway(t *testing.T) {
	dir := t.TempDir()
	writePolicies(t, dir, map[string]string{"gateways.yaml": policyGateways, "backends.yaml": policyBackends, "routes.yaml": policyRoutes("60s")})
	inst, logs := startTollgate(t, dir)
	c := connect(t, inst, "vm-5", "nope", false, nil)
	require.Eventually(t, func() bool {
		return strings.Contains(logs.String(), "envoy asks for a gateway that no policy defines") && strings.Contains(logs.String(), "gateway=nope")
	}, 10*time.Second, 10*time.Millisecond)
	require.Empty(t, c.History())

	// Once a Gateway of that name exists, the waiting Envoy gets it, and
	// that is the first thing it gets.
	writePolicies(t, dir, map[string]string{"nope.yaml": strings.Replace(strings.SplitN(policyGateways, "---", 2)[0], "name: egress", "name: nope", 1)})
	st, err := c.WaitFor(waitCtx(t), func(s envoysim.State) bool { return len(s.Names(resourcev3.ListenerType)) == 1 })
	require.NoError(t, err)
	onlyTheMarker(t, c, 0, st, resourcev3.ListenerType, resourcev3.RouteType, resourcev3.ClusterType, resourcev3.EndpointType)
}
