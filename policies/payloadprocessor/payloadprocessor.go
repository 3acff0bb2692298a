// Package payloadprocessor is the PayloadProcessor policy: an external
// processor (Envoy's ext_proc filter, speaking the gRPC API
// envoy.service.ext_proc.v3.ExternalProcessor) that sees the requests and
// responses of the routes it targets and may change them, for what Envoy
// cannot do itself: PII redaction, an external guard rail service, a
// semantic cache.
//
// Scope: HTTPRoute only. What Envoy enforces and what it cannot (body
// mutations, immediate responses) is spelled out at each field, and in
// the README's PayloadProcessor section.
package payloadprocessor

import (
	"fmt"
	"regexp/syntax"
	"slices"
	"strings"
	"time"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/policies/policy"
)

// KindName is the YAML kind.
const KindName = "PayloadProcessor"

// Kind registers the policy.
var Kind = policy.Kind{
	Name:        KindName,
	New:         func() model.Object { return &PayloadProcessor{} },
	Scopes:      []string{model.KindHTTPRoute},
	ScopeReason: "processors are chosen per route: what a processor may see and change (a prompt, a completion) depends on the API and the data the route carries; a gateway-wide processor would also read routes it was not written for, and a backend is only known after the route is chosen",
	Lower:       lower,
}

// PayloadProcessor sends the requests (and responses) of the routes it
// targets to an external processor.
type PayloadProcessor struct {
	model.Base `yaml:",inline"`
	Spec       Spec `yaml:"spec"`
}

// Spec of a PayloadProcessor.
type Spec struct {
	// TargetRefs are HTTPRoutes.
	TargetRefs []model.TargetRef `yaml:"targetRefs"`
	// Service is the Backend running the processor.
	Service *Service `yaml:"service"`
	// Phases are the parts of the exchange the processor sees.
	Phases *Phases `yaml:"phases,omitempty"`
	// MessageTimeout bounds the processor's answer to each message
	// (default 5s; Envoy's own default of 200ms is too short for a guard
	// rail model or a redactor reading a large prompt). At most 1m.
	MessageTimeout *model.Duration `yaml:"messageTimeout,omitempty"`
	// MaxMessageTimeout lets the processor ask for more time on one
	// message (override_message_timeout), up to this; unset, it may not.
	// Not below messageTimeout, at most 1m.
	MaxMessageTimeout *model.Duration `yaml:"maxMessageTimeout,omitempty"`
	// FailOpen lets traffic through unprocessed when the processor cannot
	// be reached, fails or times out. Default false: the request is
	// refused (500; 504 on a timeout).
	FailOpen bool `yaml:"failOpen,omitempty"`
	// ObserveOnly sends the processor a copy and ignores its answers
	// (Envoy's observability_mode): it changes, refuses and delays
	// nothing. Bodies: None or Streamed only.
	ObserveOnly bool `yaml:"observeOnly,omitempty"`
	// Mutations are what the processor may change.
	Mutations *Mutations `yaml:"mutations,omitempty"`
}

// Service names the Backend of the processor.
type Service struct {
	// BackendRef is a Backend speaking HTTP/2 (gRPC).
	BackendRef model.LocalRef `yaml:"backendRef"`
}

// Phases are the parts of the exchange the processor sees.
type Phases struct {
	// RequestHeaders: default true.
	RequestHeaders *bool `yaml:"requestHeaders,omitempty"`
	// RequestBody: None, Buffered (default), Streamed, BufferedPartial or
	// FullDuplexStreamed.
	RequestBody string `yaml:"requestBody,omitempty"`
	// RequestTrailers: default false.
	RequestTrailers bool `yaml:"requestTrailers,omitempty"`
	// ResponseHeaders: default false.
	ResponseHeaders bool `yaml:"responseHeaders,omitempty"`
	// ResponseBody: same modes as requestBody; default None.
	ResponseBody string `yaml:"responseBody,omitempty"`
	// ResponseTrailers: default false.
	ResponseTrailers bool `yaml:"responseTrailers,omitempty"`
}

// Mutations are what the processor may change.
type Mutations struct {
	// Headers it may set or remove.
	Headers *HeaderMutations `yaml:"headers,omitempty"`
	// Body: whether it may replace bodies. Default true. Envoy has no
	// switch that stops a processor from replacing a body (even a
	// headers-only processor can, with CONTINUE_AND_REPLACE), so false
	// is refused: use observeOnly for a processor that may change nothing.
	Body *bool `yaml:"body,omitempty"`
	// ImmediateResponse: whether it may answer the request itself (a
	// guard rail's refusal, a cache hit). Default true. When false, Envoy
	// treats such an answer as a protocol error: it stops asking the
	// processor and lets the request go on unprocessed, even when the
	// policy fails closed.
	ImmediateResponse *bool `yaml:"immediateResponse,omitempty"`
}

// HeaderMutations restrict the headers a processor may set or remove.
// Whatever they say, tollgate's own, Envoy's, credential, host and
// pseudo-headers are never the processor's (model.ProcessorProtectedHeaders).
type HeaderMutations struct {
	// Allow, when set: RE2 expressions each matching a whole lowercase
	// header name; the processor may touch only those. Unset: any header
	// not denied.
	Allow []string `yaml:"allow,omitempty"`
	// Deny: RE2 expressions of headers it may never touch.
	Deny []string `yaml:"deny,omitempty"`
	// OnDisallowed is what a disallowed mutation does: Refuse (default;
	// the request gets a 500, Envoy's disallow_is_error) or Ignore (the
	// mutation is skipped, the request goes on).
	OnDisallowed string `yaml:"onDisallowed,omitempty"`
}

// What a disallowed header mutation does.
const (
	OnDisallowedRefuse = "Refuse"
	OnDisallowedIgnore = "Ignore"
)

// Targets implements model.Policy.
func (p *PayloadProcessor) Targets() []model.TargetRef { return p.Spec.TargetRefs }

// Validate implements model.Object.
func (p *PayloadProcessor) Validate(v *model.Validator) {
	s := &p.Spec
	model.ValidateTargetRefs(v, s.TargetRefs)
	switch {
	case s.Service == nil:
		v.Errorf("spec.service", "is required: the Backend of the processor (gRPC, envoy.service.ext_proc.v3.ExternalProcessor)")
	case s.Service.BackendRef.Name == "":
		v.Errorf("spec.service.backendRef.name", "is required: the Backend of the processor (gRPC)")
	}
	ph := effectivePhases(s.Phases)
	if s.Phases != nil {
		validateBodyMode(v, "spec.phases.requestBody", s.Phases.RequestBody)
		validateBodyMode(v, "spec.phases.responseBody", s.Phases.ResponseBody)
	}
	if !ph.RequestHeaders && ph.RequestBody == model.ProcessorBodyNone && !ph.RequestTrailers &&
		!ph.ResponseHeaders && ph.ResponseBody == model.ProcessorBodyNone && !ph.ResponseTrailers {
		v.Errorf("spec.phases", "sends the processor nothing: enable at least one phase")
	}
	// Envoy refuses these combinations (createFilterFactoryFromProto in
	// source/extensions/filters/http/ext_proc/config.cc).
	if ph.RequestBody == model.ProcessorBodyFullDuplexStreamed && !ph.RequestTrailers {
		v.Errorf("spec.phases.requestTrailers", "must be true with requestBody FullDuplexStreamed (Envoy sends the end of a full-duplex body with the trailers)")
	}
	if ph.ResponseBody == model.ProcessorBodyFullDuplexStreamed && !ph.ResponseTrailers {
		v.Errorf("spec.phases.responseTrailers", "must be true with responseBody FullDuplexStreamed (Envoy sends the end of a full-duplex body with the trailers)")
	}
	if s.FailOpen && (ph.RequestBody == model.ProcessorBodyFullDuplexStreamed || ph.ResponseBody == model.ProcessorBodyFullDuplexStreamed) {
		v.Errorf("spec.failOpen", "cannot be true with a FullDuplexStreamed body: Envoy cannot let a half-processed full-duplex body through")
	}
	validateTimeout(v, "spec.messageTimeout", s.MessageTimeout)
	validateTimeout(v, "spec.maxMessageTimeout", s.MaxMessageTimeout)
	if mt := s.MaxMessageTimeout; mt != nil && mt.Duration > 0 {
		if timeoutOf(s) > mt.Duration {
			v.Errorf("spec.maxMessageTimeout", "%s is below messageTimeout (%s): the processor could only ask for less time", mt.Duration, timeoutOf(s))
		}
	}
	if s.ObserveOnly {
		validateObserveOnly(v, s, ph)
		return
	}
	if m := s.Mutations; m != nil {
		if m.Body != nil && !*m.Body {
			v.Errorf("spec.mutations.body", "false cannot be enforced: Envoy's ext_proc lets any processor replace a body (a body response, or CONTINUE_AND_REPLACE on headers), and has no setting that forbids it except observability mode; set observeOnly: true for a processor that may change nothing, or leave body unset")
		}
		if h := m.Headers; h != nil {
			validateHeaderMutations(v, h)
		}
	}
}

func validateObserveOnly(v *model.Validator, s *Spec, ph model.ProcessorSettings) {
	if s.Mutations != nil {
		v.Errorf("spec.mutations", "an observeOnly processor's answers are ignored, so it can change nothing: remove mutations")
	}
	// observability_mode sends only STREAMED bodies (Filter::sendDataInObservabilityMode
	// in source/extensions/filters/http/ext_proc/ext_proc.cc logs an error
	// and sends nothing for any other mode).
	for path, mode := range map[string]string{"spec.phases.requestBody": ph.RequestBody, "spec.phases.responseBody": ph.ResponseBody} {
		if mode != model.ProcessorBodyNone && mode != model.ProcessorBodyStreamed && slices.Contains(model.ProcessorBodyModes, mode) {
			v.Errorf(path, "%s is not sent to an observeOnly processor: Envoy's observability mode streams bodies only (use Streamed or None)", mode)
		}
	}
	if s.MaxMessageTimeout != nil {
		v.Errorf("spec.maxMessageTimeout", "has no effect on an observeOnly processor: its answers, timeout requests included, are ignored")
	}
}

func validateBodyMode(v *model.Validator, path, mode string) {
	if mode != "" && !slices.Contains(model.ProcessorBodyModes, mode) {
		v.Errorf(path, "%q is not a body mode: use %s", mode, strings.Join(model.ProcessorBodyModes, ", "))
	}
}

func validateTimeout(v *model.Validator, path string, d *model.Duration) {
	if d == nil {
		return
	}
	switch {
	case d.Duration <= 0:
		v.Errorf(path, "must be positive (Envoy fires a zero timeout at once)")
	case d.Duration%time.Millisecond != 0:
		v.Errorf(path, "must be whole milliseconds")
	case d.Duration > model.MaxProcessorMessageTimeout:
		v.Errorf(path, "%s is more than %s: a processor that slow per message holds the request and its buffered body; split the work", d.Duration, model.MaxProcessorMessageTimeout)
	}
}

func validateHeaderMutations(v *model.Validator, h *HeaderMutations) {
	switch h.OnDisallowed {
	case "", OnDisallowedRefuse, OnDisallowedIgnore:
	default:
		v.Errorf("spec.mutations.headers.onDisallowed", "%q is not supported: use Refuse or Ignore", h.OnDisallowed)
	}
	if h.Allow != nil && len(h.Allow) == 0 {
		v.Errorf("spec.mutations.headers.allow", "is empty: that would allow nothing; leave it unset to allow any header not denied")
	}
	ok := true
	for name, list := range map[string][]string{"allow": h.Allow, "deny": h.Deny} {
		for i, re := range list {
			path := fmt.Sprintf("spec.mutations.headers.%s[%d]", name, i)
			if msg := headerRegexProblem(re); msg != "" {
				v.Errorf(path, "%s", msg)
				ok = false
			}
		}
	}
	if !ok {
		return
	}
	// Envoy compiles each list into one expression and refuses it, and
	// the whole listener, beyond its RE2 program-size limit.
	if len(h.Allow) > 0 {
		if n, _ := model.RegexProgramSize(model.ProcessorAllowExpression(h.Allow)); n > model.MaxRegexProgramSize {
			v.Errorf("spec.mutations.headers.allow", "compiles to an RE2 program of about %d instructions, more than Envoy's limit of %d: use fewer or simpler expressions (a prefix such as x-pii-[!-~]* is far cheaper than x-pii-.*)", n, model.MaxRegexProgramSize)
		}
	}
	if n, _ := model.RegexProgramSize(model.ProcessorDenyExpression(h.Deny)); n > model.MaxRegexProgramSize {
		v.Errorf("spec.mutations.headers.deny", "together with the headers tollgate always protects, compiles to an RE2 program of about %d instructions, more than Envoy's limit of %d: use fewer or simpler expressions ([!-~]* is far cheaper than .*)", n, model.MaxRegexProgramSize)
	}
}

// headerRegexProblem says why re cannot be a header-name expression, or "".
func headerRegexProblem(re string) string {
	if re == "" {
		return "is empty"
	}
	parsed, err := syntax.Parse(re, syntax.Perl)
	if err != nil {
		return fmt.Sprintf("%q is not an RE2 regular expression: %v", re, err)
	}
	if n, _ := model.RegexProgramSize(re); n > model.MaxRegexProgramSize {
		return fmt.Sprintf("%q compiles to an RE2 program of about %d instructions, more than Envoy's limit of %d: simplify it", re, n, model.MaxRegexProgramSize)
	}
	if hasUpper(parsed) {
		return fmt.Sprintf("%q has capital letters: Envoy matches the lowercase header name, so they never match", re)
	}
	return ""
}

// hasUpper reports whether a literal of the expression holds a capital
// letter (case-sensitively).
func hasUpper(re *syntax.Regexp) bool {
	if re.Op == syntax.OpLiteral && re.Flags&syntax.FoldCase == 0 {
		for _, r := range re.Rune {
			if r >= 'A' && r <= 'Z' {
				return true
			}
		}
	}
	for _, sub := range re.Sub {
		if hasUpper(sub) {
			return true
		}
	}
	return false
}

func timeoutOf(s *Spec) time.Duration {
	if s.MessageTimeout != nil {
		return s.MessageTimeout.Duration
	}
	return model.DefaultProcessorMessageTimeout
}

// effectivePhases applies the phase defaults: request headers and the
// whole request body (Buffered), nothing of the response.
//
// Why Buffered: a processor is deployed for the payload, and the prompt
// is one JSON document that a redactor or a guard rail must read whole (a
// streamed chunk may split a phone number, or the JSON, in two). Envoy
// buffers the request body up to the route's request_body_buffer_limit,
// which tollgate always sets (GuardRailsPolicy backoff.bufferLimit,
// default 32 MiB), so the 1 MiB listener default that turns a buffered
// body into a 413 does not apply. Responses default to None: chat
// completions stream, and buffering them would hold every token back to
// the end.
func effectivePhases(p *Phases) model.ProcessorSettings {
	ph := model.ProcessorSettings{RequestHeaders: true, RequestBody: model.ProcessorBodyBuffered, ResponseBody: model.ProcessorBodyNone}
	if p == nil {
		return ph
	}
	if p.RequestHeaders != nil {
		ph.RequestHeaders = *p.RequestHeaders
	}
	if p.RequestBody != "" {
		ph.RequestBody = p.RequestBody
	}
	if p.ResponseBody != "" {
		ph.ResponseBody = p.ResponseBody
	}
	ph.RequestTrailers, ph.ResponseHeaders, ph.ResponseTrailers = p.RequestTrailers, p.ResponseHeaders, p.ResponseTrailers
	return ph
}

func lower(ctx policy.Context, pol model.Policy, target model.Ref) {
	p := pol.(*PayloadProcessor)
	s := &p.Spec
	ref := model.RefOf(p)
	for _, g := range ctx.Config.Gateways {
		for _, l := range g.Listeners {
			if g.Parent != nil && hasRoute(l, target) {
				ctx.Validator.Errorf(ctx.Path+".name", "%s is served by %s, a Parent-mode gateway, which cannot run processors yet: attach the processor to the route on the parent", target, g.Ref)
				return
			}
		}
	}
	bref := s.Service.BackendRef.Resolve(model.KindBackend, ref.Namespace)
	b := ctx.Index.Backends[bref]
	if b == nil {
		if !ctx.Config.Invalid[bref] {
			ctx.Validator.Errorf("spec.service.backendRef.name", "%s does not exist", bref)
		}
		return
	}
	if b.Protocol == model.ProtocolHTTP1 {
		ctx.Validator.Errorf("spec.service.backendRef.name", "%s speaks HTTP/1.1, but the processor is a gRPC service (envoy.service.ext_proc.v3) and needs HTTP/2: set its protocol to HTTP/2", bref)
		return
	}
	ps := effectivePhases(s.Phases)
	ps.Policy, ps.Backend = ref, b
	ps.MessageTimeout = timeoutOf(s)
	if s.MaxMessageTimeout != nil {
		ps.MaxMessageTimeout = s.MaxMessageTimeout.Duration
	}
	ps.FailOpen, ps.ObserveOnly = s.FailOpen, s.ObserveOnly
	ps.Body, ps.ImmediateResponse, ps.RefuseDisallowed = !s.ObserveOnly, !s.ObserveOnly, true
	if m := s.Mutations; m != nil {
		if m.ImmediateResponse != nil {
			ps.ImmediateResponse = *m.ImmediateResponse
		}
		if h := m.Headers; h != nil {
			ps.AllowHeaders = slices.Clone(h.Allow)
			ps.DenyHeaders = slices.Clone(h.Deny)
			ps.RefuseDisallowed = h.OnDisallowed != OnDisallowedIgnore
		}
	}
	r := ctx.Index.Routes[target]
	r.Processors = append(r.Processors, &ps)
	slices.SortFunc(r.Processors, func(a, b *model.ProcessorSettings) int {
		switch {
		case a.Policy.Less(b.Policy):
			return -1
		case b.Policy.Less(a.Policy):
			return 1
		}
		return 0
	})
}

func hasRoute(l *model.ListenerConfig, route model.Ref) bool {
	for _, r := range l.Routes {
		if r.Ref == route {
			return true
		}
	}
	return false
}
