// Package guardrails is the GuardRailsPolicy. Today it holds the retry
// back-off defaults: at Gateway scope for every route of the gateway, at
// HTTPRoute scope overriding them field by field. (Model allow/deny lists,
// prompt patterns, PII redaction and body limits belong here too, later.)
package guardrails

import (
	"fmt"
	"slices"
	"time"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/policies/policy"
)

// KindName is the YAML kind.
const KindName = "GuardRailsPolicy"

// Kind registers the policy.
var Kind = policy.Kind{
	Name:   KindName,
	New:    func() model.Object { return &GuardRailsPolicy{} },
	Scopes: []string{model.KindGateway, model.KindHTTPRoute},
	ScopeReason: "guard rails are organisation or route posture; per-destination behaviour " +
		"belongs in QoSController or EgressPolicy",
	Lower: lower,
	Check: checkMerged,
}

// GuardRailsPolicy sets guard rails for gateways or routes.
type GuardRailsPolicy struct {
	model.Base `yaml:",inline"`
	Spec       Spec `yaml:"spec"`
}

// Spec of a GuardRailsPolicy.
type Spec struct {
	// TargetRefs are Gateways (defaults) or HTTPRoutes (overrides).
	TargetRefs []model.TargetRef `yaml:"targetRefs"`
	// Backoff says when and how requests are retried.
	Backoff *Backoff `yaml:"backoff,omitempty"`
}

// Backoff is the retry behaviour.
type Backoff struct {
	// Retries caps retries per request (default 2). 0 disables retries.
	Retries *uint32 `yaml:"retries,omitempty"`
	// RetryOn narrows the conditions. Safe ones: connect-failure,
	// refused-stream, reset-before-request, and the status codes in
	// statusCodes. Default: all safe ones.
	RetryOn []string `yaml:"retryOn,omitempty"`
	// StatusCodes are provider answers retried (default 429). A provider may
	// answer 503 after it ran the request; list 503 only for providers that
	// never do.
	StatusCodes []uint32 `yaml:"statusCodes,omitempty"`
	// BaseInterval and MaxInterval shape the exponential back-off
	// (default 250ms and 10× base).
	BaseInterval *model.Duration `yaml:"baseInterval,omitempty"`
	MaxInterval  *model.Duration `yaml:"maxInterval,omitempty"`
	// HonorRetryAfter waits as long as a provider's Retry-After header says
	// before retrying a 429 or 503 (default true).
	HonorRetryAfter *bool `yaml:"honorRetryAfter,omitempty"`
	// PerTryTimeout bounds each attempt. With safe retries a timed-out
	// attempt ends the request, since the provider may still be generating.
	PerTryTimeout *model.Duration `yaml:"perTryTimeout,omitempty"`
	// BufferLimit is how much of a request body each Envoy keeps so that
	// it can send the request again on a retry or fail-over (default 32Mi).
	// A larger body is sent once, to its first backend: it is neither
	// retried nor failed over.
	BufferLimit *model.ByteSize `yaml:"bufferLimit,omitempty"`
	// AllowUnsafeRetries permits 5xx, gateway-error, reset and
	// retriable-4xx in retryOn: conditions under which the provider may
	// already be running the request, so a retry can duplicate (and bill)
	// an inference. Only for idempotent, non-inference APIs.
	AllowUnsafeRetries bool `yaml:"allowUnsafeRetries,omitempty"`
}

// Targets implements model.Policy.
func (p *GuardRailsPolicy) Targets() []model.TargetRef { return p.Spec.TargetRefs }

// Validate implements model.Object.
func (p *GuardRailsPolicy) Validate(v *model.Validator) {
	model.ValidateTargetRefs(v, p.Spec.TargetRefs)
	b := p.Spec.Backoff
	if b == nil {
		v.Errorf("spec", "set backoff (the only guard rail tollgate supports so far)")
		return
	}
	if b.Retries != nil && *b.Retries > 10 {
		v.Errorf("spec.backoff.retries", "%d is more than 10: each retry costs the provider's capacity and the client's time", *b.Retries)
	}
	for i, c := range b.RetryOn {
		path := fmt.Sprintf("spec.backoff.retryOn[%d]", i)
		switch {
		case slices.Contains(model.SafeRetryOn, c):
		case slices.Contains(model.UnsafeRetryOn, c):
			if !b.AllowUnsafeRetries {
				v.Errorf(path, "%q may retry a request the provider already received and duplicate an inference; set allowUnsafeRetries: true only for idempotent APIs", c)
			}
		default:
			v.Errorf(path, "%q is not a retry condition: use %v (or, with allowUnsafeRetries, %v)", c, model.SafeRetryOn, model.UnsafeRetryOn)
		}
	}
	for i, code := range b.StatusCodes {
		if code < 400 || code > 599 {
			v.Errorf(fmt.Sprintf("spec.backoff.statusCodes[%d]", i), "%d is not an HTTP error status", code)
		}
	}
	if b.BaseInterval != nil && b.BaseInterval.Duration < time.Millisecond {
		v.Errorf("spec.backoff.baseInterval", "must be at least 1ms")
	}
	if b.MaxInterval != nil && b.MaxInterval.Duration <= 0 {
		v.Errorf("spec.backoff.maxInterval", "%s must be positive (Envoy refuses 0): leave it out for 10 times baseInterval", b.MaxInterval.Duration)
	} else if b.BaseInterval != nil && b.MaxInterval != nil && b.MaxInterval.Duration < b.BaseInterval.Duration {
		v.Errorf("spec.backoff.maxInterval", "%s must not be shorter than baseInterval (%s)", b.MaxInterval.Duration, b.BaseInterval.Duration)
	}
	if l := b.BufferLimit; l != nil && (l.Bytes < model.MinRetryBufferLimit || l.Bytes > model.MaxRetryBufferLimit) {
		v.Errorf("spec.backoff.bufferLimit", "%s must be from %s to %s: every Envoy may hold this much per request in flight", l, model.ByteSize{Bytes: model.MinRetryBufferLimit}, model.ByteSize{Bytes: model.MaxRetryBufferLimit})
	}
	if b.PerTryTimeout != nil && b.PerTryTimeout.Duration <= 0 {
		v.Errorf("spec.backoff.perTryTimeout", "must be positive")
	}
}

func lower(ctx policy.Context, pol model.Policy, target model.Ref) {
	p := pol.(*GuardRailsPolicy)
	b := p.Spec.Backoff
	r := &model.RetrySettings{
		Policy:               model.RefOf(p),
		NumRetries:           b.Retries,
		RetryOn:              b.RetryOn,
		RetriableStatusCodes: b.StatusCodes,
		BaseInterval:         b.BaseInterval.Ptr(),
		MaxInterval:          b.MaxInterval.Ptr(),
		PerTryTimeout:        b.PerTryTimeout.Ptr(),
		HonorRetryAfter:      b.HonorRetryAfter,
		BufferLimit:          b.BufferLimit.Ptr(),
		AllowUnsafe:          b.AllowUnsafeRetries,
	}
	switch target.Kind {
	case model.KindGateway:
		g := ctx.Index.Gateways[target]
		if g.Parent != nil {
			// A Parent-mode gateway retries only connection failures to its
			// parent; guard rails belong to the parent that reaches providers.
			ctx.Config.Conditions = append(ctx.Config.Conditions, model.Condition{
				Object: r.Policy.String(), Type: "Accepted", Status: false, Reason: "ParentModeGateway",
				Message: fmt.Sprintf("%s is in Parent mode: it only forwards to its parent and retries connection failures; attach the GuardRailsPolicy to the parent gateway", target),
			})
			return
		}
		g.Retry = r
	case model.KindHTTPRoute:
		ctx.Index.Routes[target].Retry = r
	}
}

// checkMerged refuses a back-off that only goes wrong once a route's
// settings are merged over its gateway's and tollgate's defaults: Envoy
// refuses a max_interval below the base_interval, and with it the whole
// route configuration of the gateway. Each policy is judged where it is
// the more specific scope of the pair, so the message names the field to
// change and where the other value comes from.
func checkMerged(cfg *model.Config, _ *policy.Index, report func(model.Ref) *model.Validator) {
	type key struct {
		policy model.Ref
		field  string
		msg    string
	}
	seen := map[key]bool{}
	fail := func(policy model.Ref, field, format string, args ...any) {
		k := key{policy, field, fmt.Sprintf(format, args...)}
		if seen[k] {
			return
		}
		seen[k] = true
		report(policy).Errorf(field, "%s", k.msg)
	}
	for _, g := range cfg.Gateways {
		if g.Parent != nil {
			continue // retries to a parent use fixed settings
		}
		checked := map[model.Ref]bool{}
		check := func(r *model.RetrySettings) {
			type origin struct {
				d      time.Duration
				policy *model.RetrySettings
				scope  model.Ref
			}
			base := origin{d: model.DefaultRetryBaseInterval}
			var max *origin
			for _, s := range []struct {
				s     *model.RetrySettings
				scope model.Ref
			}{{g.Retry, g.Ref}, {r, model.Ref{}}} {
				if s.s == nil {
					continue
				}
				if s.s.BaseInterval != nil {
					base = origin{d: *s.s.BaseInterval, policy: s.s, scope: s.scope}
				}
				if s.s.MaxInterval != nil {
					max = &origin{d: *s.s.MaxInterval, policy: s.s, scope: s.scope}
				}
			}
			if max == nil || max.d >= base.d || max.d <= 0 {
				return
			}
			if base.policy == max.policy {
				return // one policy: its own validation reports it
			}
			describe := func(o origin, field string) string {
				if o.policy == nil {
					return fmt.Sprintf("the default %s %s", field, o.d)
				}
				return fmt.Sprintf("%s %s of %s on %s", field, o.d, o.policy.Policy, g.Ref)
			}
			switch {
			case base.policy == nil || base.policy == g.Retry:
				// The maximum is the more specific one (or the base is the
				// default): shorten nothing, lengthen the maximum.
				fail(max.policy.Policy, "spec.backoff.maxInterval", "%s is shorter than %s: Envoy would refuse the routes of %s; set it to at least %s, or set baseInterval here too",
					max.d, describe(base, "baseInterval"), g.Ref, base.d)
			default:
				// The route's own base is longer than the gateway's maximum.
				fail(base.policy.Policy, "spec.backoff.baseInterval", "%s is longer than %s: Envoy would refuse the routes of %s; set maxInterval here too, or a shorter baseInterval",
					base.d, describe(*max, "maxInterval"), g.Ref)
			}
		}
		check(nil) // a route without a policy of its own gets the gateway's
		for _, l := range g.Listeners {
			for _, rc := range l.Routes {
				if checked[rc.Ref] {
					continue
				}
				checked[rc.Ref] = true
				check(rc.Retry)
			}
		}
	}
}
