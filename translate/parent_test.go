package translate_test

import (
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"github.com/tollgate-dev/tollgate/translate"
)

// A child gateway must never inject a provider credential nor hold
// provider TLS material: those stay at the parent. Its only cluster is the
// hop, every route goes there with the route's name in
// x-tollgate-route, and it retries nothing that may have reached the
// parent.
func TestParentModeChildHoldsNoCredentials(t *testing.T) {
	cfg, errs := loadCase(t, "testdata/in/parent-child.yaml")
	require.Empty(t, errs)
	out, err := translate.Translate(cfg)
	require.NoError(t, err)
	require.NoError(t, out.Validate())

	parent, child := out.Gateway("inference"), out.Gateway("team-a/workloads")
	require.NotNil(t, parent)
	require.NotNil(t, child)

	// The parent holds the credential, over SDS, on its backend cluster.
	require.Len(t, parent.Secrets, 1)
	require.Equal(t, "credential/default/openai", parent.Secrets[0].GetName())
	require.Contains(t, dump(t, parent.Clusters[0]), "credential_injector")

	require.Empty(t, child.Secrets)
	require.False(t, child.CarriesSecrets())
	require.Len(t, child.Clusters, 1)
	hop := child.Clusters[0]
	require.Equal(t, "parent/default/inference", hop.GetName())
	for _, m := range child.All() {
		text := dump(t, m)
		for _, leak := range []string{"credential", "backend/", "api.openai.com", "authorization", "sds"} {
			require.NotContains(t, strings.ToLower(text), leak, "the child's %T carries %q", m, leak)
		}
	}

	routes := 0
	for _, rc := range child.Routes {
		for _, vh := range rc.GetVirtualHosts() {
			for _, r := range vh.GetRoutes() {
				routes++
				ra := r.GetRoute()
				require.Equal(t, "parent/default/inference", ra.GetCluster(), r.GetName())
				require.Nil(t, ra.GetHostRewriteSpecifier(), "%s: the parent matches on the request's own Host", r.GetName())
				require.Equal(t, "connect-failure,refused-stream,reset-before-request", ra.GetRetryPolicy().GetRetryOn(), r.GetName())
				require.Empty(t, ra.GetRetryPolicy().GetRetriableStatusCodes(), r.GetName())
				require.Nil(t, ra.GetRetryPolicy().GetPerTryTimeout(), r.GetName())
				require.Len(t, r.GetRequestHeadersToAdd(), 1)
				h := r.GetRequestHeadersToAdd()[0]
				require.Equal(t, "x-tollgate-route", h.GetHeader().GetKey())
				require.Equal(t, "team-a/chat", h.GetHeader().GetValue())
				require.Equal(t, "OVERWRITE_IF_EXISTS_OR_ADD", h.GetAppendAction().String(), "a workload must not choose the value")
			}
		}
	}
	require.Equal(t, 2, routes)

	// The child's timeouts are the parent's for the same rule: it never
	// cuts a stream the parent still serves.
	timeouts := func(g *translate.GatewayResources, listener string) map[string]string {
		out := map[string]string{}
		for _, rc := range g.Routes {
			if rc.GetName() != listener {
				continue
			}
			for _, vh := range rc.GetVirtualHosts() {
				for _, r := range vh.GetRoutes() {
					out[r.GetName()] = r.GetRoute().GetTimeout().AsDuration().String() + "/" + r.GetRoute().GetIdleTimeout().AsDuration().String()
				}
			}
		}
		return out
	}
	require.Equal(t, timeouts(parent, "route/from-children"), timeouts(child, "route/http"))

	// The parent strips the header before a provider sees it.
	for _, rc := range parent.Routes {
		require.Equal(t, []string{"x-tollgate-route"}, rc.GetRequestHeadersToRemove(), rc.GetName())
	}
}

func TestParentModeChain(t *testing.T) {
	cfg, errs := loadCase(t, "testdata/in/parent-chain.yaml")
	require.Empty(t, errs)
	out, err := translate.Translate(cfg)
	require.NoError(t, err)
	clusters := func(key string) []string {
		var names []string
		for _, c := range out.Gateway(key).Clusters {
			names = append(names, c.GetName())
		}
		return names
	}
	require.Equal(t, []string{"parent/default/regional"}, clusters("edge"))
	require.Equal(t, []string{"parent/default/central"}, clusters("regional"))
	require.Equal(t, []string{"backend/default/anthropic"}, clusters("central"))
	require.Equal(t, clusterv3.Cluster_EDS, out.Gateway("edge").Clusters[0].GetType())
	require.Empty(t, out.Gateway("regional").Routes[0].GetRequestHeadersToRemove(), "a middle gateway overwrites the header with its own route")
	var r *routev3.Route = out.Gateway("regional").Routes[0].GetVirtualHosts()[0].GetRoutes()[0]
	require.Equal(t, "parent/default/central", r.GetRoute().GetCluster())
}

func dump(t *testing.T, m proto.Message) string {
	t.Helper()
	return prototext.Format(m)
}
