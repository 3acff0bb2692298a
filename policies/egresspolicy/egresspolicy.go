// Package egresspolicy is the EgressPolicy: per-backend timeouts,
// connection limits, and which workloads may use the backend.
package egresspolicy

import (
	"fmt"
	"net"
	"time"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/policies/policy"
)

// KindName is the YAML kind.
const KindName = "EgressPolicy"

// Kind registers the policy.
var Kind = policy.Kind{
	Name:        KindName,
	New:         func() model.Object { return &EgressPolicy{} },
	Scopes:      []string{model.KindBackend},
	ScopeReason: "timeouts, limits and access are settings of one destination",
	Lower:       lower,
	Finish:      finish,
}

// EgressPolicy sets how a gateway uses the backends it targets.
type EgressPolicy struct {
	model.Base `yaml:",inline"`
	Spec       Spec `yaml:"spec"`
}

// Spec of an EgressPolicy.
type Spec struct {
	// TargetRefs are Backends.
	TargetRefs []model.TargetRef `yaml:"targetRefs"`
	// Timeouts for requests to the backend.
	Timeouts *Timeouts `yaml:"timeouts,omitempty"`
	// ConnectionLimits cap what one Envoy opens to the backend (Envoy
	// circuit breakers); excess requests fail fast with 503.
	ConnectionLimits *ConnectionLimits `yaml:"connectionLimits,omitempty"`
	// AllowedSources restricts which workloads may use the backend; others
	// get 403.
	AllowedSources *AllowedSources `yaml:"allowedSources,omitempty"`
}

// Timeouts of a backend. Defaults suit streamed completions.
type Timeouts struct {
	// Connect bounds the TCP and TLS handshake (default 10s).
	Connect *model.Duration `yaml:"connect,omitempty"`
	// Request bounds a whole request, streaming included (default 300s);
	// a route rule's own timeouts.request wins.
	Request *model.Duration `yaml:"request,omitempty"`
	// Idle closes an upstream connection with no active request after this
	// long (Envoy default 1h).
	Idle *model.Duration `yaml:"idle,omitempty"`
	// StreamIdle resets a request with no byte in either direction for
	// this long (Envoy default 5m): a stalled stream, not a slow one.
	StreamIdle *model.Duration `yaml:"streamIdle,omitempty"`
}

// ConnectionLimits are per-Envoy caps.
type ConnectionLimits struct {
	MaxConnections     *uint32 `yaml:"maxConnections,omitempty"`
	MaxPendingRequests *uint32 `yaml:"maxPendingRequests,omitempty"`
	MaxRequests        *uint32 `yaml:"maxRequests,omitempty"`
}

// AllowedSources are the workloads that may use a backend.
type AllowedSources struct {
	// CIDRs of workload addresses, as the gateway sees them.
	CIDRs []string `yaml:"cidrs"`
}

// Targets implements model.Policy.
func (p *EgressPolicy) Targets() []model.TargetRef { return p.Spec.TargetRefs }

// Validate implements model.Object.
func (p *EgressPolicy) Validate(v *model.Validator) {
	s := &p.Spec
	model.ValidateTargetRefs(v, s.TargetRefs)
	if t := s.Timeouts; t != nil {
		if t.Connect != nil && t.Connect.Duration <= 0 {
			v.Errorf("spec.timeouts.connect", "must be positive")
		}
		if t.Connect != nil && t.Connect.Duration%time.Millisecond != 0 {
			v.Errorf("spec.timeouts.connect", "must be whole milliseconds")
		}
	}
	if l := s.ConnectionLimits; l != nil {
		for name, val := range map[string]*uint32{"maxConnections": l.MaxConnections, "maxPendingRequests": l.MaxPendingRequests, "maxRequests": l.MaxRequests} {
			if val != nil && *val == 0 {
				v.Errorf("spec.connectionLimits."+name, "must be at least 1 (0 would refuse every request)")
			}
		}
	}
	if a := s.AllowedSources; a != nil {
		if len(a.CIDRs) == 0 {
			v.Errorf("spec.allowedSources.cidrs", "at least one CIDR is required (to block a backend, remove its routes)")
		}
		for i, c := range a.CIDRs {
			if _, _, err := net.ParseCIDR(c); err != nil {
				v.Errorf(fmt.Sprintf("spec.allowedSources.cidrs[%d]", i), "%q is not a CIDR such as 10.0.0.0/8", c)
			}
		}
	}
}

func lower(ctx policy.Context, pol model.Policy, target model.Ref) {
	p := pol.(*EgressPolicy)
	b := ctx.Index.Backends[target]
	ref := model.RefOf(p)
	e := model.EgressSettings{Policy: &ref}
	if t := p.Spec.Timeouts; t != nil {
		e.ConnectTimeout = t.Connect.Ptr()
		e.RequestTimeout = t.Request.Ptr()
		e.IdleTimeout = t.Idle.Ptr()
		e.StreamIdleTimeout = t.StreamIdle.Ptr()
	}
	if l := p.Spec.ConnectionLimits; l != nil {
		e.MaxConnections, e.MaxPendingRequests, e.MaxRequests = l.MaxConnections, l.MaxPendingRequests, l.MaxRequests
	}
	if a := p.Spec.AllowedSources; a != nil {
		e.AllowedSourceCIDRs = a.CIDRs
	}
	b.Egress = e
}

// envoyStreamIdleTimeout is Envoy's default stream idle timeout (the HCM's
// stream_idle_timeout), which applies to backends that set none.
const envoyStreamIdleTimeout = 5 * time.Minute

// finish derives rule settings from the backends a rule reaches. A request
// may go to any of them, so a rule without its own request timeout takes
// the longest of its backends' (a backend without an EgressPolicy timeout
// counts at the default), and likewise the stream idle timeout; and a rule
// must satisfy the source restrictions of every backend it reaches.
func finish(cfg *model.Config, idx *policy.Index) {
	for _, r := range idx.Routes {
		for _, rule := range r.Rules {
			var req, idle time.Duration
			anyReq, anyIdle := false, false
			rule.AllowedSources = nil
			for i, wb := range rule.Backends {
				e := wb.Backend.Egress
				t, set := model.DefaultRequestTimeout, e.RequestTimeout != nil
				if set {
					t = *e.RequestTimeout
				}
				anyReq = anyReq || set
				if i == 0 || longer(t, req) {
					req = t
				}
				it, iset := envoyStreamIdleTimeout, e.StreamIdleTimeout != nil
				if iset {
					it = *e.StreamIdleTimeout
				}
				anyIdle = anyIdle || iset
				if i == 0 || longer(it, idle) {
					idle = it
				}
				if len(e.AllowedSourceCIDRs) > 0 {
					rule.AllowedSources = append(rule.AllowedSources, model.SourceRestriction{Policy: *e.Policy, CIDRs: e.AllowedSourceCIDRs})
				}
			}
			if !rule.TimeoutSet && anyReq {
				rule.Timeout = req
			}
			rule.StreamIdleTimeout = nil
			if anyIdle {
				rule.StreamIdleTimeout = &idle
			}
		}
	}
}

// longer compares timeouts where 0 means no limit.
func longer(a, b time.Duration) bool {
	switch {
	case b == 0:
		return false
	case a == 0:
		return true
	}
	return a > b
}
