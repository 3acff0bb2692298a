package payloadprocessor_test

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/policies"
)

const base = `apiVersion: tollgate.dev/v1alpha1
kind: Gateway
metadata: {name: egress}
spec:
  listeners: [{name: http, port: 10080, protocol: HTTP}]
---
apiVersion: tollgate.dev/v1alpha1
kind: Backend
metadata: {name: openai}
spec: {provider: openai}
---
apiVersion: tollgate.dev/v1alpha1
kind: Backend
metadata: {name: proc}
spec: {hostname: proc.internal, port: 9002, protocol: HTTP/2, addresses: [{ip: 10.0.7.2}]}
---
apiVersion: tollgate.dev/v1alpha1
kind: Backend
metadata: {name: plain}
spec: {hostname: plain.internal, port: 8080, addresses: [{ip: 10.0.7.3}]}
---
apiVersion: tollgate.dev/v1alpha1
kind: HTTPRoute
metadata: {name: chat}
spec:
  parentRefs: [{name: egress}]
  rules: [{backendRefs: [{name: openai}]}]
---
apiVersion: tollgate.dev/v1alpha1
kind: PayloadProcessor
metadata: {name: p}
spec:
`

// load decodes base plus the PayloadProcessor spec lines, resolves and
// lowers it, and returns the config and every violation as "field: msg".
func load(t *testing.T, spec string) (*model.Config, []string) {
	t.Helper()
	objs, errs := policies.NewScheme().Decode("/p.yaml", []byte(base+spec))
	if len(errs) == 0 {
		cfg, berrs := model.BuildConfig(objs, model.Settings{})
		require.Empty(t, berrs)
		errs = policies.Lower(cfg, policies.Inputs{})
		if len(errs) == 0 {
			return cfg, nil
		}
	}
	var out []string
	for _, v := range errs {
		out = append(out, v.Field+": "+v.Msg)
	}
	return nil, out
}

const target = "  targetRefs: [{kind: HTTPRoute, name: chat}]\n  service: {backendRef: {name: proc}}\n"

func processorOf(t *testing.T, cfg *model.Config) *model.ProcessorSettings {
	t.Helper()
	for _, g := range cfg.Gateways {
		for _, l := range g.Listeners {
			for _, r := range l.Routes {
				if len(r.Processors) > 0 {
					require.Len(t, r.Processors, 1)
					return r.Processors[0]
				}
			}
		}
	}
	t.Fatal("no processor lowered")
	return nil
}

func TestDefaults(t *testing.T) {
	cfg, errs := load(t, target)
	require.Empty(t, errs)
	p := processorOf(t, cfg)
	require.Equal(t, model.Ref{Kind: "PayloadProcessor", Namespace: "default", Name: "p"}, p.Policy)
	require.Equal(t, "proc", p.Backend.Ref.Name)
	require.True(t, p.RequestHeaders)
	require.Equal(t, model.ProcessorBodyBuffered, p.RequestBody)
	require.False(t, p.RequestTrailers || p.ResponseHeaders || p.ResponseTrailers)
	require.Equal(t, model.ProcessorBodyNone, p.ResponseBody)
	require.Equal(t, 5*time.Second, p.MessageTimeout)
	require.Zero(t, p.MaxMessageTimeout)
	require.False(t, p.FailOpen)
	require.True(t, p.RefuseDisallowed)
	require.True(t, p.Body)
	require.True(t, p.ImmediateResponse)
	require.Empty(t, p.AllowHeaders)
	require.Empty(t, p.DenyHeaders)
}

func TestLowersEveryField(t *testing.T) {
	cfg, errs := load(t, target+`  phases: {requestHeaders: false, requestBody: Streamed, requestTrailers: true, responseHeaders: true, responseBody: BufferedPartial, responseTrailers: true}
  messageTimeout: 250ms
  maxMessageTimeout: 10s
  failOpen: true
  mutations:
    headers: {allow: ["x-pii-[!-~]*"], deny: [x-pii-secret], onDisallowed: Ignore}
    body: true
    immediateResponse: false
`)
	require.Empty(t, errs)
	p := processorOf(t, cfg)
	require.Equal(t, model.ProcessorSettings{
		Policy: p.Policy, Backend: p.Backend,
		RequestHeaders: false, RequestBody: model.ProcessorBodyStreamed, RequestTrailers: true,
		ResponseHeaders: true, ResponseBody: model.ProcessorBodyBufferedPartial, ResponseTrailers: true,
		MessageTimeout: 250 * time.Millisecond, MaxMessageTimeout: 10 * time.Second, FailOpen: true,
		AllowHeaders: []string{"x-pii-[!-~]*"}, DenyHeaders: []string{"x-pii-secret"},
		RefuseDisallowed: false, Body: true, ImmediateResponse: false,
	}, *p)
}

func TestObserveOnly(t *testing.T) {
	cfg, errs := load(t, target+"  observeOnly: true\n  phases: {requestBody: Streamed}\n")
	require.Empty(t, errs)
	p := processorOf(t, cfg)
	require.True(t, p.ObserveOnly)
	require.False(t, p.Body)
	require.False(t, p.ImmediateResponse)
}

func TestViolations(t *testing.T) {
	for name, c := range map[string]struct{ spec, want string }{
		"scope":             {"  targetRefs: [{kind: Gateway, name: egress}]\n  service: {backendRef: {name: proc}}\n", `spec.targetRefs[0].kind: PayloadProcessor cannot target a "Gateway"`},
		"backend kind":      {"  targetRefs: [{kind: Backend, name: openai}]\n  service: {backendRef: {name: proc}}\n", `spec.targetRefs[0].kind: PayloadProcessor cannot target a "Backend"`},
		"missing route":     {"  targetRefs: [{kind: HTTPRoute, name: nope}]\n  service: {backendRef: {name: proc}}\n", "spec.targetRefs[0].name: HTTPRoute/nope does not exist"},
		"no targets":        {"  service: {backendRef: {name: proc}}\n", "spec.targetRefs: at least one target is required"},
		"no service":        {"  targetRefs: [{kind: HTTPRoute, name: chat}]\n", "spec.service: is required"},
		"empty backend":     {"  targetRefs: [{kind: HTTPRoute, name: chat}]\n  service: {backendRef: {name: \"\"}}\n", "spec.service.backendRef.name: is required"},
		"missing backend":   {"  targetRefs: [{kind: HTTPRoute, name: chat}]\n  service: {backendRef: {name: gone}}\n", "spec.service.backendRef.name: Backend/gone does not exist"},
		"http1 backend":     {"  targetRefs: [{kind: HTTPRoute, name: chat}]\n  service: {backendRef: {name: plain}}\n", "spec.service.backendRef.name: Backend/plain speaks HTTP/1.1, but the processor is a gRPC service"},
		"body mode":         {target + "  phases: {requestBody: buffered}\n", `spec.phases.requestBody: "buffered" is not a body mode`},
		"response mode":     {target + "  phases: {responseBody: Chunked}\n", `spec.phases.responseBody: "Chunked" is not a body mode`},
		"nothing sent":      {target + "  phases: {requestHeaders: false, requestBody: None}\n", "spec.phases: sends the processor nothing"},
		"full duplex":       {target + "  phases: {requestBody: FullDuplexStreamed}\n", "spec.phases.requestTrailers: must be true with requestBody FullDuplexStreamed"},
		"full duplex resp":  {target + "  phases: {responseBody: FullDuplexStreamed}\n", "spec.phases.responseTrailers: must be true with responseBody FullDuplexStreamed"},
		"full duplex open":  {target + "  phases: {requestBody: FullDuplexStreamed, requestTrailers: true}\n  failOpen: true\n", "spec.failOpen: cannot be true with a FullDuplexStreamed body"},
		"zero timeout":      {target + "  messageTimeout: 0s\n", "spec.messageTimeout: must be positive"},
		"sub-ms timeout":    {target + "  messageTimeout: 1500us\n", "spec.messageTimeout: must be whole milliseconds"},
		"long timeout":      {target + "  messageTimeout: 61s\n", "spec.messageTimeout: 1m1s is more than 1m0s"},
		"long max":          {target + "  maxMessageTimeout: 2m\n", "spec.maxMessageTimeout: 2m0s is more than 1m0s"},
		"max below timeout": {target + "  maxMessageTimeout: 1s\n", "spec.maxMessageTimeout: 1s is below messageTimeout (5s)"},
		"body false":        {target + "  mutations: {body: false}\n", "spec.mutations.body: false cannot be enforced"},
		"on disallowed":     {target + "  mutations: {headers: {onDisallowed: Drop}}\n", `spec.mutations.headers.onDisallowed: "Drop" is not supported`},
		"empty allow":       {target + "  mutations: {headers: {allow: []}}\n", "spec.mutations.headers.allow: is empty"},
		"bad regex":         {target + "  mutations: {headers: {allow: [\"x-(\"]}}\n", `spec.mutations.headers.allow[0]: "x-(" is not an RE2 regular expression`},
		"empty regex":       {target + "  mutations: {headers: {deny: [\"\"]}}\n", "spec.mutations.headers.deny[0]: is empty"},
		"capitals":          {target + "  mutations: {headers: {deny: [X-Secret]}}\n", `spec.mutations.headers.deny[0]: "X-Secret" has capital letters`},
		"big regex":         {target + "  mutations: {headers: {allow: [\"[a-z]{1,300}\"]}}\n", "spec.mutations.headers.allow[0]: \"[a-z]{1,300}\" compiles to an RE2 program"},
		"big deny list":     {target + "  mutations: {headers: {deny: [\"x-aaaa-[!-~]*\", \"x-bbbb-[!-~]*\", \"x-cccc-[!-~]*\", \"x-dddd-[!-~]*\"]}}\n", "spec.mutations.headers.deny: together with the headers tollgate always protects"},
		"observe mutations": {target + "  observeOnly: true\n  phases: {requestBody: None}\n  mutations: {immediateResponse: true}\n", "spec.mutations: an observeOnly processor's answers are ignored"},
		"observe buffered":  {target + "  observeOnly: true\n", "spec.phases.requestBody: Buffered is not sent to an observeOnly processor"},
		"observe max":       {target + "  observeOnly: true\n  phases: {requestBody: Streamed}\n  maxMessageTimeout: 10s\n", "spec.maxMessageTimeout: has no effect on an observeOnly processor"},
	} {
		t.Run(name, func(t *testing.T) {
			_, errs := load(t, c.spec)
			found := false
			for _, e := range errs {
				found = found || strings.HasPrefix(e, c.want)
			}
			require.True(t, found, "want %q among %q", c.want, errs)
		})
	}
}

// The protected-header expression covers every credential header and
// tollgate's own, as a whole-name RE2 match (how Envoy applies it), and
// leaves ordinary headers alone.
func TestProtectedHeaders(t *testing.T) {
	re := regexp.MustCompile(`^(?:` + model.ProcessorProtectedHeaders + `)$`)
	protected := append([]string{":authority", ":path", ":method", ":scheme", ":status", "host",
		"x-tollgate-model", "x-tollgate-client-id", "x-tollgate-route", "x-envoy-original-path", "proxy-authorization"},
		model.WorkloadCredentialHeaders...)
	for _, h := range protected {
		require.True(t, re.MatchString(h), h)
	}
	for _, h := range []string{"content-type", "content-length", "x-pii-redacted", "x-request-id", "x-tollgate", "user-agent"} {
		require.False(t, re.MatchString(h), h)
	}
	n, err := model.RegexProgramSize(model.ProcessorDenyExpression(nil))
	require.NoError(t, err)
	require.LessOrEqual(t, n, model.MaxRegexProgramSize)
	// The allow list always admits content-length (Envoy checks it
	// against a changed body).
	allow := regexp.MustCompile(`^(?:` + model.ProcessorAllowExpression([]string{"x-pii-[!-~]*"}) + `)$`)
	require.True(t, allow.MatchString("content-length"))
	require.True(t, allow.MatchString("x-pii-a"))
	require.False(t, allow.MatchString("x-other"))
}

// Two PayloadProcessors on one route: the one whose name sorts first
// wins, the other is Conflicted (the framework's rule for every kind).
func TestSecondProcessorConflicts(t *testing.T) {
	cfg, errs := load(t, target+`---
apiVersion: tollgate.dev/v1alpha1
kind: PayloadProcessor
metadata: {name: another}
spec:
`+target)
	require.Empty(t, errs)
	require.Equal(t, "another", processorOf(t, cfg).Policy.Name)
	var conflicted bool
	for _, c := range cfg.Conditions {
		conflicted = conflicted || (c.Object == "PayloadProcessor/p" && c.Reason == "Conflicted")
	}
	require.True(t, conflicted, "%v", cfg.Conditions)
}
