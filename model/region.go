package model

import (
	"fmt"
	"sort"
	"strings"
)

// A gateway's RegionAllowListPolicy lists the regions its backends may be
// in. The policy package judges every backend the gateway's routes reach and
// records the refused ones on the gateway (RegionRefused), so that one
// backend may be served by one gateway and refused by another. translate
// reads only these results: a refused backend gets no cluster on that
// gateway and is never a fail-over member there, and a rule left without a
// served backend because of them answers 403 (not the 503 of an unavailable
// backend).

// Condition type and reasons of a region refusal.
const (
	// ConditionRegionAllowed is set False on a backend and on a route that a
	// gateway's RegionAllowListPolicy refuses.
	ConditionRegionAllowed = "RegionAllowed"
	// ReasonRegionNotAllowed: the backend's region is not in the list.
	ReasonRegionNotAllowed = "RegionNotAllowed"
	// ReasonRegionUnlabelled: the backend has no region and the policy
	// refuses unlabelled backends.
	ReasonRegionUnlabelled = "RegionUnlabelled"
)

// ValidRegion reports whether s can be a region name: what a Backend's
// spec.region accepts (lowercase letters, digits and '-', such as
// us-east-1, eu-west or westeurope).
func ValidRegion(s string) bool { return len(s) <= 63 && dns1123Label.MatchString(s) }

// RegionAllowList is a gateway's RegionAllowListPolicy.
type RegionAllowList struct {
	// Policy is the RegionAllowListPolicy this comes from.
	Policy Ref
	// Regions are the allowed regions, as listed.
	Regions []string
	// AllowUnlabelled admits backends without a region.
	AllowUnlabelled bool
}

// RegionRefusal is a backend a gateway's RegionAllowListPolicy refuses.
type RegionRefusal struct {
	Policy  Ref
	Gateway Ref
	Backend Ref
	// Region is the backend's region; empty when it has none.
	Region string
	// Reason is ReasonRegionNotAllowed or ReasonRegionUnlabelled.
	Reason string
}

// Describe is the refusal in a sentence, for conditions, logs and the 403.
func (r *RegionRefusal) Describe() string {
	if r.Region == "" {
		return fmt.Sprintf("%s has no region, and %s on %s refuses unlabelled backends", r.Backend, r.Policy, r.Gateway)
	}
	return fmt.Sprintf("%s is in region %s, which %s on %s does not allow", r.Backend, r.Region, r.Policy, r.Gateway)
}

// Judge returns the refusal of b under the allow list, or nil when b may
// be served.
func (a *RegionAllowList) Judge(g Ref, b *BackendConfig) *RegionRefusal {
	r := &RegionRefusal{Policy: a.Policy, Gateway: g, Backend: b.Ref, Region: b.Region}
	switch {
	case b.Region == "" && a.AllowUnlabelled:
		return nil
	case b.Region == "":
		r.Reason = ReasonRegionUnlabelled
	case contains(a.Regions, b.Region):
		return nil
	default:
		r.Reason = ReasonRegionNotAllowed
	}
	return r
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// RegionRefusalOf is the refusal of b on g, or nil.
func (g *GatewayConfig) RegionRefusalOf(b *BackendConfig) *RegionRefusal {
	return g.RegionRefused[b.Ref]
}

// Serves reports whether g may send traffic to b: b is available and not
// refused by g's RegionAllowListPolicy.
func (g *GatewayConfig) Serves(b *BackendConfig) bool {
	return b.Unavailable == "" && g.RegionRefused[b.Ref] == nil
}

// EndpointGateway is the gateway at the end of g's parent chain: the one
// that picks a backend for g's requests (g itself in Endpoint mode).
// resolveParents has refused cycles.
func (g *GatewayConfig) EndpointGateway() *GatewayConfig {
	for g.Parent != nil {
		g = g.Parent.Gateway
	}
	return g
}

// ChildRegionRefusal is, for a Parent-mode gateway, why it refuses a rule
// itself, or nil when it forwards the rule to its parent. The child cannot
// tell which backend the parent will pick for a request (weights,
// fail-over, health), so it refuses the whole rule as soon as one backend
// the end of its chain may serve is refused by the child's own policy; it
// only ignores backends the parent never serves anyway. When the parent
// serves none of the rule's backends, every backend counts. The first
// refused backend, in the rule's order, is returned.
func (g *GatewayConfig) ChildRegionRefusal(rule *RuleConfig) *RegionRefusal {
	if g.Parent == nil || len(g.RegionRefused) == 0 {
		return nil
	}
	end := g.EndpointGateway()
	candidates := make([]WeightedBackend, 0, len(rule.Backends))
	for _, wb := range rule.Backends {
		if end.Serves(wb.Backend) {
			candidates = append(candidates, wb)
		}
	}
	if len(candidates) == 0 {
		candidates = rule.Backends
	}
	for _, wb := range candidates {
		if r := g.RegionRefused[wb.Backend.Ref]; r != nil {
			return r
		}
	}
	return nil
}

// RegionRefusals lists every refusal of every gateway, sorted by gateway
// then backend: what the store compares between two configs to log each
// change once.
func (c *Config) RegionRefusals() []RegionRefusal {
	var out []RegionRefusal
	for _, g := range c.Gateways {
		for _, r := range g.RegionRefused {
			out = append(out, *r)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Gateway != out[j].Gateway {
			return out[i].Gateway.Less(out[j].Gateway)
		}
		return out[i].Backend.Less(out[j].Backend)
	})
	return out
}

// RegionRefusalSummary describes refusals of one gateway as
// "Backend/ns/a (us-east-1), Backend/ns/b (no region)".
func RegionRefusalSummary(rs []RegionRefusal) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		region := r.Region
		if region == "" {
			region = "no region"
		}
		parts[i] = fmt.Sprintf("%s (%s)", r.Backend, region)
	}
	return strings.Join(parts, ", ")
}
