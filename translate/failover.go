package translate

import (
	"crypto/sha256"
	"encoding/hex"
	"sort"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	aggregatev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/clusters/aggregate/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/tollgate-dev/tollgate/model"
)

// Fail-over across providers needs each provider's own TLS, credentials and
// Host header, so every backend stays its own cluster, and fail-over is an
// aggregate cluster over them (not priority levels inside one cluster).
//
// A rule's backends of the lowest priority number share its traffic by
// weight. Each such backend X gets its own target: an aggregate cluster that
// tries X, then the other backends of its priority, then each higher
// priority in turn. So X's share moves to its peers when X is ejected or
// unhealthy, and to the next priority only when every backend of X's
// priority is. A rule with one backend needs none of this. Members with a
// credential are reached through a hop (see hop.go).

// target is one entry of a rule's traffic split.
type target struct {
	// Cluster is the backend's cluster, or an aggregate cluster.
	Cluster string
	Weight  uint32
	// Members are the backends in fail-over order (one: a plain cluster).
	Members []*model.BackendConfig
}

// aggregate reports whether the target is an aggregate cluster.
func (t target) aggregate() bool { return len(t.Members) > 1 }

// Targets plans a rule's traffic split over the backends gateway g serves
// (see ServedBackends): a backend g's RegionAllowListPolicy refuses is no
// member of any fail-over order there.
func Targets(g *model.GatewayConfig, rule *model.RuleConfig) []target {
	served := ServedBackends(g, rule)
	if len(served) == 0 {
		return nil
	}
	if len(served) == 1 {
		b := served[0].Backend
		return []target{{Cluster: ClusterName(b), Weight: served[0].Weight, Members: []*model.BackendConfig{b}}}
	}
	// Priority groups, ascending; within a group by weight, then identity.
	groups := map[uint32][]model.WeightedBackend{}
	var prios []uint32
	for _, wb := range served {
		if groups[wb.Priority] == nil {
			prios = append(prios, wb.Priority)
		}
		groups[wb.Priority] = append(groups[wb.Priority], wb)
	}
	sort.Slice(prios, func(i, j int) bool { return prios[i] < prios[j] })
	for _, p := range prios {
		g := groups[p]
		sort.SliceStable(g, func(i, j int) bool {
			if g[i].Weight != g[j].Weight {
				return g[i].Weight > g[j].Weight
			}
			return g[i].Backend.Ref.Less(g[j].Backend.Ref)
		})
	}
	// The primary group is the lowest priority that has weight; backends
	// of lower priorities with weight 0 only take part as fail-over.
	primary := 0
	for i, p := range prios {
		var total uint64
		for _, wb := range groups[p] {
			total += uint64(wb.Weight)
		}
		if total > 0 {
			primary = i
			break
		}
	}
	var out []target
	for _, first := range groups[prios[primary]] {
		if first.Weight == 0 {
			continue
		}
		members := []*model.BackendConfig{first.Backend}
		for _, wb := range groups[prios[primary]] {
			if wb.Backend != first.Backend {
				members = append(members, wb.Backend)
			}
		}
		for i, p := range prios {
			if i == primary {
				continue
			}
			for _, wb := range groups[p] {
				members = append(members, wb.Backend)
			}
		}
		out = append(out, target{Cluster: AggregateClusterName(members), Weight: first.Weight, Members: members})
	}
	return out
}

// AggregateClusterName names the aggregate cluster of a fail-over order:
// readable when short, else its first member and a hash of the order.
func AggregateClusterName(members []*model.BackendConfig) string {
	parts := make([]string, len(members))
	for i, b := range members {
		parts[i] = b.Ref.Namespace + "/" + b.Ref.Name
	}
	name := "failover/" + strings.Join(parts, ",")
	if len(name) <= 160 {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	return "failover/" + parts[0] + ",+" + hex.EncodeToString(sum[:6])
}

// AggregateCluster builds the cluster that tries members in order: Envoy
// flattens their priority levels, and uses a member only when those before
// it have no healthy host.
func AggregateCluster(t target) (*clusterv3.Cluster, error) {
	names := make([]string, len(t.Members))
	for i, b := range t.Members {
		names[i] = memberCluster(b)
	}
	cfg, err := toAny(&aggregatev3.ClusterConfig{Clusters: names})
	if err != nil {
		return nil, err
	}
	c := &clusterv3.Cluster{
		Name:     t.Cluster,
		LbPolicy: clusterv3.Cluster_CLUSTER_PROVIDED,
		CircuitBreakers: &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
			Priority:   corev3.RoutingPriority_DEFAULT,
			MaxRetries: wrapperspb.UInt32(AggregateMaxRetries(t.Members[0])),
		}}},
		ClusterDiscoveryType: &clusterv3.Cluster_ClusterType{ClusterType: &clusterv3.Cluster_CustomClusterType{
			Name:        "envoy.clusters.aggregate",
			TypedConfig: cfg,
		}},
	}
	noPanic(c)
	return c, nil
}

// envoyDefaultMaxRequests is Envoy's default circuit breaker limit of
// concurrent requests per cluster.
const envoyDefaultMaxRequests = 1024

// AggregateMaxRetries is the limit of concurrent retries of the requests
// whose fail-over order starts with primary.
//
// Envoy checks a retry against the circuit breakers of the route's
// cluster — the aggregate, not the member the retry goes to
// (RetryStateImpl::shouldRetry in source/common/router/retry_state_impl.cc
// asks cluster_.resourceManager(priority_).retries(), and cluster_ is the
// route's cluster the router passed in Filter::decodeHeaders). Left at
// Envoy's default of 3, a provider outage would fail every request beyond
// the third concurrent one instead of failing it over
// (upstream_rq_retry_overflow). A retry budget cannot be placed there
// either: it is a share of the cluster's own active requests
// (ResourceManagerImpl::RetryBudgetImpl::max), and an aggregate has none —
// the connection pools count requests on the member's cluster.
//
// So the aggregate gets a fixed limit taken from the primary backend's
// QoSController: its maxRetries as is; its retryBudget as that share of its
// request limit (maxRequests, else Envoy's 1024), at least
// minRetryConcurrency; without either, the request limit itself, so that
// every request in flight may fail over (each request still retries at
// most num_retries times, one retry at a time).
func AggregateMaxRetries(primary *model.BackendConfig) uint32 {
	maxRequests := uint32(envoyDefaultMaxRequests)
	if primary.Egress.MaxRequests != nil {
		maxRequests = *primary.Egress.MaxRequests
	}
	if primary.QoS == nil {
		return maxRequests
	}
	cb := primary.QoS.CircuitBreakers
	if cb.MaxRequests != nil {
		maxRequests = *cb.MaxRequests
	}
	switch {
	case cb.MaxRetries != nil:
		return *cb.MaxRetries
	case cb.RetryBudget != nil:
		n := uint32(cb.RetryBudget.BudgetPercent / 100 * float64(maxRequests))
		return max(n, cb.RetryBudget.MinRetryConcurrency)
	}
	return maxRequests
}

// noPanic turns off Envoy's panic mode on a cluster that takes part in
// fail-over. By default, when under half of a cluster's hosts are healthy
// Envoy ignores health and sends to all of them — for a provider reached
// through one DNS name, that means straight back to the provider outlier
// detection just ejected. Without panic mode the cluster has no host, the
// attempt fails before anything is sent (503, no healthy upstream), and the
// request moves on to the next priority.
func noPanic(c *clusterv3.Cluster) {
	if c.CommonLbConfig == nil {
		c.CommonLbConfig = &clusterv3.Cluster_CommonLbConfig{}
	}
	c.CommonLbConfig.HealthyPanicThreshold = &typev3.Percent{Value: 0}
}

// wholePriorityOverprovisioning is the overprovisioning factor of a
// fail-over member's endpoints. Envoy rates a priority's health as
// min(100, factor/100 × healthy/total) percent and sends the missing share
// to the next priority (LoadBalancerBase::recalculatePriorityLoad in
// source/common/upstream/load_balancer_impl.cc); the aggregate cluster keeps
// each member's factor for the priorities it flattens
// (source/extensions/clusters/aggregate/cluster.cc). With Envoy's default
// of 140, a backend of two hosts with one ejected would already send 30% of
// its traffic to the next priority. A factor of 100 × the most hosts a
// backend can have rates a priority healthy while any host is: traffic
// moves on only when the backend is really unavailable, as the README
// promises.
const wholePriorityOverprovisioning = 100 * maxPriorityHosts

// maxPriorityHosts bounds the hosts of one backend for which
// wholePriorityOverprovisioning holds; a backend with more hosts (static
// addresses, or a DNS name resolving to more) than this spills over in
// proportion once fewer than total/1000 of them are healthy.
const maxPriorityHosts = 1000

// wholePriority sets the overprovisioning factor of a fail-over member's
// load assignment (nil: nothing to set).
func wholePriority(cla *endpointv3.ClusterLoadAssignment) {
	if cla == nil {
		return
	}
	if cla.Policy == nil {
		cla.Policy = &endpointv3.ClusterLoadAssignment_Policy{}
	}
	cla.Policy.OverprovisioningFactor = wrapperspb.UInt32(wholePriorityOverprovisioning)
}
