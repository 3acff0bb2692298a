package translate_test

import (
	"slices"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	aggregatev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/clusters/aggregate/v3"
	headermutationv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/header_mutation/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"github.com/stretchr/testify/require"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/translate"
)

// failoverCounts counts what TestFailoverHoldsInEnvoy checked, so that it
// fails rather than pass with nothing to check.
type failoverCounts struct {
	aggregates, hops, hopEjections, childRoutes, members, failoverRoutes, hopRoutes, routes, strippedRoutes, healthChecks int
}

// TestFailoverHoldsInEnvoy checks, on every golden case and example, the
// config properties that make the README's fail-over and retry promises
// hold in Envoy's code (see the comments in failover.go, hop.go and
// retry.go for the Envoy functions each one rests on).
func TestFailoverHoldsInEnvoy(t *testing.T) {
	var n failoverCounts
	examples := map[string]bool{}
	failClosed := map[string]bool{}
	for name, cfg := range credentialSources(t) {
		out, err := translate.Translate(cfg)
		require.NoError(t, err, name)
		backends := map[string]*model.BackendConfig{}
		for _, b := range cfg.Backends {
			backends[translate.ClusterName(b)] = b
		}
		for _, gr := range out.Gateways {
			clusters := map[string]*clusterv3.Cluster{}
			for _, c := range gr.Clusters {
				clusters[c.GetName()] = c
			}
			listeners := map[string]*listenerv3.Listener{}
			for _, l := range gr.Listeners {
				listeners[l.GetName()] = l
			}
			endpoints := map[string]*endpointv3.ClusterLoadAssignment{}
			for _, e := range gr.Endpoints {
				endpoints[e.GetClusterName()] = e
			}
			before := n.aggregates
			for _, c := range gr.Clusters {
				checkNoNewerHealthCheckFields(t, name, c, &n)
				agg := aggregateMembers(t, c)
				if agg == nil {
					continue
				}
				n.aggregates++
				checkAggregate(t, name, c, agg, clusters, listeners, endpoints, backends, &n)
			}
			if n.aggregates > before {
				examples[name] = true
			}
			stripped := n.strippedRoutes
			for _, rc := range gr.Routes {
				for _, vh := range rc.GetVirtualHosts() {
					for _, r := range vh.GetRoutes() {
						checkRoute(t, name, r, gr.Listeners, clusters, backends, &n)
					}
				}
			}
			if n.strippedRoutes > stripped {
				failClosed[name] = true
			}
		}
	}
	for _, ex := range []string{"../examples/03-cloud-failover", "../examples/11-local-to-cloud-failover", "testdata/in/failover.yaml", "testdata/in/failover-credentials.yaml"} {
		require.True(t, examples[ex], "%s has no fail-over aggregate to check", ex)
	}
	// Parent mode: the parent's route to its one credentialed provider
	// fails closed; the child's routes are checked like any (buffering).
	require.True(t, failClosed["../examples/08-dedicated-inference-cluster"], "example 08 has no fail-closed route to check")
	require.NotZero(t, n.childRoutes)
	require.NotZero(t, n.aggregates)
	require.NotZero(t, n.hops)
	require.NotZero(t, n.members)
	require.NotZero(t, n.failoverRoutes)
	require.NotZero(t, n.hopRoutes)
	require.NotZero(t, n.routes)
	require.NotZero(t, n.strippedRoutes)
	require.NotZero(t, n.healthChecks)
	require.NotZero(t, n.hopEjections)
	t.Logf("checked %+v", n)
}

// aggregateMembers returns the member clusters of an aggregate, or nil.
func aggregateMembers(t *testing.T, c *clusterv3.Cluster) []string {
	cfg := &aggregatev3.ClusterConfig{}
	tc := c.GetClusterType().GetTypedConfig()
	if tc == nil || !tc.MessageIs(cfg) {
		return nil
	}
	require.NoError(t, tc.UnmarshalTo(cfg))
	return cfg.GetClusters()
}

func checkAggregate(t *testing.T, name string, c *clusterv3.Cluster, members []string, clusters map[string]*clusterv3.Cluster,
	listeners map[string]*listenerv3.Listener, endpoints map[string]*endpointv3.ClusterLoadAssignment, backends map[string]*model.BackendConfig, n *failoverCounts) {
	t.Helper()
	where := name + ": " + c.GetName()
	// (c) Envoy reads retry limits from the route's cluster, the aggregate:
	// never Envoy's default of 3.
	th := c.GetCircuitBreakers().GetThresholds()
	require.Len(t, th, 1, where)
	require.NotNil(t, th[0].GetMaxRetries(), "%s: the aggregate must set max_retries (Envoy's default is 3 concurrent retries)", where)
	primary := backendOf(t, where, members[0], clusters, listeners, backends)
	require.Equal(t, translate.AggregateMaxRetries(primary), th[0].GetMaxRetries().GetValue(), where)
	require.Nil(t, th[0].GetRetryBudget(), "%s: a retry budget on an aggregate counts the aggregate's own requests, which are none", where)
	require.Zero(t, c.GetCommonLbConfig().GetHealthyPanicThreshold().GetValue(), where)
	for _, m := range members {
		n.members++
		mc := clusters[m]
		require.NotNil(t, mc, "%s: member %s", where, m)
		require.NotNil(t, mc.GetCommonLbConfig().GetHealthyPanicThreshold(), "%s: member %s must have panic mode off", where, m)
		require.Zero(t, mc.GetCommonLbConfig().GetHealthyPanicThreshold().GetValue(), "%s: member %s", where, m)
		if internal := internalListener(mc); internal != "" {
			checkHop(t, where, mc, listeners[internal], clusters, endpoints, n)
			continue
		}
		// (d) A member's priority stays whole while any host is healthy.
		requireWholePriority(t, where+" member "+m, mc, endpoints)
		// A member reached directly has no upstream filters: they would
		// not run behind the aggregate (envoyproxy/envoy#29318).
		require.Empty(t, upstreamFilters(t, mc), "%s: member %s has upstream filters but is not reached through a hop", where, m)
	}
}

func checkHop(t *testing.T, where string, hop *clusterv3.Cluster, l *listenerv3.Listener, clusters map[string]*clusterv3.Cluster,
	endpoints map[string]*endpointv3.ClusterLoadAssignment, n *failoverCounts) {
	t.Helper()
	n.hops++
	where += " hop " + hop.GetName()
	require.NotNil(t, l, "%s: no internal listener", where)
	hcm := &hcmv3.HttpConnectionManager{}
	require.NoError(t, l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(hcm))
	routes := hcm.GetRouteConfig().GetVirtualHosts()[0].GetRoutes()
	require.NotEmpty(t, routes, where)
	// The last route takes every request the others (model renames on a
	// path, schema translation: body.go, schema.go) do not.
	def := routes[len(routes)-1]
	require.Equal(t, "/", def.GetMatch().GetPrefix(), where)
	require.Empty(t, def.GetMatch().GetHeaders(), where)
	backendCluster := def.GetRoute().GetCluster()
	backend := clusters[backendCluster]
	require.NotNil(t, backend, where)
	requireWholePriority(t, where+" backend "+backendCluster, backend, endpoints)
	for _, r := range routes {
		if dr := r.GetDirectResponse(); dr != nil {
			// A hop's own answer (a path it cannot translate) is a
			// marked refusal: the outer route moves on to the next
			// backend, and nothing reached this one.
			require.Equal(t, uint32(503), dr.GetStatus(), "%s route %s", where, r.GetName())
			marked := false
			for _, h := range r.GetResponseHeadersToAdd() {
				marked = marked || h.GetHeader().GetKey() == translate.RefusalHeader
			}
			require.True(t, marked, "%s route %s: a hop's own answer must carry %s", where, r.GetName(), translate.RefusalHeader)
			continue
		}
		require.Equal(t, backendCluster, r.GetRoute().GetCluster(), "%s route %s: a hop reaches its own backend only", where, r.GetName())
		// (f) The hop keeps large bodies too: for its own retries and for a
		// SigV4 signer, which answers 413 above the stream's buffer limit.
		require.GreaterOrEqual(t, r.GetRequestBodyBufferLimit().GetValue(), uint64(translate.DefaultBufferLimit), "%s route %s", where, r.GetName())
		// (a) The hop retries what only it can still tell reached no provider.
		rp := r.GetRoute().GetRetryPolicy()
		require.Equal(t, "reset-before-request,refused-stream", rp.GetRetryOn(), "%s route %s", where, r.GetName())
		require.Empty(t, rp.GetRetriableStatusCodes(), where)
	}
	// (a, g) Envoy's own refusals keep 503 and are marked; failures after
	// the request was sent, and overload resets, become 502.
	mappers := hcm.GetLocalReplyConfig().GetMappers()
	require.Len(t, mappers, 2, where)
	refusal, after := mappers[0], mappers[1]
	require.Subset(t, refusal.GetFilter().GetResponseFlagFilter().GetFlags(), []string{"UH", "UO", "UF"}, where)
	require.Equal(t, uint32(503), refusal.GetStatusCode().GetValue(), where)
	require.Len(t, refusal.GetHeadersToAdd(), 1, where)
	require.Equal(t, translate.RefusalHeader, refusal.GetHeadersToAdd()[0].GetHeader().GetKey(), where)
	require.Subset(t, after.GetFilter().GetResponseFlagFilter().GetFlags(), []string{"UR", "UC", "LR", "UPE", "OM"}, where)
	require.Equal(t, uint32(502), after.GetStatusCode().GetValue(), where)
	for _, f := range after.GetFilter().GetResponseFlagFilter().GetFlags() {
		require.NotContains(t, refusal.GetFilter().GetResponseFlagFilter().GetFlags(), f, "%s: %s is both a refusal and an after-send failure", where, f)
	}
	// (g) A provider's answer never carries the mark: the backend's own
	// upstream filters remove it.
	removesMark := false
	for _, f := range upstreamFilters(t, backend) {
		hm := &headermutationv3.HeaderMutation{}
		if f.GetTypedConfig().MessageIs(hm) {
			require.NoError(t, f.GetTypedConfig().UnmarshalTo(hm))
			for _, m := range hm.GetMutations().GetResponseMutations() {
				removesMark = removesMark || m.GetRemove() == translate.RefusalHeader
			}
		}
	}
	if !removesMark {
		// A backend without upstream filters (no credential) is reached
		// through its hop for body rewrites only: every forwarding route
		// of the hop removes the mark from its answers.
		removesMark = true
		for _, r := range routes {
			if r.GetRoute() != nil {
				removesMark = removesMark && slices.Contains(r.GetResponseHeadersToRemove(), translate.RefusalHeader)
			}
		}
	}
	require.True(t, removesMark, "%s: backend %s could forge %s", where, backendCluster, translate.RefusalHeader)

	// (b) The hop shows the backend's health: it ejects itself on the
	// backend's answers as the backend's own outlier detection does, and
	// is never in panic mode (an ejected hop must take no traffic).
	require.NotNil(t, hop.GetCommonLbConfig().GetHealthyPanicThreshold(), where)
	require.Zero(t, hop.GetCommonLbConfig().GetHealthyPanicThreshold().GetValue(), where)
	require.Empty(t, hop.GetHealthChecks(), "%s: Envoy's health checkers cannot reach an internal listener", where)
	if bod := backend.GetOutlierDetection(); bod != nil {
		n.hopEjections++
		hod := hop.GetOutlierDetection()
		require.NotNil(t, hod, "%s: the backend can be ejected but its hop cannot: the aggregate would keep sending to it", where)
		require.Equal(t, uint32(100), hod.GetMaxEjectionPercent().GetValue(), where)
		for _, pair := range [][2]uint32{
			{hod.GetConsecutiveGatewayFailure().GetValue(), bod.GetConsecutiveGatewayFailure().GetValue()},
			{hod.GetEnforcingConsecutiveGatewayFailure().GetValue(), bod.GetEnforcingConsecutiveGatewayFailure().GetValue()},
			{hod.GetConsecutive_5Xx().GetValue(), bod.GetConsecutive_5Xx().GetValue()},
			{hod.GetEnforcingConsecutive_5Xx().GetValue(), bod.GetEnforcingConsecutive_5Xx().GetValue()},
		} {
			require.Equal(t, pair[1], pair[0], where)
		}
		require.Equal(t, bod.GetBaseEjectionTime().AsDuration(), hod.GetBaseEjectionTime().AsDuration(), where)
	} else {
		require.Nil(t, hop.GetOutlierDetection(), "%s: a backend without ejection has a hop without ejection", where)
	}

	// (c) The hop imposes no limit of its own below the backend's.
	th := hop.GetCircuitBreakers().GetThresholds()
	require.Len(t, th, 1, where)
	for _, lim := range [][2]uint32{
		{th[0].GetMaxRequests().GetValue(), limit(backend, func(t *clusterv3.CircuitBreakers_Thresholds) uint32 { return t.GetMaxRequests().GetValue() })},
		{th[0].GetMaxConnections().GetValue(), limit(backend, func(t *clusterv3.CircuitBreakers_Thresholds) uint32 { return t.GetMaxConnections().GetValue() })},
		{th[0].GetMaxPendingRequests().GetValue(), limit(backend, func(t *clusterv3.CircuitBreakers_Thresholds) uint32 { return t.GetMaxPendingRequests().GetValue() })},
	} {
		require.Greater(t, lim[0], lim[1], "%s: the hop's limit would overflow before the backend's (an overflow at the hop is never retried)", where)
	}
}

// limit is a backend cluster's limit, or Envoy's default of 1024.
func limit(c *clusterv3.Cluster, get func(*clusterv3.CircuitBreakers_Thresholds) uint32) uint32 {
	for _, th := range c.GetCircuitBreakers().GetThresholds() {
		if v := get(th); v != 0 {
			return v
		}
	}
	return 1024
}

// requireWholePriority checks (d): the cluster's endpoints, inline or over
// EDS, carry the overprovisioning factor that keeps a priority whole.
func requireWholePriority(t *testing.T, where string, c *clusterv3.Cluster, endpoints map[string]*endpointv3.ClusterLoadAssignment) {
	t.Helper()
	cla := c.GetLoadAssignment()
	if cla == nil {
		cla = endpoints[c.GetEdsClusterConfig().GetServiceName()]
	}
	require.NotNil(t, cla, "%s: no endpoints", where)
	require.GreaterOrEqual(t, cla.GetPolicy().GetOverprovisioningFactor().GetValue(), uint32(100*len(cla.GetEndpoints()[0].GetLbEndpoints())),
		"%s: with Envoy's default overprovisioning factor (140) traffic spills to the next priority while hosts are healthy", where)
}

func checkRoute(t *testing.T, name string, r *routev3.Route, listeners []*listenerv3.Listener, clusters map[string]*clusterv3.Cluster, backends map[string]*model.BackendConfig, n *failoverCounts) {
	t.Helper()
	ra := r.GetRoute()
	if ra == nil {
		return
	}
	where := name + ": " + r.GetName()
	n.routes++
	// (f) Bodies larger than Envoy's default 1 MiB still fail over.
	require.GreaterOrEqual(t, r.GetRequestBodyBufferLimit().GetValue(), uint64(1<<20), "%s: retries give up on bodies over the buffer limit", where)
	rp := ra.GetRetryPolicy()
	names := routeClusters(r)
	if strings.HasPrefix(ra.GetCluster(), "parent/") {
		// A child retries only what cannot have reached its parent: the
		// parent did its own retries and fail-over.
		require.Equal(t, translate.ParentRetryOn, rp.GetRetryOn(), where)
		require.Empty(t, rp.GetRetriableStatusCodes(), where)
		require.Empty(t, rp.GetRetriableHeaders(), where)
		n.childRoutes++
	}
	failover := false
	for _, c := range names {
		failover = failover || aggregateMembers(t, clusters[c]) != nil
	}
	if failover {
		n.failoverRoutes++
		// (e) A fail-over does not wait for the refusing provider.
		require.Nil(t, rp.GetRateLimitedRetryBackOff(), "%s: a retry to another provider would wait for the first one's Retry-After", where)
	}
	hops := strings.Contains(rp.GetRetryOn(), "retriable-headers")
	if hops {
		n.hopRoutes++
		require.True(t, failover, where)
		// (g) The mark of a hop's refusal never leaves the gateway.
		require.Contains(t, r.GetResponseHeadersToRemove(), translate.RefusalHeader, where)
	}
	// (g) A provider's 503 is retried only when a GuardRailsPolicy lists it.
	if slices.Contains(rp.GetRetriableStatusCodes(), 503) {
		require.NotContains(t, []string{"testdata/in/failover.yaml", "testdata/in/failover-credentials.yaml", "../examples/11-local-to-cloud-failover"}, name,
			"%s: retries a provider's 503 by default", where)
	}
	// (3) Every backend credentialed: the route strips workload credentials
	// itself, failing closed on a proxy that ignores upstream filters.
	all := len(names) > 0
	for _, c := range followHops(t, listeners, clusters, expandAggregates(t, clusters, names)) {
		b := backends[c]
		all = all && b != nil && b.Credential != nil
	}
	if all {
		n.strippedRoutes++
		require.Subset(t, r.GetRequestHeadersToRemove(), model.WorkloadCredentialHeaders, "%s: reaches only credentialed backends but passes workload credentials on", where)
	}
}

// checkNoNewerHealthCheckFields checks (h): no health check relies on a
// field only Envoy 1.40 knows.
func checkNoNewerHealthCheckFields(t *testing.T, name string, c *clusterv3.Cluster, n *failoverCounts) {
	t.Helper()
	for _, hc := range c.GetHealthChecks() {
		n.healthChecks++
		require.False(t, hc.GetHttpHealthCheck().GetUseAlpnProtocol(), "%s: %s: use_alpn_protocol needs Envoy 1.40", name, c.GetName())
	}
}

// backendOf is the model backend a member cluster (or hop) stands for.
func backendOf(t *testing.T, where, member string, clusters map[string]*clusterv3.Cluster, listeners map[string]*listenerv3.Listener, backends map[string]*model.BackendConfig) *model.BackendConfig {
	t.Helper()
	names := followHops(t, mapValues(listeners), clusters, []string{member})
	require.Len(t, names, 1, where)
	b := backends[names[0]]
	require.NotNil(t, b, "%s: member %s is no backend", where, member)
	return b
}

func mapValues(m map[string]*listenerv3.Listener) []*listenerv3.Listener {
	out := make([]*listenerv3.Listener, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

func internalListener(c *clusterv3.Cluster) string {
	for _, le := range c.GetLoadAssignment().GetEndpoints() {
		for _, lb := range le.GetLbEndpoints() {
			if a := lb.GetEndpoint().GetAddress().GetEnvoyInternalAddress(); a != nil {
				return a.GetServerListenerName()
			}
		}
	}
	return ""
}

func upstreamFilters(t *testing.T, c *clusterv3.Cluster) []*hcmv3.HttpFilter {
	t.Helper()
	opts := &httpv3.HttpProtocolOptions{}
	if a := c.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]; a != nil {
		require.NoError(t, a.UnmarshalTo(opts))
	}
	return opts.GetHttpFilters()
}
