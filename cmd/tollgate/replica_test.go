package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/stretchr/testify/require"

	"github.com/tollgate-dev/tollgate/store/etcdtest"
	"github.com/tollgate-dev/tollgate/xds/envoysim"
)

// apiPut writes one object through an instance's API.
func apiPut(t *testing.T, inst *instance, token, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("PUT", "http://"+inst.AdminAddr.String()+path, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out)
}

// replicaRoute is an API HTTPRoute to the file backend openai.
func replicaRoute(name, host string) (string, string) {
	return "/apis/tollgate.dev/v1alpha1/namespaces/default/httproutes/" + name,
		"apiVersion: tollgate.dev/v1alpha1\nkind: HTTPRoute\nmetadata: {name: " + name + "}\n" +
			"spec:\n  parentRefs: [{name: egress}]\n  hostnames: [" + host + "]\n  rules: [{backendRefs: [{name: openai}]}]\n"
}

// TestReplicasShareTheAPIStoreOnEtcd runs two tollgate replicas on one
// etcd with the same policy files: writes through either are served by
// both (the other learns them from etcd's watch), both serve identical
// versions, an Envoy moving from one to the other is handed exactly what it
// had, and when one replica stops the other keeps serving and writing.
func TestReplicasShareTheAPIStoreOnEtcd(t *testing.T) {
	etcd := etcdtest.StartServer(t)
	dir := t.TempDir()
	writePolicies(t, dir, map[string]string{"gateways.yaml": policyGateways, "backends.yaml": policyBackends})
	withToken, token := operatorToken(t)
	replica := func() *instance {
		inst, _ := startTollgateWith(t, dir, both(withToken, func(c *serveConfig) {
			c.StateDir, c.Store = "", "etcd://"+etcd.Endpoint+"/tollgate-test/"
		}))
		return inst
	}
	a, b := replica(), replica()

	converged := func(want int) {
		t.Helper()
		require.Eventually(t, func() bool {
			va, vb := a.XDS.Versions("egress"), b.XDS.Versions("egress")
			return len(routeNames(a)) == want && len(routeNames(b)) == want && va["routes"] == vb["routes"] && va["clusters"] == vb["clusters"]
		}, 10*time.Second, 10*time.Millisecond, "replicas did not converge on %d routes: a %v, b %v", want, routeNames(a), routeNames(b))
	}
	p, body := replicaRoute("chat", "chat.llm.internal")
	code, out := apiPut(t, a, token, p, body)
	require.Equal(t, http.StatusCreated, code, out)
	converged(1)
	p, body = replicaRoute("embed", "embed.llm.internal")
	code, out = apiPut(t, b, token, p, body)
	require.Equal(t, http.StatusCreated, code, out)
	converged(2)
	require.Equal(t, a.XDS.Versions("egress"), b.XDS.Versions("egress"), "identical content, identical versions")

	// A holds what B wrote: the same content through A is unchanged.
	code, out = apiPut(t, a, token, p, body)
	require.Equal(t, http.StatusOK, code, out)
	var obj struct {
		Metadata struct {
			ResourceVersion string `json:"resourceVersion"`
		} `json:"metadata"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &obj))
	require.Equal(t, "2", obj.Metadata.ResourceVersion, "unchanged content: no new revision")

	// An Envoy of A moves to B: the same resources at the same versions.
	envA := connect(t, a, "envoy-1", "egress", false, nil)
	stA, err := envA.WaitFor(waitCtx(t), complete("backend/default/openai"))
	require.NoError(t, err)
	envA.Close()
	envB := connect(t, b, "envoy-1", "egress", true, nil)
	stB, err := envB.WaitFor(waitCtx(t), complete("backend/default/openai"))
	require.NoError(t, err)
	for _, typ := range []string{resourcev3.ListenerType, resourcev3.RouteType, resourcev3.ClusterType, resourcev3.EndpointType} {
		require.Equal(t, stA.Names(typ), stB.Names(typ), typ)
		require.Equal(t, stA.Versions[typ], stB.Versions[typ], "%s: a moving Envoy gets nothing new", typ)
	}

	// A stops; B keeps serving its Envoy and takes writes.
	a.stop()
	p, body = replicaRoute("late", "late.llm.internal")
	code, out = apiPut(t, b, token, p, body)
	require.Equal(t, http.StatusCreated, code, out)
	_, err = envB.WaitFor(waitCtx(t), func(s envoysim.State) bool {
		rc, ok := envoysim.Get[*routev3.RouteConfiguration](s, "route/http")
		return ok && len(rc.GetVirtualHosts()) == 3
	})
	require.NoError(t, err)
}

// routeNames are the HTTPRoutes an instance serves.
func routeNames(inst *instance) []string {
	cfg := inst.Store.Config()
	var out []string
	for _, g := range cfg.Gateways {
		for _, l := range g.Listeners {
			for _, r := range l.Routes {
				out = append(out, r.Ref.String())
			}
		}
	}
	return out
}
