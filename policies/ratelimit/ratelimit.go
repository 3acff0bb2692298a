// Package ratelimit is the RateLimitPolicy: request and token limits,
// counted by a rate limit service (envoyproxy/ratelimit, configured by
// tollgate over ADS) or, for request counts, by each Envoy on its own.
//
// Scopes: Gateway (every route of the gateway; the only scope that names
// the service), Backend (every rule that may send a request to the
// backend) and HTTPRoute. Limits merge by name, the more specific scope
// winning; other fields fall back field by field (HTTPRoute over Backend
// over Gateway).
//
// Every limit's counters are its own: the descriptor that reaches the
// service starts with the policy's namespace and name and the limit's
// name, under the gateway's own domain, so no two policies, namespaces or
// gateways share a counter. The limit's keys then split it (one counter
// per client namespace, per model, ...).
package ratelimit

import (
	"fmt"
	"math"
	"net/netip"
	"regexp"
	"slices"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/policies/policy"
)

// KindName is the YAML kind.
const KindName = "RateLimitPolicy"

// Kind registers the policy.
var Kind = policy.Kind{
	Name:   KindName,
	New:    func() model.Object { return &RateLimitPolicy{} },
	Scopes: []string{model.KindGateway, model.KindBackend, model.KindHTTPRoute},
	Lower:  lower,
	Check:  check,
}

// RateLimitPolicy limits requests and tokens.
type RateLimitPolicy struct {
	model.Base `yaml:",inline"`
	Spec       Spec `yaml:"spec"`
}

// Spec of a RateLimitPolicy.
type Spec struct {
	// TargetRefs are Gateways, Backends or HTTPRoutes.
	TargetRefs []model.TargetRef `yaml:"targetRefs"`
	// Service is the gateway's rate limit service; Gateway scope only.
	Service *Service `yaml:"service,omitempty"`
	// Limits are counted by the service.
	Limits []Limit `yaml:"limits,omitempty"`
	// Local is a request limit each Envoy enforces on its own.
	Local *Local `yaml:"local,omitempty"`
	// DefaultMaxOutputTokens is the output reservation of a request whose
	// body sets neither max_tokens nor max_completion_tokens (default 4096).
	DefaultMaxOutputTokens *uint64 `yaml:"defaultMaxOutputTokens,omitempty"`
}

// Service names the Backend of the rate limit service.
type Service struct {
	// BackendRef is a Backend speaking HTTP/2 (gRPC): the service's
	// envoy.service.ratelimit.v3 endpoint.
	BackendRef model.LocalRef `yaml:"backendRef"`
	// Timeout bounds one check (default 100ms).
	Timeout *model.Duration `yaml:"timeout,omitempty"`
	// FailOpen says what happens when the service cannot answer in time.
	FailOpen *FailOpen `yaml:"failOpen,omitempty"`
}

// FailOpen says, per kind of limit, whether a request is admitted when the
// service cannot answer.
type FailOpen struct {
	// Requests: default true (availability over a request count).
	Requests *bool `yaml:"requests,omitempty"`
	// Tokens: default false (a budget is a spending cap).
	Tokens *bool `yaml:"tokens,omitempty"`
}

// Limit is one budget.
type Limit struct {
	// Name is unique within the policy (lowercase letters, digits, '-').
	Name string `yaml:"name"`
	// Requests per unit; or
	Requests *uint64 `yaml:"requests,omitempty"`
	// Tokens per unit, by type: each type set is its own counter.
	Tokens *Tokens `yaml:"tokens,omitempty"`
	// Per is Second, Minute, Hour or Day.
	Per string `yaml:"per"`
	// By splits the counters: SPIFFEID, Namespace, ServiceAccount (of the
	// verified client), SourceCIDR, Model, Route, Backend. Empty: one
	// counter for every request the limit applies to.
	By []string `yaml:"by,omitempty"`
	// SourceCIDRs are the client address groups By: [SourceCIDR] counts.
	SourceCIDRs []CIDRGroup `yaml:"sourceCIDRs,omitempty"`
	// Shadow counts and reports (ratelimit's shadow_mode) but refuses
	// nothing.
	Shadow bool `yaml:"shadow,omitempty"`
}

// Tokens are token budgets by type.
type Tokens struct {
	Input  *uint64 `yaml:"input,omitempty"`
	Output *uint64 `yaml:"output,omitempty"`
	Total  *uint64 `yaml:"total,omitempty"`
}

// CIDRGroup is a named group of client addresses.
type CIDRGroup struct {
	Name  string   `yaml:"name"`
	CIDRs []string `yaml:"cidrs"`
}

// Local is a per-Envoy request limit.
type Local struct {
	Requests uint64 `yaml:"requests"`
	Per      string `yaml:"per"`
}

// Targets implements model.Policy.
func (p *RateLimitPolicy) Targets() []model.TargetRef { return p.Spec.TargetRefs }

var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// MaxBudget is the largest budget envoyproxy/ratelimit stores
// (RateLimitPolicy.requests_per_unit is a uint32).
const MaxBudget = math.MaxUint32

// MaxReservation is the largest hits addend Envoy sends
// (MAX_HITS_ADDEND in
// source/extensions/filters/common/ratelimit_config/ratelimit_config.cc).
const MaxReservation = 1_000_000_000

// Validate implements model.Object.
func (p *RateLimitPolicy) Validate(v *model.Validator) {
	s := &p.Spec
	model.ValidateTargetRefs(v, s.TargetRefs)
	if s.Service == nil && len(s.Limits) == 0 && s.Local == nil && s.DefaultMaxOutputTokens == nil {
		v.Errorf("spec", "set limits, local or service (a RateLimitPolicy without any limits nothing)")
	}
	if sv := s.Service; sv != nil {
		if sv.BackendRef.Name == "" {
			v.Errorf("spec.service.backendRef.name", "is required: the Backend of the rate limit service (gRPC)")
		}
		if t := sv.Timeout; t != nil {
			switch {
			case t.Duration <= 0:
				v.Errorf("spec.service.timeout", "must be positive")
			case t.Duration%1e6 != 0:
				v.Errorf("spec.service.timeout", "must be whole milliseconds")
			}
		}
		for i, tr := range s.TargetRefs {
			if tr.Kind != model.KindGateway {
				v.Errorf(fmt.Sprintf("spec.targetRefs[%d].kind", i), "a policy with spec.service targets Gateways only: the service is the gateway's; put the %s's limits in a policy of their own", tr.Kind)
			}
		}
	}
	if m := s.DefaultMaxOutputTokens; m != nil {
		if *m == 0 || *m > MaxReservation {
			v.Errorf("spec.defaultMaxOutputTokens", "must be between 1 and %d", MaxReservation)
		}
		for i, tr := range s.TargetRefs {
			if tr.Kind != model.KindGateway {
				v.Errorf(fmt.Sprintf("spec.targetRefs[%d].kind", i), "spec.defaultMaxOutputTokens is a gateway setting (each Envoy reads request bodies once, for every route): set it in the gateway's policy")
				break
			}
		}
	}
	names := map[string]int{}
	for i, l := range s.Limits {
		path := fmt.Sprintf("spec.limits[%d]", i)
		switch {
		case !nameRE.MatchString(l.Name):
			v.Errorf(path+".name", "%q is not a limit name: lowercase letters, digits and '-', at most 63", l.Name)
		default:
			if j, dup := names[l.Name]; dup {
				v.Errorf(path+".name", "%q is already the name of spec.limits[%d]", l.Name, j)
			}
			names[l.Name] = i
		}
		validateLimit(v, path, l)
	}
	if lc := s.Local; lc != nil {
		if lc.Requests == 0 || lc.Requests > MaxBudget {
			v.Errorf("spec.local.requests", "must be between 1 and %d", uint64(MaxBudget))
		}
		validateUnit(v, "spec.local.per", lc.Per)
	}
}

func validateUnit(v *model.Validator, path, unit string) {
	if !slices.Contains(model.RateLimitUnits, unit) {
		v.Errorf(path, "%q is not a unit: use Second, Minute, Hour or Day", unit)
	}
}

func validateAmount(v *model.Validator, path string, n *uint64) {
	if n != nil && (*n == 0 || *n > MaxBudget) {
		v.Errorf(path, "must be between 1 and %d (the rate limit service stores budgets as 32-bit counts; use a shorter unit for more)", uint64(MaxBudget))
	}
}

func validateLimit(v *model.Validator, path string, l Limit) {
	switch {
	case l.Requests == nil && l.Tokens == nil:
		v.Errorf(path, "set requests or tokens")
	case l.Requests != nil && l.Tokens != nil:
		v.Errorf(path, "set requests or tokens, not both: make them two limits")
	}
	validateAmount(v, path+".requests", l.Requests)
	if t := l.Tokens; t != nil {
		if t.Input == nil && t.Output == nil && t.Total == nil {
			v.Errorf(path+".tokens", "set input, output or total")
		}
		validateAmount(v, path+".tokens.input", t.Input)
		validateAmount(v, path+".tokens.output", t.Output)
		validateAmount(v, path+".tokens.total", t.Total)
	}
	validateUnit(v, path+".per", l.Per)
	seen := map[string]int{}
	for i, k := range l.By {
		p := fmt.Sprintf("%s.by[%d]", path, i)
		if !slices.Contains(model.RateLimitKeys, k) {
			v.Errorf(p, "%q is not a key: use SPIFFEID, Namespace, ServiceAccount, SourceCIDR, Model, Route or Backend", k)
			continue
		}
		if j, dup := seen[k]; dup {
			v.Errorf(p, "%q is already listed at by[%d]", k, j)
		}
		seen[k] = i
	}
	_, bySource := seen[model.KeySourceCIDR]
	switch {
	case bySource && len(l.SourceCIDRs) == 0:
		v.Errorf(path+".sourceCIDRs", "is required with by: SourceCIDR: name the address groups to count")
	case !bySource && len(l.SourceCIDRs) > 0:
		v.Errorf(path+".sourceCIDRs", "counts nothing without SourceCIDR in by")
	}
	type span struct {
		p     netip.Prefix
		where string
	}
	var prefixes []span
	groups := map[string]int{}
	for i, g := range l.SourceCIDRs {
		gp := fmt.Sprintf("%s.sourceCIDRs[%d]", path, i)
		if !nameRE.MatchString(g.Name) {
			v.Errorf(gp+".name", "%q is not a group name: lowercase letters, digits and '-'", g.Name)
		} else if j, dup := groups[g.Name]; dup {
			v.Errorf(gp+".name", "%q is already the name of sourceCIDRs[%d]", g.Name, j)
		}
		groups[g.Name] = i
		if len(g.CIDRs) == 0 {
			v.Errorf(gp+".cidrs", "at least one CIDR is required")
		}
		for j, c := range g.CIDRs {
			cp := fmt.Sprintf("%s.cidrs[%d]", gp, j)
			pfx, err := netip.ParsePrefix(c)
			if err != nil || pfx.Masked() != pfx {
				v.Errorf(cp, "%q is not a CIDR with its host bits zero, such as 10.1.0.0/16", c)
				continue
			}
			for _, o := range prefixes {
				if o.p.Overlaps(pfx) {
					// Envoy's ip_tagging would give a client in both
					// groups both tags, one counter neither group has.
					v.Errorf(cp, "%s overlaps %s at %s: a client address must belong to one group at most", c, o.p, o.where)
				}
			}
			prefixes = append(prefixes, span{pfx, cp})
		}
	}
}

func boolOr(b *bool, def bool) bool {
	if b == nil {
		return def
	}
	return *b
}

func lower(ctx policy.Context, pol model.Policy, target model.Ref) {
	p := pol.(*RateLimitPolicy)
	ref := model.RefOf(p)
	s := &model.RateLimitSettings{Policy: ref, DefaultMaxOutputTokens: p.Spec.DefaultMaxOutputTokens}
	for i, l := range p.Spec.Limits {
		base := model.RateLimit{Policy: ref, Index: i, Name: l.Name, Group: l.Name, Unit: l.Per, Keys: model.SortKeys(l.By), Shadow: l.Shadow}
		if len(l.SourceCIDRs) > 0 {
			base.SourceCIDRs = map[string][]string{}
			for _, g := range l.SourceCIDRs {
				base.SourceCIDRs[g.Name] = slices.Clone(g.CIDRs)
			}
		}
		add := func(counts string, n *uint64) {
			if n == nil {
				return
			}
			rl := base
			rl.Counts, rl.Amount = counts, *n
			if counts != model.CountRequests {
				rl.Name = l.Name + "/" + counts
			}
			s.Limits = append(s.Limits, rl)
		}
		add(model.CountRequests, l.Requests)
		if t := l.Tokens; t != nil {
			add(model.CountInputTokens, t.Input)
			add(model.CountOutputTokens, t.Output)
			add(model.CountTotalTokens, t.Total)
		}
	}
	if lc := p.Spec.Local; lc != nil {
		s.Local = &model.LocalRateLimit{Policy: ref, Requests: lc.Requests, Unit: lc.Per}
	}
	for i, l := range p.Spec.Limits {
		for _, k := range l.By {
			if model.IdentityKey(k) {
				checkListeners(ctx, target, fmt.Sprintf("spec.limits[%d].by", i), k)
				break
			}
		}
	}
	switch target.Kind {
	case model.KindGateway:
		g := ctx.Index.Gateways[target]
		if g.Parent != nil && len(s.Limits) > 0 {
			ctx.Validator.Errorf("spec.limits", "%s is a Parent-mode gateway: its parent reaches the providers and counts their budgets; attach the limits to the parent (local limits are fine here)", target)
			return
		}
		if sv := p.Spec.Service; sv != nil {
			svc := lowerService(ctx, ref, sv)
			if svc == nil {
				return
			}
			g.RateLimitService = svc
		}
		g.RateLimits = s
	case model.KindBackend:
		ctx.Index.Backends[target].RateLimits = s
	case model.KindHTTPRoute:
		ctx.Index.Routes[target].RateLimits = s
	}
}

func lowerService(ctx policy.Context, ref model.Ref, sv *Service) *model.RateLimitService {
	svc := &model.RateLimitService{Policy: ref, Timeout: model.DefaultRateLimitTimeout, FailOpenRequests: true}
	if sv.Timeout != nil {
		svc.Timeout = sv.Timeout.Duration
	}
	if f := sv.FailOpen; f != nil {
		svc.FailOpenRequests = boolOr(f.Requests, true)
		svc.FailOpenTokens = boolOr(f.Tokens, false)
	}
	bref := sv.BackendRef.Resolve(model.KindBackend, ref.Namespace)
	b := ctx.Index.Backends[bref]
	if b == nil {
		if !ctx.Config.Invalid[bref] {
			ctx.Validator.Errorf("spec.service.backendRef.name", "%s does not exist", bref)
		}
		return nil
	}
	if b.Protocol == model.ProtocolHTTP1 {
		ctx.Validator.Errorf("spec.service.backendRef.name", "%s speaks HTTP/1.1, but the rate limit service is gRPC and needs HTTP/2: set its protocol to HTTP/2", bref)
		return nil
	}
	svc.Backend = b
	return svc
}

// checkListeners refuses an identity key where the client has no verified
// identity: every such client would share one counter.
func checkListeners(ctx policy.Context, target model.Ref, path, key string) {
	for _, g := range ctx.Config.Gateways {
		for _, l := range g.Listeners {
			if !serves(g, l, target) {
				continue
			}
			if ok, why := model.VerifiesClients(l); !ok {
				ctx.Validator.Errorf(path, "%s needs a verified client identity, but listener %s of %s %s: count by SourceCIDR there, or verify client certificates (GatewayTLSPolicy clientValidation)", key, l.Name, g.Ref, why)
				return
			}
		}
	}
}

// serves reports whether the listener serves the target: the gateway, a
// route attached to it, or a backend one of its routes uses.
func serves(g *model.GatewayConfig, l *model.ListenerConfig, target model.Ref) bool {
	switch target.Kind {
	case model.KindGateway:
		return g.Ref == target
	}
	for _, r := range l.Routes {
		if r.Ref == target {
			return true
		}
		for _, rule := range r.Rules {
			for _, wb := range rule.Backends {
				if wb.Backend.Ref == target {
					return true
				}
			}
		}
	}
	return false
}

// check refuses limits on a gateway that has no rate limit service to
// count them, naming the policy that declares them.
func check(cfg *model.Config, _ *policy.Index, report func(model.Ref) *model.Validator) {
	for _, g := range cfg.Gateways {
		if g.RateLimitService != nil {
			continue
		}
		reported := map[model.Ref]bool{}
		note := func(s *model.RateLimitSettings) {
			if s == nil || len(s.Limits) == 0 || reported[s.Policy] {
				return
			}
			reported[s.Policy] = true
			if g.Parent != nil {
				report(s.Policy).Errorf("spec.limits", "%s is a Parent-mode gateway: its parent reaches the providers and counts their budgets; attach the limits to the parent's routes or backends (local limits are fine here)", g.Ref)
				return
			}
			report(s.Policy).Errorf("spec.limits", "%s has no rate limit service to count these limits: give it a RateLimitPolicy with spec.service (or use spec.local for per-Envoy request limits)", g.Ref)
		}
		note(g.RateLimits)
		for _, l := range g.Listeners {
			for _, r := range l.Routes {
				note(r.RateLimits)
				for _, rule := range r.Rules {
					for _, wb := range rule.Backends {
						note(wb.Backend.RateLimits)
					}
				}
			}
		}
	}
}
