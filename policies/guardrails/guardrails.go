// Package guardrails is the GuardRailsPolicy: the retry back-off
// (backoff) and the content guard rails of requests (models,
// maxOutputTokens, prompts, maxRequestBodySize). At Gateway scope they are
// the defaults of every route of the gateway; at HTTPRoute scope they
// override them field by field. (PII redaction belongs here too, later.)
package guardrails

import (
	"fmt"
	"slices"
	"strings"
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
	Check: func(cfg *model.Config, idx *policy.Index, report func(model.Ref) *model.Validator) {
		checkConflicts(cfg, idx, report)
		checkMerged(cfg, idx, report)
	},
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
	// Models says which models requests may ask for (the body's model
	// field; for Bedrock the model id in the path).
	Models *Models `yaml:"models,omitempty"`
	// MaxOutputTokens caps the output tokens a request may ask for.
	MaxOutputTokens *MaxOutputTokens `yaml:"maxOutputTokens,omitempty"`
	// Prompts refuses requests by what their prompt says.
	Prompts *Prompts `yaml:"prompts,omitempty"`
	// MaxRequestBodySize caps the request body, from 1Ki to 1Gi (e.g.
	// "4Mi"); a larger request is refused with 413 before it reaches a
	// provider.
	MaxRequestBodySize *model.ByteSize `yaml:"maxRequestBodySize,omitempty"`
}

// Models are the model allow and deny lists. A request is refused with
// 403 when its model matches a deny entry, or when allow is set and its
// model matches no allow entry; with allow set, a request that names no
// model is refused too. Deny wins: a model matched by both lists is
// refused. At HTTPRoute scope each list replaces the gateway's list of the
// same name and leaves the other one as the gateway has it: a route that
// sets only allow is still bound by the gateway's deny.
type Models struct {
	// Allow, when set, are the only models requests may ask for.
	Allow []model.ModelMatch `yaml:"allow,omitempty"`
	// Deny are models no request may ask for (the ModelDenyList).
	Deny []model.ModelMatch `yaml:"deny,omitempty"`
}

// MaxOutputTokens is a cap on the output tokens (max_tokens,
// max_completion_tokens, max_output_tokens, maxOutputTokens or maxTokens,
// as the API names it) a request asks for.
type MaxOutputTokens struct {
	// Limit is the most output tokens a request may ask for, 1 to
	// 2147483647.
	Limit *int64 `yaml:"limit"`
	// Action is what happens to a request that asks for more: Refuse
	// (default; answered 400) or Clamp (sent asking for limit).
	Action string `yaml:"action,omitempty"`
}

// Prompts are the prompt guard rails.
type Prompts struct {
	// Deny are RE2 patterns; a request whose prompt (messages, system
	// prompt, input) contains a match of any of them is refused with 403.
	// They are matched, unanchored, against the JSON text of the prompt
	// fields, so strings are JSON-escaped: a newline is \n, a quote \",
	// and a client may send non-ASCII letters as \uXXXX. ^ and $ mean the
	// start and end of that whole text, not of a message or a line: leave
	// them out. Matching is case-sensitive unless a pattern starts with
	// (?i). All patterns together are matched as one RE2 program, which
	// must fit Envoy's limit of 100 instructions: the match around them
	// takes about 25, and each character about one more (two under (?i)),
	// which leaves room for a few short phrases.
	Deny []string `yaml:"deny,omitempty"`
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
	s := &p.Spec
	if s.Backoff == nil && s.Models == nil && s.MaxOutputTokens == nil && s.Prompts == nil && s.MaxRequestBodySize == nil {
		v.Errorf("spec", "set at least one guard rail: backoff, models, maxOutputTokens, prompts or maxRequestBodySize")
		return
	}
	if s.Backoff != nil {
		validateBackoff(v, s.Backoff)
	}
	if s.Models != nil {
		validateModels(v, p)
	}
	if s.MaxOutputTokens != nil {
		validateMaxOutputTokens(v, s.MaxOutputTokens)
	}
	if s.Prompts != nil {
		validatePrompts(v, s.Prompts)
	}
	if l := s.MaxRequestBodySize; l != nil && (l.Bytes < model.MinRequestBodySize || l.Bytes > model.MaxRequestBodySize) {
		v.Errorf("spec.maxRequestBodySize", "%s must be from %s to %s: below that even a short chat request is refused, above it one request could exhaust an Envoy, which holds the body to read its model and prompt",
			l, model.ByteSize{Bytes: model.MinRequestBodySize}, model.ByteSize{Bytes: model.MaxRequestBodySize})
	}
}

func validateBackoff(v *model.Validator, b *Backoff) {
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
	var r *model.RetrySettings
	if b := p.Spec.Backoff; b != nil {
		r = &model.RetrySettings{
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
	}
	gr := content(p)
	switch target.Kind {
	case model.KindGateway:
		g := ctx.Index.Gateways[target]
		if g.Parent != nil {
			// A Parent-mode gateway retries only connection failures to its
			// parent, and checks no content: guard rails belong to the
			// parent that reaches providers.
			var does []string
			if r != nil {
				does = append(does, "retries connection failures")
			}
			if gr != nil {
				does = append(does, "checks no models, output tokens, prompts or body sizes (its parent does)")
			}
			ctx.Config.Conditions = append(ctx.Config.Conditions, model.Condition{
				Object: model.RefOf(p).String(), Type: "Accepted", Status: false, Reason: "ParentModeGateway",
				Message: fmt.Sprintf("%s is in Parent mode: it only forwards to its parent and %s; attach the GuardRailsPolicy to the parent gateway", target, strings.Join(does, ", and ")),
			})
			return
		}
		if r != nil {
			g.Retry = r
		}
		if gr != nil {
			g.GuardRails = gr
		}
	case model.KindHTTPRoute:
		rc := ctx.Index.Routes[target]
		if r != nil {
			rc.Retry = r
		}
		if gr != nil {
			rc.GuardRails = gr
		}
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
