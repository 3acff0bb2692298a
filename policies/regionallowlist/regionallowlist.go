// Package regionallowlist is the RegionAllowListPolicy: the regions the
// backends of a gateway may be in (story 13, regional compliance).
//
// A backend whose spec.region is not listed, or that has no region while
// allowUnlabelled is false, is refused by that gateway only: it gets no
// cluster there and is never a fail-over member; a rule keeps its other
// backends and splits among them by weight, and a rule left with none
// answers 403 with a JSON body naming the policy, the backend and the
// region. Each refused backend, and each route with a refused backend,
// gets a RegionAllowed=False condition per gateway.
//
// A Parent-mode gateway does not pick backends: its parent does. Its own
// policy is enforced on what it can see — the backends its routes name —
// by answering 403 itself for every rule that could land on a backend it
// refuses (see model.GatewayConfig.ChildRegionRefusal). So a child may be
// stricter than its parent, never looser: the parent still applies its own.
package regionallowlist

import (
	"fmt"
	"slices"
	"strings"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/policies/policy"
)

// KindName is the YAML kind.
const KindName = "RegionAllowListPolicy"

// Kind registers the policy.
var Kind = policy.Kind{
	Name:   KindName,
	New:    func() model.Object { return &RegionAllowListPolicy{} },
	Scopes: []string{model.KindGateway},
	ScopeReason: "a region lock is the posture of the gateway the traffic leaves through; " +
		"a backend's region is its own spec.region, and a route must not be able to opt out",
	Lower:  lower,
	Finish: finish,
}

// RegionAllowListPolicy restricts the regions of the backends the gateways
// it targets may serve.
type RegionAllowListPolicy struct {
	model.Base `yaml:",inline"`
	Spec       Spec `yaml:"spec"`
}

// Spec of a RegionAllowListPolicy.
type Spec struct {
	// TargetRefs are Gateways.
	TargetRefs []model.TargetRef `yaml:"targetRefs"`
	// Regions are the allowed regions, compared exactly with each
	// backend's spec.region (e.g. us-east-1, eu-west-1). At least one.
	Regions []string `yaml:"regions"`
	// AllowUnlabelled admits backends without spec.region. Default false:
	// a backend whose region nobody declared is refused.
	AllowUnlabelled bool `yaml:"allowUnlabelled,omitempty"`
}

// Targets implements model.Policy.
func (p *RegionAllowListPolicy) Targets() []model.TargetRef { return p.Spec.TargetRefs }

// Validate implements model.Object.
func (p *RegionAllowListPolicy) Validate(v *model.Validator) {
	s := &p.Spec
	model.ValidateTargetRefs(v, s.TargetRefs)
	if len(s.Regions) == 0 {
		v.Errorf("spec.regions", "at least one region is required, such as eu-west-1 (to refuse every backend, remove the gateway's routes instead)")
	}
	seen := map[string]int{}
	for i, r := range s.Regions {
		path := fmt.Sprintf("spec.regions[%d]", i)
		if !model.ValidRegion(r) {
			v.Errorf(path, "%q is not a region name: use lowercase letters, digits and '-', as in a Backend's spec.region (e.g. eu-west-1)", r)
			continue
		}
		if j, dup := seen[r]; dup {
			v.Errorf(path, "%q is already listed at spec.regions[%d]", r, j)
			continue
		}
		seen[r] = i
	}
}

func lower(ctx policy.Context, pol model.Policy, target model.Ref) {
	p := pol.(*RegionAllowListPolicy)
	ctx.Index.Gateways[target].RegionAllowList = &model.RegionAllowList{
		Policy:          model.RefOf(p),
		Regions:         slices.Clone(p.Spec.Regions),
		AllowUnlabelled: p.Spec.AllowUnlabelled,
	}
}

// finish judges the backends of every gateway with a policy, once every
// kind is lowered, and reports the refusals.
func finish(cfg *model.Config, _ *policy.Index) {
	for _, g := range cfg.Gateways {
		a := g.RegionAllowList
		if a == nil {
			continue
		}
		refusedOn := map[model.Ref]bool{} // backends already reported
		for _, l := range g.Listeners {
			for _, r := range l.Routes {
				for _, rule := range r.Rules {
					for _, wb := range rule.Backends {
						b := wb.Backend
						if _, judged := g.RegionRefused[b.Ref]; judged || refusedOn[b.Ref] {
							continue
						}
						rf := a.Judge(g.Ref, b)
						if rf == nil {
							continue
						}
						if g.RegionRefused == nil {
							g.RegionRefused = map[model.Ref]*model.RegionRefusal{}
						}
						g.RegionRefused[b.Ref] = rf
						refusedOn[b.Ref] = true
						cfg.Conditions = append(cfg.Conditions, backendCondition(a, rf))
					}
				}
			}
		}
	}
	// Routes are judged once every gateway's refusals are known: a child
	// reads the backends its parent serves.
	for _, g := range cfg.Gateways {
		if len(g.RegionRefused) == 0 {
			continue
		}
		seen := map[model.Ref]bool{}
		for _, l := range g.Listeners {
			for _, r := range l.Routes {
				if seen[r.Ref] {
					continue
				}
				seen[r.Ref] = true
				if c, ok := routeCondition(g, r); ok {
					cfg.Conditions = append(cfg.Conditions, c)
				}
			}
		}
	}
}

func allowed(a *model.RegionAllowList) string {
	s := strings.Join(a.Regions, ", ")
	if a.AllowUnlabelled {
		s += " (and backends without a region)"
	}
	return s
}

func backendCondition(a *model.RegionAllowList, rf *model.RegionRefusal) model.Condition {
	fix := "set its spec.region"
	if rf.Region != "" {
		fix = "move it to an allowed region, add " + rf.Region + " to the policy's spec.regions"
	}
	return model.Condition{
		Object: rf.Backend.String(), Type: model.ConditionRegionAllowed, Status: false, Reason: rf.Reason,
		Message: fmt.Sprintf("%s (allowed: %s): it is never served from %s, where its routes use their allowed backends only, or answer 403 when none is left; %s, or route it through another gateway",
			rf.Describe(), allowed(a), rf.Gateway, fix),
	}
}

// routeCondition reports what a gateway's refusals do to one route: which
// rules answer 403 and which lost backends.
func routeCondition(g *model.GatewayConfig, r *model.RouteConfig) (model.Condition, bool) {
	var notes []string
	reason := ""
	for _, rule := range r.Rules {
		name := fmt.Sprintf("rule %d", rule.Index)
		if rule.Name != "" {
			name += " (" + rule.Name + ")"
		}
		if g.Parent != nil {
			if rf := g.ChildRegionRefusal(rule); rf != nil {
				reason = firstReason(reason, rf.Reason)
				notes = append(notes, fmt.Sprintf("%s answers 403 on %s, which is in Parent mode and cannot choose the backend its parent picks, and the parent may pick %s (a rule whose backends are all allowed is forwarded: give refused backends rules of their own)",
					name, g.Ref, refusalText(*rf)))
			}
			continue
		}
		var refused []model.RegionRefusal
		remaining := 0
		unavailable := false
		for _, wb := range rule.Backends {
			switch rf := g.RegionRefusalOf(wb.Backend); {
			case rf != nil:
				refused = append(refused, *rf)
				reason = firstReason(reason, rf.Reason)
			case wb.Backend.Unavailable != "":
				unavailable = true
			default:
				remaining++
			}
		}
		switch {
		case len(refused) == 0:
			continue
		case remaining > 0:
			notes = append(notes, fmt.Sprintf("%s on %s leaves out %s and sends its traffic to its allowed backends only (by weight, then fail-over order)",
				name, g.Ref, model.RegionRefusalSummary(refused)))
		case unavailable:
			notes = append(notes, fmt.Sprintf("%s on %s leaves out %s; its other backends are unavailable, so it answers 503 until they are",
				name, g.Ref, model.RegionRefusalSummary(refused)))
		default:
			notes = append(notes, fmt.Sprintf("%s answers 403 on %s: every backend is refused: %s",
				name, g.Ref, model.RegionRefusalSummary(refused)))
		}
	}
	if len(notes) == 0 {
		return model.Condition{}, false
	}
	return model.Condition{
		Object: r.Ref.String(), Type: model.ConditionRegionAllowed, Status: false, Reason: reason,
		Message: fmt.Sprintf("%s refuses backends of this route (allowed regions: %s): %s",
			g.RegionAllowList.Policy, allowed(g.RegionAllowList), strings.Join(notes, "; ")),
	}, true
}

func refusalText(rf model.RegionRefusal) string {
	return model.RegionRefusalSummary([]model.RegionRefusal{rf})
}

// firstReason keeps RegionNotAllowed over RegionUnlabelled: a route with
// both is refused for a region first.
func firstReason(cur, next string) string {
	if cur == model.ReasonRegionNotAllowed || next == "" {
		return cur
	}
	return next
}
