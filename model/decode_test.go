package model

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// testFile is the file name every single-file test decodes under.
const testFile = "policy.yaml"

// decodeString decodes one YAML file with the core scheme.
func decodeString(t testing.TB, data string) ([]Object, Violations) {
	t.Helper()
	return NewScheme().Decode(testFile, []byte(data))
}

// rendered returns the violations as sorted `file:line: object: field: msg`
// lines, the way the CLI prints them.
func rendered(vs Violations) []string {
	vs = append(Violations(nil), vs...)
	vs.Sort()
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = v.Error()
	}
	return out
}

// Envelope helpers: the spec's first line is always line 6, so the line of a
// spec field is 5 + its line within the spec text.
func indent(s string) string {
	lines := strings.SplitAfter(s, "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = "  " + l
		}
	}
	return strings.Join(lines, "")
}

func gatewayDoc(spec string) string {
	return "apiVersion: tollgate.dev/v1alpha1\nkind: Gateway\nmetadata:\n  name: gw\nspec:\n" + spec
}

func backendDoc(spec string) string {
	return "apiVersion: tollgate.dev/v1alpha1\nkind: Backend\nmetadata:\n  name: be\nspec:\n" + spec
}

func routeDoc(spec string) string {
	return "apiVersion: tollgate.dev/v1alpha1\nkind: HTTPRoute\nmetadata:\n  name: rt\nspec:\n" + spec
}

const validPolicy = `apiVersion: tollgate.dev/v1alpha1
kind: Gateway
metadata:
  name: edge
  labels:
    team: platform
spec:
  listeners:
  - name: http
    port: 8080
    protocol: HTTP
  - name: admin
    address: 127.0.0.1
    port: 9090
    protocol: HTTP
---
apiVersion: tollgate.dev/v1alpha1
kind: Backend
metadata:
  name: openai
spec:
  provider: openai
---
apiVersion: tollgate.dev/v1alpha1
kind: HTTPRoute
metadata:
  name: chat
  namespace: team-a
  annotations:
    note: "free text: ignored"
spec:
  parentRefs:
  - name: edge
    namespace: default
    sectionName: http
  hostnames: ["api.example.com", "*.example.org"]
  rules:
  - name: completions
    matches:
    - path:
        type: PathPrefix
        value: /v1/chat
      method: POST
      headers:
      - name: x-tenant
        value: acme
      queryParams:
      - name: debug
        type: RegularExpression
        value: "^(1|true)$"
    backendRefs:
    - name: openai
      namespace: default
      weight: 3
    timeouts:
      request: 45s
`

func TestDecodeValidRoundTrip(t *testing.T) {
	objs, vs := decodeString(t, validPolicy)
	require.Empty(t, rendered(vs))
	require.Len(t, objs, 3)

	gw, ok := objs[0].(*Gateway)
	require.True(t, ok, "first object is %T", objs[0])
	require.Equal(t, TypeMeta{APIVersion: APIVersion, Kind: KindGateway}, gw.TypeMeta)
	require.Equal(t, ObjectMeta{Name: "edge", Labels: map[string]string{"team": "platform"}}, gw.Metadata)
	require.Equal(t, GatewaySpec{Listeners: []Listener{
		{Name: "http", Port: 8080, Protocol: "HTTP"},
		{Name: "admin", Address: "127.0.0.1", Port: 9090, Protocol: "HTTP"},
	}}, gw.Spec)
	require.Equal(t, "0.0.0.0", gw.Spec.Listeners[0].BindAddress())
	require.Equal(t, "127.0.0.1", gw.Spec.Listeners[1].BindAddress())
	require.Equal(t, Ref{Kind: KindGateway, Namespace: DefaultNamespace, Name: "edge"}, RefOf(gw))
	require.Equal(t, testFile, gw.Src.File)
	require.Equal(t, 1, gw.Src.Line)
	require.Equal(t, 12, gw.Src.LineOf("spec.listeners[1]"))
	require.Equal(t, 14, gw.Src.LineOf("spec.listeners[1].port"))

	be, ok := objs[1].(*Backend)
	require.True(t, ok, "second object is %T", objs[1])
	require.Equal(t, BackendSpec{Provider: "openai"}, be.Spec)
	require.Equal(t, 17, be.Src.Line)
	require.Equal(t, "api.openai.com", be.EffectiveHostname())
	require.Equal(t, uint32(443), be.EffectivePort())
	require.True(t, be.TLSEnabled())
	require.Equal(t, ProtocolAuto, be.EffectiveProtocol())

	rt, ok := objs[2].(*HTTPRoute)
	require.True(t, ok, "third object is %T", objs[2])
	require.Equal(t, 24, rt.Src.Line)
	require.Equal(t, ObjectMeta{Name: "chat", Namespace: "team-a", Annotations: map[string]string{"note": "free text: ignored"}}, rt.Metadata)
	require.Equal(t, "HTTPRoute/team-a/chat", RefOf(rt).String())
	weight := uint32(3)
	require.Equal(t, HTTPRouteSpec{
		ParentRefs: []ParentRef{{Name: "edge", Namespace: "default", SectionName: "http"}},
		Hostnames:  []string{"api.example.com", "*.example.org"},
		Rules: []RouteRule{{
			Name: "completions",
			Matches: []RouteMatch{{
				Path:        &PathMatch{Type: MatchPathPrefix, Value: "/v1/chat"},
				Method:      "POST",
				Headers:     []ValueMatch{{Name: "x-tenant", Value: "acme"}},
				QueryParams: []ValueMatch{{Name: "debug", Type: MatchRegularExpression, Value: "^(1|true)$"}},
			}},
			BackendRefs: []BackendRef{{Name: "openai", Namespace: "default", Weight: &weight}},
			Timeouts:    &RouteTimeouts{Request: &Duration{45 * time.Second}},
		}},
	}, rt.Spec)
	require.Equal(t, 42, rt.Src.LineOf("spec.rules[0].matches[0].path.value"))
	require.Equal(t, 54, rt.Src.LineOf("spec.rules[0].backendRefs[0].weight"))
}

func TestBackendDefaults(t *testing.T) {
	for _, tc := range []struct {
		name     string
		spec     string
		hostname string
		port     uint32
		tls      bool
		protocol string
	}{
		{"openai", "provider: openai\n", "api.openai.com", 443, true, ProtocolAuto},
		{"anthropic", "provider: anthropic\n", "api.anthropic.com", 443, true, ProtocolAuto},
		{"gemini", "provider: gemini\n", "generativelanguage.googleapis.com", 443, true, ProtocolAuto},
		{"bedrock region", "provider: bedrock\nregion: us-east-1\n", "bedrock-runtime.us-east-1.amazonaws.com", 443, true, ProtocolAuto},
		{"vertex region", "provider: vertex\nregion: europe-west4\n", "europe-west4-aiplatform.googleapis.com", 443, true, ProtocolAuto},
		{"bedrock explicit hostname wins over region", "provider: bedrock\nregion: us-east-1\nhostname: bedrock.internal\n", "bedrock.internal", 443, true, ProtocolAuto},
		{"provider hostname overridden", "provider: openai\nhostname: openai.proxy.internal\n", "openai.proxy.internal", 443, true, ProtocolAuto},
		{"azure with hostname", "provider: azure-openai\nhostname: acme.openai.azure.com\n", "acme.openai.azure.com", 443, true, ProtocolAuto},
		{"plain port is plaintext HTTP/1.1", "hostname: vllm.internal\nport: 8000\n", "vllm.internal", 8000, false, ProtocolHTTP1},
		{"TLS on another port", "hostname: vllm.internal\nport: 8443\ntls: true\n", "vllm.internal", 8443, true, ProtocolAuto},
		{"TLS off on 443", "hostname: vllm.internal\ntls: false\n", "vllm.internal", 443, false, ProtocolHTTP1},
		{"explicit HTTP/2", "hostname: vllm.internal\nport: 8000\nprotocol: HTTP/2\n", "vllm.internal", 8000, false, ProtocolHTTP2},
		{"static addresses only", "port: 8000\naddresses:\n- ip: 10.0.0.1\n- ip: \"fd00::1\"\n  port: 9000\n", "", 8000, false, ProtocolHTTP1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs, vs := decodeString(t, backendDoc(indent(tc.spec)))
			require.Empty(t, rendered(vs))
			require.Len(t, objs, 1)
			b := objs[0].(*Backend)
			require.Equal(t, tc.hostname, b.EffectiveHostname())
			require.Equal(t, tc.port, b.EffectivePort())
			require.Equal(t, tc.tls, b.TLSEnabled())
			require.Equal(t, tc.protocol, b.EffectiveProtocol())
		})
	}
}

func TestDecodeViolations(t *testing.T) {
	const tooLong = "a123456789b123456789c123456789d123456789e123456789f123456789g123456789h123456789i123456789j123456789" +
		"k123456789l123456789m123456789n123456789o123456789p123456789q123456789r123456789s123456789t123456789" +
		"u123456789v123456789w123456789x123456789y123456789z123" // 254 characters
	for _, tc := range []struct {
		name string
		yaml string
		want []string
	}{
		// ---- unknown fields ----
		{
			name: "unknown field at top level",
			yaml: "apiVersion: tollgate.dev/v1alpha1\nkind: Gateway\nmetadata:\n  name: gw\nspecs:\n  listeners: []\n",
			want: []string{
				`policy.yaml:1: Gateway/gw: spec.listeners: at least one listener is required`,
				`policy.yaml:5: Gateway/gw: specs: unknown field "specs" (did you mean "spec"?)`,
			},
		},
		{
			name: "unknown field in metadata with suggestion",
			yaml: "apiVersion: tollgate.dev/v1alpha1\nkind: Backend\nmetadata:\n  name: be\n  lables: {a: b}\nspec: {provider: openai}\n",
			want: []string{`policy.yaml:5: Backend/be: metadata.lables: unknown field "lables" (did you mean "labels"?)`},
		},
		{
			name: "unknown field in metadata without a close match lists the known ones",
			yaml: "apiVersion: tollgate.dev/v1alpha1\nkind: Backend\nmetadata:\n  name: be\n  owner: me\nspec: {provider: openai}\n",
			want: []string{`policy.yaml:5: Backend/be: metadata.owner: unknown field "owner" (known fields: annotations, labels, name, namespace)`},
		},
		{
			name: "unknown field deep in spec",
			yaml: routeDoc(`  parentRefs: [{name: gw}]
  rules:
  - matches:
    - path:
        tpye: Exact
        value: /v1
    backendRefs: [{name: be}]
`),
			want: []string{`policy.yaml:10: HTTPRoute/rt: spec.rules[0].matches[0].path.tpye: unknown field "tpye" (did you mean "type"?)`},
		},
		{
			name: "unknown field in a list item of a namespaced object",
			yaml: "apiVersion: tollgate.dev/v1alpha1\nkind: Gateway\nmetadata: {name: gw, namespace: infra}\nspec:\n  listeners:\n  - {name: http, port: 80, protocol: HTTP, hostname: x}\n",
			want: []string{`policy.yaml:6: Gateway/infra/gw: spec.listeners[0].hostname: unknown field "hostname" (known fields: address, name, port, protocol, tls)`},
		},

		// ---- wrong types ----
		{
			name: "string where an integer is expected",
			yaml: gatewayDoc("  listeners:\n  - name: http\n    port: \"8080\"\n    protocol: HTTP\n"),
			want: []string{`policy.yaml:8: Gateway/gw: spec.listeners[0].port: must be an integer, got string "8080"`},
		},
		{
			name: "float where an integer is expected",
			yaml: routeDoc("  parentRefs: [{name: gw}]\n  rules:\n  - backendRefs: [{name: be, weight: 1.5}]\n"),
			want: []string{`policy.yaml:8: HTTPRoute/rt: spec.rules[0].backendRefs[0].weight: must be an integer, got number 1.5`},
		},
		{
			name: "mapping where a list is expected",
			yaml: gatewayDoc("  listeners:\n    http: {port: 80}\n"),
			want: []string{`policy.yaml:7: Gateway/gw: spec.listeners: must be a list, got a mapping`},
		},
		{
			name: "list where a mapping is expected",
			yaml: backendDoc("  - provider: openai\n"),
			want: []string{`policy.yaml:6: Backend/be: spec: must be a mapping, got a list`},
		},
		{
			name: "scalar where a mapping is expected",
			yaml: routeDoc("  parentRefs: [gw]\n  rules: [{backendRefs: [{name: be}]}]\n"),
			want: []string{`policy.yaml:6: HTTPRoute/rt: spec.parentRefs[0]: must be a mapping, got string "gw"`},
		},
		{
			name: "integer where a string is expected",
			yaml: gatewayDoc("  listeners:\n  - name: 80\n    port: 80\n    protocol: HTTP\n"),
			want: []string{`policy.yaml:7: Gateway/gw: spec.listeners[0].name: must be a string, got number 80`},
		},
		{
			name: "boolean where a string is expected",
			yaml: gatewayDoc("  listeners:\n  - name: http\n    port: 80\n    protocol: true\n"),
			want: []string{`policy.yaml:9: Gateway/gw: spec.listeners[0].protocol: must be a string, got boolean true`},
		},
		{
			name: "string where a boolean is expected",
			yaml: backendDoc("  hostname: x.internal\n  tls: \"no\"\n"),
			want: []string{`policy.yaml:7: Backend/be: spec.tls: must be true or false, got string "no"`},
		},
		{
			name: "label value must be a string",
			yaml: "apiVersion: tollgate.dev/v1alpha1\nkind: Backend\nmetadata:\n  name: be\n  labels:\n    tier: 1\nspec: {provider: openai}\n",
			want: []string{`policy.yaml:6: Backend/be: metadata.labels.tier: must be a string, got number 1`},
		},
		{
			name: "negative port",
			yaml: gatewayDoc("  listeners:\n  - {name: http, port: -1, protocol: HTTP}\n"),
			want: []string{`policy.yaml:7: Gateway/gw: spec.listeners[0].port: integer -1 is out of range`},
		},
		{
			name: "port larger than uint32",
			yaml: backendDoc("  hostname: x.internal\n  port: 4294967296\n"),
			want: []string{`policy.yaml:7: Backend/be: spec.port: integer 4294967296 is out of range`},
		},
		{
			name: "port larger than uint64",
			yaml: backendDoc("  hostname: x.internal\n  port: 18446744073709551616\n"),
			want: []string{`policy.yaml:7: Backend/be: spec.port: must be an integer, got number 18446744073709551616`},
		},
		{
			name: "port fits uint32 but not a port",
			yaml: gatewayDoc("  listeners:\n  - {name: http, port: 70000, protocol: HTTP}\n"),
			want: []string{`policy.yaml:7: Gateway/gw: spec.listeners[0].port: 70000 must be between 1 and 65535`},
		},
		{
			name: "backend and address port out of range",
			yaml: backendDoc("  hostname: x.internal\n  port: 65536\n  tls: false\n  addresses:\n  - ip: 10.0.0.1\n    port: 65536\n"),
			want: []string{
				`policy.yaml:7: Backend/be: spec.port: 65536 must be between 1 and 65535`,
				`policy.yaml:11: Backend/be: spec.addresses[0].port: 65536 must be between 1 and 65535`,
			},
		},
		{
			name: "explicit port 0 is refused, unset port takes its default",
			yaml: backendDoc("  hostname: x.internal\n  port: 0\n  tls: false\n  addresses:\n  - ip: 10.0.0.1\n    port: 0\n  - ip: 10.0.0.2\n"),
			want: []string{
				`policy.yaml:7: Backend/be: spec.port: 0 must be between 1 and 65535`,
				`policy.yaml:11: Backend/be: spec.addresses[0].port: 0 must be between 1 and 65535`,
			},
		},
		{
			name: "explicit listener and parentRef port 0 is refused",
			yaml: gatewayDoc("  mode: Parent\n  parentRef: {name: up, port: 0}\n  listeners:\n  - {name: http, port: 0, protocol: HTTP}\n"),
			want: []string{
				`policy.yaml:7: Gateway/gw: spec.parentRef.port: 0 must be between 1 and 65535`,
				`policy.yaml:9: Gateway/gw: spec.listeners[0].port: 0 must be between 1 and 65535`,
			},
		},
		{
			name: "duration written as a number",
			yaml: routeDoc("  parentRefs: [{name: gw}]\n  rules:\n  - backendRefs: [{name: be}]\n    timeouts: {request: 30}\n"),
			want: []string{`policy.yaml:9: HTTPRoute/rt: spec.rules[0].timeouts.request: "30" is not a duration: write it like "30s" or "5m"`},
		},
		{
			name: "negative duration",
			yaml: routeDoc("  parentRefs: [{name: gw}]\n  rules:\n  - backendRefs: [{name: be}]\n    timeouts: {request: -5s}\n"),
			want: []string{`policy.yaml:9: HTTPRoute/rt: spec.rules[0].timeouts.request: "-5s" must not be negative`},
		},
		{
			name: "duration written as a mapping",
			yaml: routeDoc("  parentRefs: [{name: gw}]\n  rules:\n  - backendRefs: [{name: be}]\n    timeouts:\n      request: {seconds: 30}\n"),
			want: []string{`policy.yaml:10: HTTPRoute/rt: spec.rules[0].timeouts.request: must be a string, got a mapping`},
		},

		// ---- duplicate keys ----
		{
			name: "duplicate key in a struct mapping",
			yaml: gatewayDoc("  listeners:\n  - name: http\n    port: 80\n    protocol: HTTP\n    port: 81\n"),
			want: []string{`policy.yaml:10: Gateway/gw: spec.listeners[0].port: is set twice`},
		},
		{
			name: "duplicate key in a free-form map",
			yaml: "apiVersion: tollgate.dev/v1alpha1\nkind: Backend\nmetadata:\n  name: be\n  labels:\n    a: x\n    a: y\nspec: {provider: openai}\n",
			want: []string{`policy.yaml:7: Backend/be: metadata.labels.a: is set twice`},
		},
		{
			name: "duplicate top-level key",
			yaml: backendDoc("  provider: openai\n") + "spec: {provider: anthropic}\n",
			want: []string{`policy.yaml:7: Backend/be: spec: is set twice`},
		},

		// ---- envelope ----
		{
			name: "missing apiVersion",
			yaml: "kind: Gateway\nmetadata: {name: gw}\nspec: {listeners: [{name: http, port: 80, protocol: HTTP}]}\n",
			want: []string{`policy.yaml:1: apiVersion: is required: set it to "tollgate.dev/v1alpha1"`},
		},
		{
			name: "missing kind",
			yaml: "apiVersion: tollgate.dev/v1alpha1\nmetadata: {name: gw}\n",
			want: []string{`policy.yaml:1: kind: is required: one of Backend, Gateway, HTTPRoute`},
		},
		{
			name: "missing apiVersion and kind",
			yaml: "metadata: {name: gw}\n",
			want: []string{
				`policy.yaml:1: apiVersion: is required: set it to "tollgate.dev/v1alpha1"`,
				`policy.yaml:1: kind: is required: one of Backend, Gateway, HTTPRoute`,
			},
		},
		{
			name: "wrong apiVersion",
			yaml: "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw}\n",
			want: []string{`policy.yaml:1: apiVersion: "gateway.networking.k8s.io/v1" is not supported: use "tollgate.dev/v1alpha1"`},
		},
		{
			name: "unknown kind",
			yaml: "apiVersion: tollgate.dev/v1alpha1\nkind: Gatway\nmetadata: {name: gw}\n",
			want: []string{`policy.yaml:2: kind: "Gatway" is not a known kind: use one of Backend, Gateway, HTTPRoute`},
		},
		{
			name: "wrong apiVersion and unknown kind",
			yaml: "apiVersion: v1\nkind: Service\nmetadata: {name: gw}\n",
			want: []string{
				`policy.yaml:1: apiVersion: "v1" is not supported: use "tollgate.dev/v1alpha1"`,
				`policy.yaml:2: kind: "Service" is not a known kind: use one of Backend, Gateway, HTTPRoute`,
			},
		},
		{
			name: "document is not a mapping",
			yaml: "- apiVersion: tollgate.dev/v1alpha1\n  kind: Gateway\n",
			want: []string{`policy.yaml:1: each document must be a mapping with apiVersion, kind, metadata and spec`},
		},
		{
			name: "missing metadata.name",
			yaml: "apiVersion: tollgate.dev/v1alpha1\nkind: Backend\nmetadata:\n  labels: {a: b}\nspec: {provider: openai}\n",
			want: []string{`policy.yaml:3: Backend/: metadata.name: is required`},
		},
		{
			name: "missing metadata",
			yaml: "apiVersion: tollgate.dev/v1alpha1\nkind: Backend\nspec: {provider: openai}\n",
			want: []string{`policy.yaml:1: Backend/: metadata.name: is required`},
		},
		{
			name: "bad name",
			yaml: "apiVersion: tollgate.dev/v1alpha1\nkind: Backend\nmetadata:\n  name: My_Backend\nspec: {provider: openai}\n",
			want: []string{`policy.yaml:4: Backend/My_Backend: metadata.name: "My_Backend" must be lowercase letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters`},
		},
		{
			name: "name ending with a dash",
			yaml: "apiVersion: tollgate.dev/v1alpha1\nkind: Backend\nmetadata: {name: openai-}\nspec: {provider: openai}\n",
			want: []string{`policy.yaml:3: Backend/openai-: metadata.name: "openai-" must be lowercase letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters`},
		},
		{
			name: "name too long",
			yaml: "apiVersion: tollgate.dev/v1alpha1\nkind: Backend\nmetadata: {name: " + tooLong + "}\nspec: {provider: openai}\n",
			want: []string{`policy.yaml:3: Backend/` + tooLong + `: metadata.name: "` + tooLong + `" must be lowercase letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters`},
		},
		{
			name: "bad namespace",
			yaml: "apiVersion: tollgate.dev/v1alpha1\nkind: Backend\nmetadata:\n  name: be\n  namespace: team.a\nspec: {provider: openai}\n",
			want: []string{`policy.yaml:5: Backend/team.a/be: metadata.namespace: "team.a" must be lowercase letters, digits and '-', at most 63 characters`},
		},

		// ---- several violations at once ----
		{
			name: "several structural and semantic violations in one document",
			yaml: gatewayDoc(`  mode: Parent
  listeners:
  - name: http
    port: "80"
    protocol: HTTP
    protocol: HTTP
  - name: http
    port: 81
    protocl: HTTP
  - name: Admin
    port: 82
    protocol: TCP
`),
			want: []string{
				`policy.yaml:5: Gateway/gw: spec.parentRef: is required with mode: Parent: name the gateway this one forwards to`,
				`policy.yaml:9: Gateway/gw: spec.listeners[0].port: must be an integer, got string "80"`,
				`policy.yaml:11: Gateway/gw: spec.listeners[0].protocol: is set twice`,
				`policy.yaml:12: Gateway/gw: spec.listeners[1].name: "http" is already used by spec.listeners[0]`,
				// The misspelt key leaves protocol unset.
				`policy.yaml:12: Gateway/gw: spec.listeners[1].protocol: is required: use HTTP or HTTPS`,
				`policy.yaml:14: Gateway/gw: spec.listeners[1].protocl: unknown field "protocl" (did you mean "protocol"?)`,
				`policy.yaml:15: Gateway/gw: spec.listeners[2].name: "Admin" must be lowercase letters, digits and '-', at most 63 characters`,
				`policy.yaml:17: Gateway/gw: spec.listeners[2].protocol: "TCP" is not supported: use HTTP or HTTPS`,
			},
		},
		{
			name: "violations across documents are all reported",
			yaml: gatewayDoc("  listeners: [{name: http, port: 80, protocol: HTTP, tls: true}]\n") +
				"---\n" + backendDoc("  provider: openai\n") +
				"---\n" + routeDoc("  parentRefs: [{name: gw}]\n  rules:\n  - backendRefs: [{name: be, wieght: 2}]\n") +
				"---\n" + "apiVersion: tollgate.dev/v1alpha1\nkind: Policy\nmetadata: {name: p}\n",
			want: []string{
				`policy.yaml:6: Gateway/gw: spec.listeners[0].tls: must be a mapping, got boolean true`,
				`policy.yaml:22: HTTPRoute/rt: spec.rules[0].backendRefs[0].wieght: unknown field "wieght" (did you mean "weight"?)`,
				`policy.yaml:25: kind: "Policy" is not a known kind: use one of Backend, Gateway, HTTPRoute`,
			},
		},

		// ---- Gateway semantics ----
		{
			name: "gateway mode Parent with its parent",
			yaml: gatewayDoc("  mode: Parent\n  parentRef: {name: hub, namespace: infra, sectionName: http, port: 8443, tls: {hostname: hub.corp.example, caFile: /etc/envoy/hub-ca.pem, certificateFile: /etc/envoy/child.pem, privateKeyFile: /etc/envoy/child.key, subjectAltNames: [{type: URI, value: spiffe://corp.example/hub}]}}\n  listeners: [{name: http, port: 80, protocol: HTTP}]\n"),
			want: []string{},
		},
		{
			name: "gateway mode Parent without parentRef",
			yaml: gatewayDoc("  mode: Parent\n  listeners: [{name: http, port: 80, protocol: HTTP}]\n"),
			want: []string{`policy.yaml:5: Gateway/gw: spec.parentRef: is required with mode: Parent: name the gateway this one forwards to`},
		},
		{
			name: "gateway parentRef fields",
			yaml: gatewayDoc(`  mode: Parent
  parentRef:
    sectionName: HTTP
    port: 70000
    tls:
      hostname: "*.hub"
      caFile: certs/ca.pem
      certificateFile: /etc/envoy/child.pem
      subjectAltNames: [{type: IP, value: 10.0.0.1}, {type: URI, value: hub}, {type: DNS}]
  listeners: [{name: http, port: 80, protocol: HTTP}]
`),
			want: []string{
				`policy.yaml:7: Gateway/gw: spec.parentRef.name: is required`,
				`policy.yaml:8: Gateway/gw: spec.parentRef.sectionName: "HTTP" must be a listener name: lowercase letters, digits and '-'`,
				`policy.yaml:9: Gateway/gw: spec.parentRef.port: 70000 must be between 1 and 65535`,
				`policy.yaml:10: Gateway/gw: spec.parentRef.tls: certificateFile and privateKeyFile go together (mutual TLS needs both)`,
				`policy.yaml:11: Gateway/gw: spec.parentRef.tls.hostname: "*.hub" must be a DNS name`,
				`policy.yaml:12: Gateway/gw: spec.parentRef.tls.caFile: "certs/ca.pem" must be an absolute path: Envoy reads it on the child's hosts`,
				`policy.yaml:14: Gateway/gw: spec.parentRef.tls.subjectAltNames[0].type: "IP" is not supported: use DNS or URI`,
				`policy.yaml:14: Gateway/gw: spec.parentRef.tls.subjectAltNames[1].value: "hub" is not a URI (a SPIFFE ID looks like spiffe://trust.domain/path)`,
				`policy.yaml:14: Gateway/gw: spec.parentRef.tls.subjectAltNames[2].value: is required`,
			},
		},
		{
			name: "gateway addresses",
			yaml: gatewayDoc("  addresses:\n  - {hostname: hub.corp.example}\n  - {ip: 10.1.2.3}\n  - {ip: \"2001:db8::1\"}\n  - {hostname: hub.corp.example, ip: 10.1.2.4}\n  - {}\n  - {hostname: \"hub:443\"}\n  - {ip: 10.1.2}\n  listeners: [{name: http, port: 80, protocol: HTTP}]\n"),
			want: []string{
				`policy.yaml:10: Gateway/gw: spec.addresses[3]: set hostname or ip, not both`,
				`policy.yaml:11: Gateway/gw: spec.addresses[4]: set hostname or ip`,
				`policy.yaml:12: Gateway/gw: spec.addresses[5].hostname: "hub:443" must be a DNS name without scheme, port or wildcard`,
				`policy.yaml:13: Gateway/gw: spec.addresses[6].ip: "10.1.2" must be an IPv4 or IPv6 address`,
			},
		},
		{
			name: "gateway unknown mode",
			yaml: gatewayDoc("  mode: Sidecar\n  listeners: [{name: http, port: 80, protocol: HTTP}]\n"),
			want: []string{`policy.yaml:6: Gateway/gw: spec.mode: "Sidecar" is not a mode: use Endpoint or Parent`},
		},
		{
			name: "gateway parentRef without Parent mode",
			yaml: gatewayDoc("  mode: Endpoint\n  parentRef: {name: hub}\n  listeners: [{name: http, port: 80, protocol: HTTP}]\n"),
			want: []string{`policy.yaml:7: Gateway/gw: spec.parentRef: is only allowed with mode: Parent`},
		},
		{
			name: "gateway without listeners",
			yaml: gatewayDoc("  listeners: []\n"),
			want: []string{`policy.yaml:6: Gateway/gw: spec.listeners: at least one listener is required`},
		},
		{
			name: "gateway with null spec",
			yaml: gatewayDoc(""),
			want: []string{`policy.yaml:5: Gateway/gw: spec.listeners: at least one listener is required`},
		},
		{
			name: "duplicate listener names and ports",
			yaml: gatewayDoc(`  listeners:
  - {name: http, port: 80, protocol: HTTP}
  - {name: http, port: 81, protocol: HTTP}
  - {name: other, port: 80, protocol: HTTP}
  - {name: loopback, address: 127.0.0.1, port: 80, protocol: HTTP}
  - {name: explicit-any, address: 0.0.0.0, port: 81, protocol: HTTP}
`),
			want: []string{
				`policy.yaml:8: Gateway/gw: spec.listeners[1].name: "http" is already used by spec.listeners[0]`,
				`policy.yaml:9: Gateway/gw: spec.listeners[2].port: 0.0.0.0:80 is already used by spec.listeners[0]`,
				`policy.yaml:11: Gateway/gw: spec.listeners[4].port: 0.0.0.0:81 is already used by spec.listeners[1]`,
			},
		},
		{
			name: "listener protocol missing or unsupported, bad address, missing port",
			yaml: gatewayDoc(`  listeners:
  - name: a
    port: 80
  - name: b
    port: 81
    protocol: HTTPS
  - name: c
    address: localhost
    protocol: HTTP
`),
			want: []string{
				`policy.yaml:7: Gateway/gw: spec.listeners[0].protocol: is required: use HTTP or HTTPS`,
				`policy.yaml:9: Gateway/gw: spec.listeners[1].tls: is required with protocol: HTTPS: set certificate and privateKey, or spiffe`,
				`policy.yaml:12: Gateway/gw: spec.listeners[2].port: is required: a port between 1 and 65535`,
				`policy.yaml:13: Gateway/gw: spec.listeners[2].address: "localhost" must be an IP address`,
			},
		},

		// ---- Backend semantics ----
		{
			name: "backend TLS without hostname",
			yaml: backendDoc("  addresses: [{ip: 10.0.0.1}]\n"),
			want: []string{`policy.yaml:5: Backend/be: spec.hostname: is required with TLS: it is the SNI and the name verified in the certificate (or set tls: false)`},
		},
		{
			name: "backend protocol auto without TLS",
			yaml: backendDoc("  hostname: vllm.internal\n  port: 8000\n  protocol: auto\n"),
			want: []string{`policy.yaml:8: Backend/be: spec.protocol: auto needs TLS, since the protocol is negotiated with ALPN: use HTTP/1.1 or HTTP/2 for a plaintext backend`},
		},
		{
			name: "backend protocol auto with TLS turned off",
			yaml: backendDoc("  hostname: vllm.internal\n  tls: false\n  protocol: auto\n"),
			want: []string{`policy.yaml:8: Backend/be: spec.protocol: auto needs TLS, since the protocol is negotiated with ALPN: use HTTP/1.1 or HTTP/2 for a plaintext backend`},
		},
		{
			name: "backend unsupported protocol",
			yaml: backendDoc("  hostname: vllm.internal\n  protocol: h2c\n"),
			want: []string{`policy.yaml:7: Backend/be: spec.protocol: "h2c" is not supported: use auto, HTTP/1.1 or HTTP/2`},
		},
		{
			name: "backend bad IPs",
			yaml: backendDoc("  hostname: vllm.internal\n  addresses:\n  - ip: 10.0.0.300\n  - ip: vllm.internal\n  - ip: \"fd00::1\"\n  - {}\n"),
			want: []string{
				`policy.yaml:8: Backend/be: spec.addresses[0].ip: "10.0.0.300" must be an IPv4 or IPv6 address`,
				`policy.yaml:9: Backend/be: spec.addresses[1].ip: "vllm.internal" must be an IPv4 or IPv6 address`,
				`policy.yaml:11: Backend/be: spec.addresses[3].ip: "" must be an IPv4 or IPv6 address`,
			},
		},
		{
			name: "backend unknown provider",
			yaml: backendDoc("  provider: mistral\n  hostname: api.mistral.ai\n"),
			want: []string{`policy.yaml:6: Backend/be: spec.provider: "mistral" is not a known provider: use one of anthropic, azure-openai, bedrock, gemini, openai, openai-compatible, vertex`},
		},
		{
			name: "backend hostname with scheme",
			yaml: backendDoc("  hostname: https://api.openai.com\n"),
			want: []string{`policy.yaml:6: Backend/be: spec.hostname: "https://api.openai.com" must be a DNS name without scheme, port or wildcard`},
		},
		{
			name: "backend wildcard hostname",
			yaml: backendDoc("  hostname: \"*.openai.com\"\n"),
			want: []string{`policy.yaml:6: Backend/be: spec.hostname: "*.openai.com" must be a DNS name without scheme, port or wildcard`},
		},
		{
			name: "backend without hostname nor addresses, plaintext",
			yaml: backendDoc("  port: 8000\n"),
			want: []string{`policy.yaml:5: Backend/be: spec.hostname: is required unless spec.addresses is set`},
		},
		{
			name: "provider that needs a hostname",
			yaml: backendDoc("  provider: azure-openai\n"),
			want: []string{
				`policy.yaml:5: Backend/be: spec.hostname: is required for provider "azure-openai": <resource>.openai.azure.com`,
			},
		},
		{
			name: "bedrock without region",
			yaml: backendDoc("  provider: bedrock\n  tls: true\n"),
			want: []string{
				`policy.yaml:5: Backend/be: spec.hostname: is required for provider "bedrock": bedrock-runtime.<region>.amazonaws.com, or set spec.region`,
			},
		},
		{
			name: "bad region",
			yaml: backendDoc("  provider: vertex\n  region: Europe_West4\n"),
			want: []string{`policy.yaml:7: Backend/be: spec.region: "Europe_West4" must be lowercase letters, digits and '-'`},
		},

		// ---- HTTPRoute semantics ----
		{
			name: "route without parentRefs",
			yaml: routeDoc("  rules:\n  - backendRefs: [{name: be}]\n"),
			want: []string{`policy.yaml:5: HTTPRoute/rt: spec.parentRefs: at least one parent Gateway is required`},
		},
		{
			name: "route with empty parentRefs and rules",
			yaml: routeDoc("  parentRefs: []\n  rules: []\n"),
			want: []string{
				`policy.yaml:6: HTTPRoute/rt: spec.parentRefs: at least one parent Gateway is required`,
				`policy.yaml:7: HTTPRoute/rt: spec.rules: at least one rule is required`,
			},
		},
		{
			name: "route parentRef and backendRef without name, rule without backends",
			yaml: routeDoc("  parentRefs: [{sectionName: http}]\n  rules:\n  - backendRefs: [{weight: 1}]\n  - name: empty\n"),
			want: []string{
				`policy.yaml:6: HTTPRoute/rt: spec.parentRefs[0].name: is required`,
				`policy.yaml:8: HTTPRoute/rt: spec.rules[0].backendRefs[0].name: is required`,
				`policy.yaml:9: HTTPRoute/rt: spec.rules[1].backendRefs: at least one backend is required`,
			},
		},
		{
			name: "route bad hostnames and rule name",
			yaml: routeDoc("  parentRefs: [{name: gw}]\n  hostnames:\n  - api.example.com:443\n  - \"*\"\n  - API.example.com\n  rules:\n  - name: Chat_Completions\n    backendRefs: [{name: be}]\n"),
			want: []string{
				`policy.yaml:8: HTTPRoute/rt: spec.hostnames[0]: "api.example.com:443" must be a DNS name, optionally starting with "*.", without port`,
				`policy.yaml:9: HTTPRoute/rt: spec.hostnames[1]: "*" must be a DNS name, optionally starting with "*.", without port`,
				`policy.yaml:10: HTTPRoute/rt: spec.hostnames[2]: "API.example.com" must be a DNS name, optionally starting with "*.", without port`,
				`policy.yaml:12: HTTPRoute/rt: spec.rules[0].name: "Chat_Completions" must be lowercase letters, digits and '-'`,
			},
		},
		{
			name: "route bad path values",
			yaml: routeDoc(`  parentRefs: [{name: gw}]
  rules:
  - matches:
    - path: {value: v1/chat}
    - path: {type: Exact, value: "/v1?x=1"}
    - path: {type: PathPrefix, value: "/v1#frag"}
    - path: {type: Exact, value: /v1//chat}
    - path: {type: Exact}
    - path: {type: Prefix, value: /v1}
    backendRefs: [{name: be}]
`),
			want: []string{
				`policy.yaml:9: HTTPRoute/rt: spec.rules[0].matches[0].path.value: "v1/chat" must start with '/'`,
				`policy.yaml:10: HTTPRoute/rt: spec.rules[0].matches[1].path.value: "/v1?x=1" must not contain '?' or '#'`,
				`policy.yaml:11: HTTPRoute/rt: spec.rules[0].matches[2].path.value: "/v1#frag" must not contain '?' or '#'`,
				`policy.yaml:12: HTTPRoute/rt: spec.rules[0].matches[3].path.value: "/v1//chat" must not contain '//'`,
				`policy.yaml:13: HTTPRoute/rt: spec.rules[0].matches[4].path.value: "" must start with '/'`,
				`policy.yaml:14: HTTPRoute/rt: spec.rules[0].matches[5].path.type: "Prefix" is not supported: use PathPrefix, Exact or RegularExpression`,
			},
		},
		{
			name: "route bad regular expressions",
			yaml: routeDoc(`  parentRefs: [{name: gw}]
  rules:
  - matches:
    - path:
        type: RegularExpression
        value: "/v1/(chat"
      headers:
      - {name: x-model, type: RegularExpression, value: "gpt-(4|"}
      queryParams:
      - {name: q, type: RegularExpression, value: "a**"}
    backendRefs: [{name: be}]
`),
			want: []string{
				"policy.yaml:11: HTTPRoute/rt: spec.rules[0].matches[0].path.value: \"/v1/(chat\" is not an RE2 regular expression: error parsing regexp: missing closing ): `/v1/(chat`",
				"policy.yaml:13: HTTPRoute/rt: spec.rules[0].matches[0].headers[0].value: \"gpt-(4|\" is not an RE2 regular expression: error parsing regexp: missing closing ): `gpt-(4|`",
				"policy.yaml:15: HTTPRoute/rt: spec.rules[0].matches[0].queryParams[0].value: \"a**\" is not an RE2 regular expression: error parsing regexp: invalid nested repetition operator: `**`",
			},
		},
		{
			name: "route bad header and query matches and method",
			yaml: routeDoc(`  parentRefs: [{name: gw}]
  rules:
  - matches:
    - headers:
      - {name: x tenant, value: a}
      - {name: ":authority", value: a}
      - {value: a}
      - {name: x-ok, type: Prefix, value: a}
      queryParams:
      - {value: a}
      - {name: "has space", value: a}
      method: post
    - method: FETCH
    backendRefs: [{name: be}]
`),
			want: []string{
				`policy.yaml:10: HTTPRoute/rt: spec.rules[0].matches[0].headers[0].name: "x tenant" is not a valid header name`,
				`policy.yaml:11: HTTPRoute/rt: spec.rules[0].matches[0].headers[1].name: ":authority": pseudo-headers cannot be matched here (use path, method or the route's hostnames)`,
				`policy.yaml:12: HTTPRoute/rt: spec.rules[0].matches[0].headers[2].name: is required`,
				`policy.yaml:13: HTTPRoute/rt: spec.rules[0].matches[0].headers[3].type: "Prefix" is not supported: use Exact or RegularExpression`,
				`policy.yaml:15: HTTPRoute/rt: spec.rules[0].matches[0].queryParams[0].name: is required`,
				`policy.yaml:17: HTTPRoute/rt: spec.rules[0].matches[0].method: "post" is not an HTTP method: use one of CONNECT, DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT, TRACE`,
				`policy.yaml:18: HTTPRoute/rt: spec.rules[0].matches[1].method: "FETCH" is not an HTTP method: use one of CONNECT, DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT, TRACE`,
			},
		},
		{
			name: "route zero total weight",
			yaml: routeDoc("  parentRefs: [{name: gw}]\n  rules:\n  - backendRefs:\n    - {name: a, weight: 0}\n    - {name: b, weight: 0}\n  - backendRefs: [{name: a, weight: 0}, {name: b}]\n"),
			want: []string{`policy.yaml:8: HTTPRoute/rt: spec.rules[0].backendRefs: weights add up to 0: at least one backend needs a positive weight`},
		},
		{
			name: "route total weight overflows uint32",
			yaml: routeDoc("  parentRefs: [{name: gw}]\n  rules:\n  - backendRefs:\n    - {name: a, weight: 4294967295}\n    - {name: b}\n"),
			want: []string{`policy.yaml:8: HTTPRoute/rt: spec.rules[0].backendRefs: weights add up to 4294967296, more than 4294967295`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs, vs := decodeString(t, tc.yaml)
			require.Equal(t, tc.want, rendered(vs))
			for _, o := range objs {
				require.NotEqual(t, RefOf(o).Name, "", "an object without a name was returned")
			}
			for _, v := range vs {
				require.Equal(t, testFile, v.File)
				require.NotEmpty(t, v.Msg)
			}
		})
	}
}

// An object with violations is dropped; the valid ones around it are kept.
func TestDecodeKeepsValidObjects(t *testing.T) {
	objs, vs := decodeString(t, gatewayDoc("  listeners: [{name: http, port: 80, protocol: HTTP}]\n")+
		"---\n"+backendDoc("  provider: nope\n")+
		"---\n"+backendDoc("  provider: openai\n"))
	require.Equal(t, []string{
		// An unknown provider gives no hostname either.
		`policy.yaml:12: Backend/be: spec.hostname: is required unless spec.addresses is set`,
		`policy.yaml:13: Backend/be: spec.provider: "nope" is not a known provider: use one of anthropic, azure-openai, bedrock, gemini, openai, openai-compatible, vertex`,
	}, rendered(vs))
	require.Len(t, objs, 2)
	require.Equal(t, "Gateway/gw", RefOf(objs[0]).String())
	require.Equal(t, "Backend/be", RefOf(objs[1]).String())
	require.Equal(t, 15, objs[1].GetSource().Line)
}

func TestDecodeEmptyFile(t *testing.T) {
	for _, data := range []string{"", "\n", "# only a comment\n"} {
		objs, vs := decodeString(t, data)
		require.Empty(t, objs, "%q", data)
		require.Empty(t, vs, "%q", data)
	}
}

// Empty documents (a leading, doubled or trailing '---', as kubectl, helm and
// kustomize write them) are skipped.
func TestDecodeEmptyDocuments(t *testing.T) {
	for _, data := range []string{"---\n", "---\n---\n", "---\n# c\n...\n"} {
		objs, vs := decodeString(t, data)
		require.Empty(t, objs, "%q", data)
		require.Empty(t, rendered(vs), "%q", data)
	}
	objs, vs := decodeString(t, "---\n---\n"+backendDoc("  provider: openai\n")+"---\n")
	require.Empty(t, rendered(vs))
	require.Len(t, objs, 1)
	require.Equal(t, 3, objs[0].GetSource().Line)
}

func TestDecodeSyntaxError(t *testing.T) {
	for _, tc := range []struct {
		name string
		yaml string
		want []string
		objs int
	}{
		{
			// For parser errors yaml.v3 reports the 0-based line of the
			// enclosing construct (here the second document, which starts
			// on line 8), not the broken line 15; the decoder passes it
			// through. See the report.
			name: "bad indentation in the second document stops the file",
			yaml: backendDoc("  provider: openai\n") + "---\n" + backendDoc("  provider: openai\n  region: x\n bad: indent\n") +
				"---\n" + backendDoc("  provider: nope\n"),
			want: []string{`policy.yaml:7: invalid YAML: did not find expected key`},
			objs: 1,
		},
		{
			name: "mapping value in a scalar",
			yaml: "apiVersion: tollgate.dev/v1alpha1\nkind: Backend\nmetadata: {name: be}\nspec:\n  hostname: a: b\n",
			want: []string{`policy.yaml:5: invalid YAML: mapping values are not allowed in this context`},
		},
		{
			name: "tab indentation",
			yaml: backendDoc("\tprovider: openai\n"),
			want: []string{`policy.yaml:6: invalid YAML: found character that cannot start any token`},
		},
		{
			name: "unterminated quoted string",
			yaml: backendDoc("  hostname: \"x.internal\n  port: 80\n"),
			want: []string{`policy.yaml:6: invalid YAML: found unexpected end of stream`},
		},
		{
			name: "unterminated flow sequence",
			yaml: routeDoc("  parentRefs: [{name: gw}\n  rules: []\n"),
			want: []string{`policy.yaml:5: invalid YAML: did not find expected ',' or ']'`}, // the '[' is on line 6
		},
		{
			name: "violations before the syntax error are kept",
			yaml: backendDoc("  provider: nope\n  hostname: x.internal\n") + "---\n" + "a: [\n",
			want: []string{
				`policy.yaml:6: Backend/be: spec.provider: "nope" is not a known provider: use one of anthropic, azure-openai, bedrock, gemini, openai, openai-compatible, vertex`,
				`policy.yaml:9: invalid YAML: did not find expected node content`,
			},
		},
		{
			// The parser gives no line for this one: the decoder finds it.
			name: "unknown anchor",
			yaml: backendDoc("  provider: *p\n"),
			want: []string{`policy.yaml:6: invalid YAML: unknown anchor 'p' referenced`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs, vs := decodeString(t, tc.yaml)
			require.Equal(t, tc.want, rendered(vs))
			require.Len(t, objs, tc.objs)
		})
	}
}

func TestDecodeAliases(t *testing.T) {
	objs, vs := decodeString(t, `apiVersion: tollgate.dev/v1alpha1
kind: Gateway
metadata:
  name: gw
  labels: &labels
    team: platform
  annotations: *labels
spec:
  listeners:
  - &http
    name: http
    port: &port 8080
    protocol: &proto HTTP
  - name: admin
    port: 9090
    protocol: *proto
---
apiVersion: tollgate.dev/v1alpha1
kind: HTTPRoute
metadata: {name: rt}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: &m
    - path: {value: /v1}
    backendRefs: &b [{name: be, weight: 2}]
  - matches: *m
    backendRefs: *b
`)
	require.Empty(t, rendered(vs))
	require.Len(t, objs, 2)
	gw := objs[0].(*Gateway)
	require.Equal(t, map[string]string{"team": "platform"}, gw.Metadata.Labels)
	require.Equal(t, map[string]string{"team": "platform"}, gw.Metadata.Annotations)
	require.Equal(t, []Listener{
		{Name: "http", Port: 8080, Protocol: "HTTP"},
		{Name: "admin", Port: 9090, Protocol: "HTTP"},
	}, gw.Spec.Listeners)
	rt := objs[1].(*HTTPRoute)
	require.Len(t, rt.Spec.Rules, 2)
	require.Equal(t, rt.Spec.Rules[0].Matches, rt.Spec.Rules[1].Matches)
	require.Equal(t, rt.Spec.Rules[0].BackendRefs, rt.Spec.Rules[1].BackendRefs)
	require.Equal(t, uint32(2), rt.Spec.Rules[1].BackendRefs[0].EffectiveWeight())
	// The decoded values must not share memory through the alias.
	*rt.Spec.Rules[0].BackendRefs[0].Weight = 7
	require.Equal(t, uint32(2), rt.Spec.Rules[1].BackendRefs[0].EffectiveWeight())
}

// Violations inside an aliased value point at the line where the anchored
// value is written.
func TestDecodeAliasViolationLine(t *testing.T) {
	_, vs := decodeString(t, gatewayDoc(`  listeners:
  - &l {name: http, port: 80, protocol: HTTP}
  - *l
`))
	require.Equal(t, []string{
		`policy.yaml:7: Gateway/gw: spec.listeners[1].name: "http" is already used by spec.listeners[0]`,
		`policy.yaml:7: Gateway/gw: spec.listeners[1].port: 0.0.0.0:80 is already used by spec.listeners[0]`,
	}, rendered(vs))
}

// kind and apiVersion written as aliases are resolved.
func TestDecodeAliasedEnvelope(t *testing.T) {
	objs, vs := decodeString(t, `apiVersion: tollgate.dev/v1alpha1
metadata:
  name: be
  labels: {kind: &k Backend}
kind: *k
spec: {provider: openai}
`)
	require.Empty(t, rendered(vs))
	require.Len(t, objs, 1)
}

// A missing name next to another decode error is still reported as missing.
func TestDecodeMissingNameWithOtherErrors(t *testing.T) {
	_, vs := decodeString(t, "apiVersion: tollgate.dev/v1alpha1\nkind: Backend\nmetadata: {}\nspec:\n  provider: openai\n  colour: blue\n")
	require.Equal(t, []string{
		`policy.yaml:3: Backend/: metadata.name: is required`,
		`policy.yaml:6: Backend/: spec.colour: unknown field "colour" (known fields: addresses, hostname, modelMap, port, protocol, provider, region, schema, tls)`,
	}, rendered(vs))
}

func TestSourceLineOf(t *testing.T) {
	src := &Source{File: "f.yaml", Line: 10, Fields: map[string]int{
		"spec":                                 14,
		"spec.rules":                           15,
		"spec.rules[0]":                        16,
		"spec.rules[0].matches":                17,
		"spec.rules[0].matches[0].path":        18,
		"spec.rules[0].backendRefs[1].name":    25,
		"metadata.labels.app.kubernetes.io/ok": 3,
	}}
	for path, want := range map[string]int{
		"spec":                                    14,
		"spec.rules[0].matches":                   17,
		"spec.rules[0].matches[0]":                17, // the list item itself is unknown: its parent
		"spec.rules[0].matches[0].path":           18,
		"spec.rules[0].matches[0].path.value":     18,
		"spec.rules[0].matches[0].path.value.x.y": 18,
		"spec.rules[0].backendRefs[1].name":       25,
		"spec.rules[0].backendRefs[1].weight":     16,
		"spec.rules[3].name":                      15,
		"spec.hostnames[2]":                       14,
		"metadata.name":                           10, // no ancestor at all: the object
		"":                                        10,
		"metadata.labels.app.kubernetes.io/ok":    3,
	} {
		require.Equal(t, want, src.LineOf(path), "LineOf(%q)", path)
	}
	var nilSrc *Source
	require.Equal(t, 0, nilSrc.LineOf("spec"))
	require.Equal(t, 7, (&Source{Line: 7}).LineOf("spec.x"))

	// The same through the decoder: the violation of a field that was not
	// written lands on its closest written ancestor.
	_, vs := decodeString(t, routeDoc("  parentRefs: [{name: gw}]\n  rules:\n  - matches:\n    - path:\n        type: Exact\n    backendRefs: [{name: be}]\n"))
	require.Equal(t, []string{
		`policy.yaml:9: HTTPRoute/rt: spec.rules[0].matches[0].path.value: "" must start with '/'`,
	}, rendered(vs))
}

func TestViolationError(t *testing.T) {
	for _, tc := range []struct {
		v    Violation
		want string
	}{
		{Violation{File: "a.yaml", Line: 3, Object: "Backend/x", Field: "spec.port", Msg: "bad"}, "a.yaml:3: Backend/x: spec.port: bad"},
		{Violation{File: "a.yaml", Object: "Backend/x", Msg: "bad"}, "a.yaml: Backend/x: bad"},
		{Violation{Line: 3, Field: "spec", Msg: "bad"}, "spec: bad"},
		{Violation{Msg: "bad"}, "bad"},
	} {
		require.Equal(t, tc.want, tc.v.Error())
	}
	vs := Violations{{File: "b.yaml", Line: 1, Msg: "x"}, {File: "a.yaml", Line: 9, Msg: "y"}, {File: "a.yaml", Line: 2, Msg: "z"}}
	err := vs.Err()
	require.EqualError(t, err, "a.yaml:2: z\na.yaml:9: y\nb.yaml:1: x")
	got, ok := AsViolations(err)
	require.True(t, ok)
	require.Len(t, got, 3)
	require.NoError(t, Violations(nil).Err())
	one, ok := AsViolations(Violation{Msg: "m"})
	require.True(t, ok)
	require.Equal(t, Violations{{Msg: "m"}}, one)
	_, ok = AsViolations(errorString("plain"))
	require.False(t, ok)
}

type errorString string

func (e errorString) Error() string { return string(e) }

func TestSchemeKinds(t *testing.T) {
	s := NewScheme()
	require.Equal(t, []string{KindBackend, KindGateway, KindHTTPRoute}, s.Kinds())
	require.Panics(t, func() { s.Register(KindGateway, func() Object { return &Gateway{} }) })
	require.True(t, strings.Contains(ProviderNames()[0], "anthropic"))
}

// Nested aliases that would expand a small file into billions of values are
// refused quickly instead of exhausting memory.
func TestDecodeAliasExpansionIsBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("expands aliases up to the million-value cap; skipped with -short")
	}
	refs := func(anchor string) string {
		return "[" + strings.TrimSuffix(strings.Repeat("*"+anchor+", ", 300), ", ") + "]"
	}
	doc := "apiVersion: tollgate.dev/v1alpha1\nkind: HTTPRoute\nmetadata: {name: bomb}\n" +
		"x: [&h {name: a, value: b}, &m {headers: " + refs("h") + "}, &r {matches: " + refs("m") + ", backendRefs: [{name: x}]}]\n" +
		"spec:\n  parentRefs: [{name: g}]\n  rules: " + refs("r") + "\n"
	_, vs := decodeString(t, doc)
	require.Contains(t, vs.Error(), "spec.rules")
	require.Contains(t, vs.Error(), "expands to more than 1000000 values through aliases")
}

// Only true and false are booleans; YAML 1.1 spellings are refused rather
// than silently read as false.
func TestDecodeYAMLBooleans(t *testing.T) {
	_, vs := decodeString(t, backendDoc("  provider: openai\n  tls: !!bool yes\n"))
	require.Equal(t, []string{`policy.yaml:7: Backend/be: spec.tls: must be true or false, got boolean yes`}, rendered(vs))
	_, vs = decodeString(t, backendDoc("  provider: openai\n  port: !!int eighty\n"))
	require.Equal(t, []string{`policy.yaml:7: Backend/be: spec.port: must be an integer, got "eighty"`}, rendered(vs))
}
