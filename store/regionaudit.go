package store

import (
	"log/slog"
	"sort"

	"github.com/tollgate-dev/tollgate/model"
)

// auditRegions logs, for every gateway whose set of backends refused by
// its RegionAllowListPolicy differs between the configs prev (nil: none
// served yet) and next, one audit line: the gateway, the policy, the
// backends now refused with their regions, and what was added and
// removed. A reload that changes nothing logs nothing, so the log is a
// record of decisions, not of reloads.
func auditRegions(log *slog.Logger, prev, next *model.Config) {
	before := refusalsByGateway(prev)
	after := refusalsByGateway(next)
	gateways := map[model.Ref]bool{}
	for g := range before {
		gateways[g] = true
	}
	for g := range after {
		gateways[g] = true
	}
	for _, g := range sortedRefs(gateways) {
		old, cur := before[g], after[g]
		added := diff(cur, old)
		removed := diff(old, cur)
		if len(added) == 0 && len(removed) == 0 {
			continue
		}
		policy := ""
		switch {
		case len(cur) > 0:
			policy = cur[0].Policy.String()
		case len(old) > 0:
			policy = old[0].Policy.String()
		}
		log.Info("region allow list: refused backends changed",
			"audit", true,
			"gateway", g.String(),
			"policy", policy,
			"refused", model.RegionRefusalSummary(cur),
			"added", model.RegionRefusalSummary(added),
			"removed", model.RegionRefusalSummary(removed),
		)
	}
}

func refusalsByGateway(cfg *model.Config) map[model.Ref][]model.RegionRefusal {
	out := map[model.Ref][]model.RegionRefusal{}
	if cfg == nil {
		return out
	}
	for _, r := range cfg.RegionRefusals() {
		out[r.Gateway] = append(out[r.Gateway], r)
	}
	return out
}

// diff is what of a is not in b, by backend, region and policy (a backend
// that moved to another region is a change).
func diff(a, b []model.RegionRefusal) []model.RegionRefusal {
	in := map[model.RegionRefusal]bool{}
	for _, r := range b {
		in[r] = true
	}
	var out []model.RegionRefusal
	for _, r := range a {
		if !in[r] {
			out = append(out, r)
		}
	}
	return out
}

func sortedRefs(set map[model.Ref]bool) []model.Ref {
	out := make([]model.Ref, 0, len(set))
	for r := range set {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Less(out[j]) })
	return out
}
