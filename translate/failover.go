package translate

import (
	"crypto/sha256"
	"encoding/hex"
	"sort"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	aggregatev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/clusters/aggregate/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"

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

// Targets plans a rule's traffic split over its served backends.
func Targets(rule *model.RuleConfig) []target {
	served := ServedBackends(rule)
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
		ClusterDiscoveryType: &clusterv3.Cluster_ClusterType{ClusterType: &clusterv3.Cluster_CustomClusterType{
			Name:        "envoy.clusters.aggregate",
			TypedConfig: cfg,
		}},
	}
	noPanic(c)
	return c, nil
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
