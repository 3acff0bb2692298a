package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/store"
	"github.com/tollgate-dev/tollgate/xds"
	"github.com/tollgate-dev/tollgate/xds/envoysim"
)

const policyMinRefreshRate = `apiVersion: tollgate.dev/v1alpha1
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
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{name: egress}]
  rules: [{backendRefs: [{name: openai}]}]
---
apiVersion: tollgate.dev/v1alpha1
kind: DNSPolicy
metadata: {name: dns-floor}
spec:
  targetRefs: [{kind: Gateway, name: egress}]
  respectTTL: true
  minRefreshRate: 5s
`

func connectEnvoy(t *testing.T, inst *instance, node string, describe func(*corev3.Node)) *envoysim.Client {
	t.Helper()
	c, err := envoysim.New(t.Context(), inst.XDSAddr.String(), envoysim.Options{
		NodeID: node, Gateway: "egress", Node: describe,
		DialOptions: []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())},
		Logf:        t.Logf,
	})
	require.NoError(t, err)
	t.Cleanup(c.Close)
	_, err = c.WaitFor(waitCtx(t), complete("backend/default/openai"))
	require.NoError(t, err)
	return c
}

func getJSON(t *testing.T, inst *instance, path string, v any) {
	t.Helper()
	resp, err := http.Get("http://" + inst.AdminAddr.String() + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.NoError(t, json.NewDecoder(resp.Body).Decode(v))
}

// A DNSPolicy with minRefreshRate makes the gateway need Envoy 1.39: an
// Envoy 1.38 of the gateway is reported on /status/nodes with what to do,
// logged once (not again on the next push), and named in a condition on
// the Gateway on /status/policies; so is an Envoy older than 1.37. An
// Envoy 1.40 and one that gives no version are not.
func TestServeReportsEnvoysTooOld(t *testing.T) {
	dir := t.TempDir()
	writePolicies(t, dir, map[string]string{"p.yaml": policyMinRefreshRate})
	inst, logs := startTollgate(t, dir)

	connectEnvoy(t, inst, "vm-138", envoysim.EnvoyBuild(1, 38, 2))
	connectEnvoy(t, inst, "vm-136", envoysim.BuildVersionMetadata("1.36.4"))
	connectEnvoy(t, inst, "vm-140", envoysim.EnvoyBuild(1, 40, 0))
	connectEnvoy(t, inst, "vm-unknown", nil)

	var status xds.Status
	getJSON(t, inst, "/status/nodes", &status)
	nodes := map[string]xds.NodeStatus{}
	for _, n := range status.Nodes {
		nodes[n.NodeID] = n
	}
	require.Len(t, nodes, 4)
	require.Equal(t, "1.38.2", nodes["vm-138"].EnvoyVersion)
	require.Equal(t, []xds.NodeProblem{{
		Feature: "DNSPolicy minRefreshRate (DnsCluster.dns_min_refresh_rate)",
		Needs:   "1.39",
		Object:  "DNSPolicy/dns-floor",
		Remedy:  "upgrade this Envoy to 1.39 or remove minRefreshRate from DNSPolicy/dns-floor",
	}}, nodes["vm-138"].Problems)
	require.Equal(t, "1.36.4", nodes["vm-136"].EnvoyVersion)
	require.Equal(t, []xds.NodeProblem{{
		Feature: "tollgate supports Envoy 1.37 to 1.40",
		Needs:   "1.37",
		Remedy:  "upgrade this Envoy to 1.37 or newer",
	}}, nodes["vm-136"].Problems)
	require.Equal(t, "1.40.0", nodes["vm-140"].EnvoyVersion)
	require.Empty(t, nodes["vm-140"].Problems)
	require.Equal(t, xds.VersionUnknown, nodes["vm-unknown"].EnvoyVersion)
	require.Empty(t, nodes["vm-unknown"].Problems)

	tooOld := func(node string) int {
		return strings.Count(logs.String(), `msg="envoy too old for its gateway's configuration" node=`+node+" ")
	}
	require.Eventually(t, func() bool { return tooOld("vm-138") == 1 && tooOld("vm-136") == 1 }, 10*time.Second, 10*time.Millisecond)
	require.Contains(t, logs.String(), `node=vm-138 gateway=egress envoy_version=1.38.2 feature="DNSPolicy minRefreshRate (DnsCluster.dns_min_refresh_rate)" needs=1.39 remedy="upgrade this Envoy to 1.39 or remove minRefreshRate from DNSPolicy/dns-floor"`)
	require.Zero(t, tooOld("vm-140"))
	require.Zero(t, tooOld("vm-unknown"))

	var policies store.PolicyStatus
	getJSON(t, inst, "/status/policies", &policies)
	var cond *model.Condition
	for i, c := range policies.Conditions {
		if c.Type == xds.ConditionEnvoyVersionSupported {
			require.Nil(t, cond, "one condition per gateway")
			cond = &policies.Conditions[i]
		}
	}
	require.NotNil(t, cond, "%+v", policies.Conditions)
	require.Equal(t, "Gateway/egress", cond.Object)
	require.False(t, cond.Status)
	require.Equal(t, xds.ReasonEnvoyTooOld, cond.Reason)
	require.Contains(t, cond.Message, "node vm-138 runs Envoy 1.38.2: DNSPolicy minRefreshRate (DnsCluster.dns_min_refresh_rate) needs 1.39 (DNSPolicy/dns-floor)")
	require.Contains(t, cond.Message, "node vm-136 runs Envoy 1.36.4: tollgate supports Envoy 1.37 to 1.40 needs 1.37")
	require.NotContains(t, cond.Message, "vm-140")
	require.NotContains(t, cond.Message, "vm-unknown")

	// The next publication (another object) logs nothing new: once the
	// store serves it, Publish and its version check have run.
	writePolicies(t, dir, map[string]string{"more.yaml": "apiVersion: tollgate.dev/v1alpha1\nkind: Backend\nmetadata: {name: anthropic}\nspec: {provider: anthropic}\n"})
	require.Eventually(t, func() bool { return inst.Store.Status().Objects[model.KindBackend] == 2 }, 10*time.Second, 10*time.Millisecond)
	require.Equal(t, 1, tooOld("vm-138"))
	require.Equal(t, 1, tooOld("vm-136"))

	// Without minRefreshRate the 1.38 Envoy is fine; the 1.36 one is not.
	writePolicies(t, dir, map[string]string{"p.yaml": strings.Replace(policyMinRefreshRate, "  minRefreshRate: 5s\n", "", 1)})
	require.Eventually(t, func() bool {
		status = xds.Status{}
		getJSON(t, inst, "/status/nodes", &status)
		for _, n := range status.Nodes {
			if n.NodeID == "vm-138" {
				return len(n.Problems) == 0
			}
		}
		return false
	}, 10*time.Second, 10*time.Millisecond)
	policies = store.PolicyStatus{}
	getJSON(t, inst, "/status/policies", &policies)
	msgs := ""
	for _, c := range policies.Conditions {
		if c.Type == xds.ConditionEnvoyVersionSupported {
			msgs += c.Message
		}
	}
	require.Contains(t, msgs, "vm-136")
	require.NotContains(t, msgs, "vm-138")
}
