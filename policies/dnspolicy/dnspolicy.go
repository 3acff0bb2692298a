// Package dnspolicy is the DNSPolicy: how a gateway's Envoys resolve the
// backends they reach (resolvers, refresh and TTL, address family), and
// reverse-DNS verification of a backend's addresses.
//
// At Gateway scope a DNSPolicy sets defaults for every backend that
// gateway's routes reach; at Backend scope it overrides them, field by
// field. A backend reached by several gateways is resolved by each
// gateway's Envoys with that gateway's defaults.
//
// Reverse DNS is checked by tollgate, not by Envoy: the store resolves the
// backend's hostname, keeps the addresses whose PTR names end in an allowed
// suffix and resolve back to the address, and hands the result to lowering
// as data. Verified addresses are served to Envoy over EDS (Envoy then
// resolves nothing for that backend; SNI, certificate name and Host stay
// the hostname). When none verifies the backend is not served: it gets a
// Programmed=False condition and its routes answer 503.
package dnspolicy

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/policies/policy"
)

// KindName is the YAML kind.
const KindName = "DNSPolicy"

// Kind registers the policy.
var Kind = policy.Kind{
	Name:        KindName,
	New:         func() model.Object { return &DNSPolicy{} },
	Scopes:      []string{model.KindGateway, model.KindBackend},
	ScopeReason: "names are resolved per destination, with a gateway's defaults; a route resolves nothing",
	Lower:       lower,
}

// DNSPolicy controls how the backends it targets, or the backends the
// gateways it targets reach, are resolved.
type DNSPolicy struct {
	model.Base `yaml:",inline"`
	Spec       Spec `yaml:"spec"`
}

// Spec of a DNSPolicy. Every field is optional; unset fields keep the
// gateway's default (for a Backend target) or Envoy's.
type Spec struct {
	// TargetRefs are Gateways (defaults for every backend their routes
	// reach) or Backends (overrides, field by field).
	TargetRefs []model.TargetRef `yaml:"targetRefs"`
	// Resolvers replace the Envoy host's resolvers (/etc/resolv.conf):
	// "ip" or "ip:port" ("[ipv6]:port"), port 53 by default, asked in
	// order. A Backend's list replaces its gateway's; it is not merged.
	Resolvers []string `yaml:"resolvers,omitempty"`
	// RefreshRate is how often Envoy re-resolves the hostname (Envoy's
	// default: 5s); with reverseDNS, how often tollgate re-verifies it
	// (default 60s, at least 1s).
	RefreshRate *model.Duration `yaml:"refreshRate,omitempty"`
	// RespectTTL makes Envoy re-resolve when the records' TTL expires
	// instead of every refreshRate.
	RespectTTL *bool `yaml:"respectTTL,omitempty"`
	// MinRefreshRate is the floor of a TTL-derived refresh rate (at least
	// 1s), against records with tiny TTLs.
	MinRefreshRate *model.Duration `yaml:"minRefreshRate,omitempty"`
	// AddressFamily picks the addresses used: IPv4, IPv6, IPv4Preferred
	// (the default: A records if there are any, else AAAA), IPv6Preferred
	// (the reverse) or Any (both; Envoy tries them in turn).
	AddressFamily string `yaml:"addressFamily,omitempty"`
	// ReverseDNS makes tollgate verify the backend's addresses before
	// Envoy may use them. Backend targets only.
	ReverseDNS *ReverseDNS `yaml:"reverseDNS,omitempty"`
}

// ReverseDNS is forward-confirmed reverse DNS: an address of the backend
// is used only if one of its PTR names ends in an allowed suffix and
// resolves back to the address.
type ReverseDNS struct {
	// AllowedSuffixes are domains such as .openai.com; a PTR name matches
	// when it is the domain or ends in "." + the domain, ignoring case. A
	// leading dot is optional.
	AllowedSuffixes []string `yaml:"allowedSuffixes"`
}

// Targets implements model.Policy.
func (p *DNSPolicy) Targets() []model.TargetRef { return p.Spec.TargetRefs }

var families = []string{model.FamilyIPv4, model.FamilyIPv6, model.FamilyIPv4Preferred, model.FamilyIPv6Preferred, model.FamilyAny}

// Validate implements model.Object.
func (p *DNSPolicy) Validate(v *model.Validator) {
	s := &p.Spec
	model.ValidateTargetRefs(v, s.TargetRefs)
	if s.Resolvers == nil && s.RefreshRate == nil && s.RespectTTL == nil && s.MinRefreshRate == nil && s.AddressFamily == "" && s.ReverseDNS == nil {
		v.Errorf("spec", "sets nothing: set resolvers, refreshRate, respectTTL, minRefreshRate, addressFamily or reverseDNS")
	}
	if s.Resolvers != nil && len(s.Resolvers) == 0 {
		v.Errorf("spec.resolvers", "must list at least one resolver (leave it out to keep the defaults)")
	}
	seen := map[string]int{}
	for i, r := range s.Resolvers {
		path := fmt.Sprintf("spec.resolvers[%d]", i)
		a, err := ParseResolver(r)
		if err != nil {
			v.Errorf(path, "%q must be an IP address with an optional port, such as 10.0.0.2, 10.0.0.2:5353 or [2001:db8::53]:53", r)
			continue
		}
		if j, dup := seen[a.String()]; dup {
			v.Errorf(path, "%q is already listed at spec.resolvers[%d]", r, j)
			continue
		}
		seen[a.String()] = i
	}
	if d := s.RefreshRate; d != nil {
		switch {
		case d.Duration <= time.Millisecond:
			v.Errorf("spec.refreshRate", "must be more than 1ms (Envoy's minimum)")
		case d.Duration%time.Millisecond != 0:
			v.Errorf("spec.refreshRate", "must be whole milliseconds")
		case s.ReverseDNS != nil && d.Duration < time.Second:
			v.Errorf("spec.refreshRate", "must be at least 1s with reverseDNS: tollgate re-verifies the backend at this rate")
		}
	}
	if d := s.MinRefreshRate; d != nil {
		if d.Duration < time.Second {
			v.Errorf("spec.minRefreshRate", "must be at least 1s (Envoy's minimum)")
		}
		if s.RespectTTL != nil && !*s.RespectTTL {
			v.Errorf("spec.minRefreshRate", "has no effect with respectTTL: false: it is the floor of the TTL-derived refresh rate")
		}
	}
	if s.AddressFamily != "" && !contains(families, s.AddressFamily) {
		v.Errorf("spec.addressFamily", "%q is not supported: use %s", s.AddressFamily, strings.Join(families, ", "))
	}
	if r := s.ReverseDNS; r != nil {
		if len(r.AllowedSuffixes) == 0 {
			v.Errorf("spec.reverseDNS.allowedSuffixes", "at least one suffix is required, such as .openai.com")
		}
		for i, suffix := range r.AllowedSuffixes {
			if _, ok := NormalizeSuffix(suffix); !ok {
				v.Errorf(fmt.Sprintf("spec.reverseDNS.allowedSuffixes[%d]", i), "%q must be a domain of at least two labels, such as .openai.com (a single label such as .com would accept anyone's PTR)", suffix)
			}
		}
		for i, t := range s.TargetRefs {
			if t.Kind == model.KindGateway {
				v.Errorf("spec.reverseDNS", "is only allowed on a policy that targets Backends, and spec.targetRefs[%d] is a Gateway: allowed suffixes name one destination's domain (put reverseDNS in a DNSPolicy for the Backend)", i)
				break
			}
		}
		if s.RespectTTL != nil && *s.RespectTTL {
			v.Errorf("spec.respectTTL", "has no effect with reverseDNS: Envoy connects to the verified addresses without resolving, and tollgate re-verifies them every refreshRate")
		}
		if s.MinRefreshRate != nil {
			v.Errorf("spec.minRefreshRate", "has no effect with reverseDNS: Envoy connects to the verified addresses without resolving, and tollgate re-verifies them every refreshRate")
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// ParseResolver parses "ip" or "ip:port" ("[ipv6]:port"); the port
// defaults to 53.
func ParseResolver(s string) (model.Address, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		if ap.Port() == 0 || ap.Addr().Zone() != "" {
			return model.Address{}, fmt.Errorf("invalid resolver %q", s)
		}
		return model.Address{IP: ap.Addr().Unmap().String(), Port: uint32(ap.Port())}, nil
	}
	ip, err := netip.ParseAddr(s)
	if err != nil || ip.Zone() != "" {
		return model.Address{}, fmt.Errorf("invalid resolver %q", s)
	}
	return model.Address{IP: ip.Unmap().String(), Port: 53}, nil
}

// NormalizeSuffix lowercases a suffix and drops its leading and trailing
// dots; ok is false unless the rest is a DNS name of two labels or more.
func NormalizeSuffix(s string) (string, bool) {
	n := strings.TrimSuffix(strings.TrimPrefix(strings.ToLower(s), "."), ".")
	return n, model.ValidHostname(n) && strings.Contains(n, ".")
}

// settings are the policy's fields as the model's DNS settings. Validate
// has already checked every value.
func (p *DNSPolicy) settings() model.DNSSettings {
	s := &p.Spec
	out := model.DNSSettings{RespectTTL: s.RespectTTL, AddressFamily: s.AddressFamily}
	for _, r := range s.Resolvers {
		if a, err := ParseResolver(r); err == nil {
			out.Resolvers = append(out.Resolvers, a)
		}
	}
	out.RefreshRate = s.RefreshRate.Ptr()
	out.MinRefreshRate = s.MinRefreshRate.Ptr()
	return out
}

// check is the verification p asks for on backend b. tollgate uses the
// resolvers and address family of this policy (its own host's resolvers
// and IPv4Preferred by default), not the gateways' defaults: those tell
// the gateways' Envoys how to resolve, and Envoy resolves nothing for a
// verified backend.
func (p *DNSPolicy) check(b *model.BackendConfig) model.ReverseDNSCheck {
	s := p.settings()
	c := model.ReverseDNSCheck{
		Hostname:  b.Hostname,
		Resolvers: s.Resolvers,
		Family:    s.AddressFamily,
		Interval:  model.DefaultReverseDNSRefresh,
	}
	if c.Family == "" {
		c.Family = model.DefaultAddressFamily
	}
	if s.RefreshRate != nil {
		c.Interval = *s.RefreshRate
	}
	for _, suffix := range p.Spec.ReverseDNS.AllowedSuffixes {
		if n, ok := NormalizeSuffix(suffix); ok && !contains(c.AllowedSuffixes, n) {
			c.AllowedSuffixes = append(c.AllowedSuffixes, n)
		}
	}
	return c
}

// static reports whether the backend has static addresses: nothing
// resolves its name.
func static(b *model.BackendConfig) bool {
	return b.Backend != nil && len(b.Backend.Spec.Addresses) > 0
}

// Checks lists the reverse-DNS verifications the DNSPolicies of cfg ask
// for, one per backend, by the same rule lowering uses to pick the policy
// that applies to a backend (the first by identity). The store runs them
// and hands the results to lowering.
func Checks(cfg *model.Config) []model.ReverseDNSCheck {
	// Only the backends are looked up, and only once a DNSPolicy is seen:
	// this runs on every change, and most configurations have none.
	var backends map[model.Ref]*model.BackendConfig
	claimed := map[model.Ref]bool{}
	var out []model.ReverseDNSCheck
	for _, o := range cfg.Objects {
		p, ok := o.(*DNSPolicy)
		if !ok {
			continue
		}
		if backends == nil {
			backends = make(map[model.Ref]*model.BackendConfig, len(cfg.Backends))
			for _, b := range cfg.Backends {
				backends[b.Ref] = b
			}
		}
		ns := model.RefOf(p).Namespace
		for _, t := range p.Spec.TargetRefs {
			if t.Kind != model.KindBackend {
				continue
			}
			r := t.Ref(ns)
			b := backends[r]
			if b == nil || claimed[r] {
				continue
			}
			claimed[r] = true
			if p.Spec.ReverseDNS != nil && !static(b) && b.Hostname != "" {
				out = append(out, p.check(b))
			}
		}
	}
	return out
}

func lower(ctx policy.Context, pol model.Policy, target model.Ref) {
	p := pol.(*DNSPolicy)
	s := p.settings()
	switch target.Kind {
	case model.KindGateway:
		g := ctx.Index.Gateways[target]
		ref := model.RefOf(p)
		g.DNSPolicy = &ref
		for _, l := range g.Listeners {
			for _, r := range l.Routes {
				for _, rule := range r.Rules {
					for _, wb := range rule.Backends {
						b := wb.Backend
						if static(b) {
							continue
						}
						if b.DNS.Gateways == nil {
							b.DNS.Gateways = map[model.Ref]model.DNSSettings{}
						}
						b.DNS.Gateways[target] = s
					}
				}
			}
		}
	case model.KindBackend:
		b := ctx.Index.Backends[target]
		if static(b) {
			ctx.Validator.Errorf(ctx.Path, "%s has static addresses (spec.addresses), so no name is resolved for it: remove this target", target)
			return
		}
		ref := model.RefOf(p)
		b.DNS.Policy = &ref
		b.DNS.Backend = s
		if p.Spec.ReverseDNS != nil {
			verify(ctx, p, b)
		}
	}
}

// verify applies the reverse-DNS result the store found for b: the
// verified addresses become the backend's endpoints; without any, the
// backend is not served.
func verify(ctx policy.Context, p *DNSPolicy, b *model.BackendConfig) {
	c := p.check(b)
	st := &model.ReverseDNSState{Policy: model.RefOf(p), Check: c, Result: ctx.ReverseDNS[c.Key()]}
	b.DNS.ReverseDNS = st
	suffixes := "." + strings.Join(c.AllowedSuffixes, ", .")
	cond := model.Condition{Object: b.Ref.String(), Type: "Programmed"}
	switch r := st.Result; {
	case r == nil:
		b.Unavailable = fmt.Sprintf("the reverse DNS of %s has not been verified", b.Hostname)
		cond.Reason = "ReverseDNSNotVerified"
		cond.Message = fmt.Sprintf("%s asks for reverse-DNS verification of %s (allowed suffixes %s), which did not run: this tollgate resolves no names "+
			"(tollgate validate never does; tollgate serve verifies before serving). Unverified, the backend is not served and its routes answer 503",
			st.Policy, b.Hostname, suffixes)
	case len(r.Verified) == 0:
		b.Unavailable = fmt.Sprintf("no address of %s passed reverse-DNS verification", b.Hostname)
		cond.Reason = "ReverseDNSFailed"
		cond.Message = fmt.Sprintf("reverse DNS of %s (allowed suffixes %s): %s. No address verified: the backend is not served and its routes answer 503",
			b.Hostname, suffixes, r.Describe())
	default:
		b.Addresses = nil
		for _, ip := range r.Verified {
			b.Addresses = append(b.Addresses, model.Address{IP: ip, Port: b.Port})
		}
		cond.Status = true
		cond.Reason = "ReverseDNSVerified"
		cond.Message = fmt.Sprintf("reverse DNS of %s (allowed suffixes %s): %s. Envoy connects to %s only",
			b.Hostname, suffixes, r.Describe(), strings.Join(r.Verified, ", "))
	}
	ctx.Config.Conditions = append(ctx.Config.Conditions, cond)
}
