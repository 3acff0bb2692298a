package model

import (
	"strings"
	"time"
)

// ProcessorSettings is one PayloadProcessor on a route: an external
// processor (Envoy's ext_proc) that sees, and may change, requests and
// responses (see policies/payloadprocessor).
//
// A route's Processors are sorted by Policy (Ref.Less), so that the
// listener's filters and the route's per-filter configs come out in one
// order whatever the order of the input files. The policy framework lets
// one PayloadProcessor target a route (a second one is Conflicted), so
// today the list holds at most one entry.
type ProcessorSettings struct {
	// Policy is the PayloadProcessor this comes from.
	Policy Ref
	// Backend runs the gRPC processor (envoy.service.ext_proc.v3); it
	// speaks HTTP/2. Its cluster is built like any backend's.
	Backend *BackendConfig

	// The phases the processor sees. Headers and trailers: whether each is
	// sent; bodies: one of the ProcessorBody* modes.
	RequestHeaders   bool
	RequestBody      string
	RequestTrailers  bool
	ResponseHeaders  bool
	ResponseBody     string
	ResponseTrailers bool

	// MessageTimeout bounds the processor's answer to each message.
	MessageTimeout time.Duration
	// MaxMessageTimeout is how far the processor may extend one message's
	// timeout (ProcessingResponse.override_message_timeout); zero: it may
	// not.
	MaxMessageTimeout time.Duration
	// FailOpen lets a request (or response) through unprocessed when the
	// processor cannot be reached, fails or times out; by default it is
	// refused (500, or 504 on a timeout).
	FailOpen bool
	// ObserveOnly sends the processor a copy of each phase and ignores its
	// answers (Envoy's observability_mode): it can change nothing, refuse
	// nothing and delay nothing.
	ObserveOnly bool

	// AllowHeaders, when set, are RE2 expressions (each matching a whole
	// lowercase header name): the only headers the processor may set or
	// remove. Empty: any header not denied.
	AllowHeaders []string
	// DenyHeaders are RE2 expressions of headers the processor may never
	// touch, on top of the ones tollgate always protects
	// (ProcessorProtectedHeaders).
	DenyHeaders []string
	// RefuseDisallowed answers a request whose processor tries a
	// disallowed header mutation with a 500 (Envoy's disallow_is_error);
	// otherwise the mutation is skipped and the request goes on.
	RefuseDisallowed bool
	// Body says the processor may replace bodies. Envoy cannot forbid it
	// (outside ObserveOnly), so false is refused at validation.
	Body bool
	// ImmediateResponse lets the processor answer the request itself
	// (ProcessingResponse.immediate_response: a guard rail's refusal, a
	// cache hit). When false Envoy ignores such an answer and, with it,
	// the processor for the rest of the request (disable_immediate_response).
	ImmediateResponse bool
}

// Body modes of a processor phase (Envoy's ProcessingMode.BodySendMode).
const (
	ProcessorBodyNone               = "None"
	ProcessorBodyBuffered           = "Buffered"
	ProcessorBodyStreamed           = "Streamed"
	ProcessorBodyBufferedPartial    = "BufferedPartial"
	ProcessorBodyFullDuplexStreamed = "FullDuplexStreamed"
)

// ProcessorBodyModes lists the body modes, in documentation order.
var ProcessorBodyModes = []string{ProcessorBodyNone, ProcessorBodyBuffered, ProcessorBodyStreamed, ProcessorBodyBufferedPartial, ProcessorBodyFullDuplexStreamed}

// Processor defaults (see the README's PayloadProcessor section).
const (
	// DefaultProcessorMessageTimeout replaces Envoy's 200ms default, which
	// a guard rail model or a redactor reading a large prompt routinely
	// exceeds; fail-closed, that would be a 504 on every slow answer.
	DefaultProcessorMessageTimeout = 5 * time.Second
	// MaxProcessorMessageTimeout caps messageTimeout and
	// maxMessageTimeout: a processor slower than a minute per message is
	// a stuck one, and the request holds its buffered body meanwhile.
	MaxProcessorMessageTimeout = time.Minute
)

// ProcessorProtectedHeaders is the RE2 expression (whole, lowercase name)
// of the headers no processor may set or remove, whatever its policy says:
// pseudo-headers (:authority, :path, :method, :scheme, :status), host,
// Envoy's and tollgate's internal headers, and credentials: any name
// ending in api-key, authorization or security-token, which covers every
// WorkloadCredentialHeaders entry (and proxy-authorization). [!-~] is
// printable ASCII, every character a header name may hold; it is far
// cheaper than "." in Envoy's RE2 program-size budget (MaxRegexProgramSize),
// which this expression and a policy's deny list share.
const ProcessorProtectedHeaders = `:[!-~]*|host|x-(?:envoy|tollgate)-[!-~]*|[!-~]*(?:api-key|authorization|security-token)`

// ProcessorAllowExpression is the allow_expression of a policy's allow
// list, which always admits content-length: in Buffered mode Envoy keeps
// the request's content-length and refuses (500) a body mutation whose
// length differs from it ("mismatch between content length and the length
// of the mutated body": ProcessorState::handleBodyResponse in
// source/extensions/filters/http/ext_proc/processor_state.cc), so a
// processor that may change the body must be able to correct it. A wrong
// value is refused by that same check.
func ProcessorAllowExpression(allow []string) string {
	return alternation(append(append([]string{}, allow...), "content-length"))
}

// ProcessorDenyExpression is the disallow_expression of a policy's deny
// list: the protected headers first, then the list.
func ProcessorDenyExpression(deny []string) string {
	return alternation(append([]string{ProcessorProtectedHeaders}, deny...))
}

func alternation(res []string) string {
	if len(res) == 1 {
		return res[0]
	}
	parts := make([]string, len(res))
	for i, r := range res {
		parts[i] = "(?:" + r + ")"
	}
	return strings.Join(parts, "|")
}
