package model

import (
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// decodeFiles decodes each file, in lexical order of name, requiring that
// none has a violation, and returns every object.
func decodeFiles(t testing.TB, files map[string]string) []Object {
	t.Helper()
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	s := NewScheme()
	var all []Object
	for _, name := range names {
		objs, vs := s.Decode(name, []byte(files[name]))
		require.Empty(t, rendered(vs), "decoding %s", name)
		all = append(all, objs...)
	}
	return all
}

func routeNames(rs []*RouteConfig) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.Ref.String()
	}
	return out
}

var configFiles = map[string]string{
	"gateways.yaml": `apiVersion: tollgate.dev/v1alpha1
kind: Gateway
metadata: {name: edge, namespace: team-b}
spec:
  listeners:
  - {name: http, port: 9080, protocol: HTTP}
---
apiVersion: tollgate.dev/v1alpha1
kind: Gateway
metadata: {name: edge}
spec:
  listeners:
  - {name: http, port: 8080, protocol: HTTP}
  - {name: internal, address: 127.0.0.1, port: 8081, protocol: HTTP}
`,
	"backends/providers.yaml": `apiVersion: tollgate.dev/v1alpha1
kind: Backend
metadata: {name: openai}
spec: {provider: openai}
---
apiVersion: tollgate.dev/v1alpha1
kind: Backend
metadata: {name: anthropic}
spec: {provider: anthropic}
---
apiVersion: tollgate.dev/v1alpha1
kind: Backend
metadata: {name: claude, namespace: ml}
# Bedrock's OpenAI-compatible chat endpoint: the rule's clients speak OpenAI.
spec: {provider: bedrock, region: eu-west-1, schema: openai}
`,
	"backends/vllm.yaml": `apiVersion: tollgate.dev/v1alpha1
kind: Backend
metadata: {name: vllm, namespace: ml}
spec:
  hostname: vllm.ml.internal
  port: 8000
  addresses:
  - ip: 10.0.0.1
  - ip: 10.0.0.2
    port: 9000
`,
	"routes.yaml": `apiVersion: tollgate.dev/v1alpha1
kind: HTTPRoute
metadata: {name: zeta}
spec:
  parentRefs: [{name: edge}]
  rules:
  - backendRefs: [{name: openai}]
---
apiVersion: tollgate.dev/v1alpha1
kind: HTTPRoute
metadata: {name: chat, namespace: team-b}
spec:
  parentRefs:
  - {name: edge, namespace: default, sectionName: http}
  - {name: edge}
  hostnames: [chat.example.com]
  rules:
  - backendRefs:
    - {name: vllm, namespace: ml, weight: 3}
    - {name: claude, namespace: ml}
    - {name: openai, namespace: default, weight: 0}
---
apiVersion: tollgate.dev/v1alpha1
kind: HTTPRoute
metadata: {name: alpha}
spec:
  parentRefs: [{name: edge, sectionName: internal}]
  rules:
  - name: streaming
    matches: [{path: {value: /v1}}]
    backendRefs: [{name: anthropic}]
    timeouts: {request: 0s}
  - name: batch
    backendRefs: [{name: anthropic}]
    timeouts: {request: 10m}
  - name: defaulted
    backendRefs: [{name: anthropic}]
    timeouts: {}
`,
}

func TestBuildConfig(t *testing.T) {
	objs := decodeFiles(t, configFiles)
	before := make([]Ref, len(objs))
	for i, o := range objs {
		before[i] = RefOf(o)
	}

	cfg, vs := BuildConfig(objs, Settings{})
	require.Empty(t, rendered(vs))
	require.NotNil(t, cfg)

	// The input is left alone.
	for i, o := range objs {
		require.Equal(t, before[i], RefOf(o))
	}

	require.Equal(t, DefaultSystemCABundle, cfg.Settings.SystemCABundle)
	require.Len(t, cfg.Objects, 9)
	for i := 1; i < len(cfg.Objects); i++ {
		require.True(t, RefOf(cfg.Objects[i-1]).Less(RefOf(cfg.Objects[i])), "objects not sorted at %d", i)
	}

	// Backends, sorted by namespace and name, with defaults applied.
	require.Len(t, cfg.Backends, 4)
	var refs []string
	for _, b := range cfg.Backends {
		refs = append(refs, b.Ref.String())
	}
	require.Equal(t, []string{"Backend/anthropic", "Backend/openai", "Backend/ml/claude", "Backend/ml/vllm"}, refs)
	openai := cfg.Backends[1]
	require.Equal(t, "api.openai.com", openai.Hostname)
	require.Equal(t, uint32(443), openai.Port)
	require.True(t, openai.TLS)
	require.Equal(t, ProtocolAuto, openai.Protocol)
	require.Equal(t, "openai", openai.Provider)
	require.Empty(t, openai.Addresses)
	claude := cfg.Backends[2]
	require.Equal(t, "bedrock-runtime.eu-west-1.amazonaws.com", claude.Hostname)
	require.Equal(t, "eu-west-1", claude.Region)
	vllm := cfg.Backends[3]
	require.Equal(t, &BackendConfig{
		Ref:       Ref{Kind: KindBackend, Namespace: "ml", Name: "vllm"},
		Backend:   vllm.Backend,
		Hostname:  "vllm.ml.internal",
		Port:      8000,
		Addresses: []Address{{IP: "10.0.0.1", Port: 8000}, {IP: "10.0.0.2", Port: 9000}},
		TLS:       false,
		Protocol:  ProtocolHTTP1,
		Schema:    SchemaOpenAI,
	}, vllm)

	// Gateways, sorted by namespace and name; routes attached to the
	// listeners their parentRefs select, sorted by route identity.
	require.Len(t, cfg.Gateways, 2)
	def, teamB := cfg.Gateways[0], cfg.Gateways[1]
	require.Equal(t, Ref{Kind: KindGateway, Namespace: DefaultNamespace, Name: "edge"}, def.Ref)
	require.Equal(t, Ref{Kind: KindGateway, Namespace: "team-b", Name: "edge"}, teamB.Ref)
	require.Equal(t, "edge", GatewayKey(def.Ref))
	require.Equal(t, "team-b/edge", GatewayKey(teamB.Ref))

	require.Len(t, def.Listeners, 2)
	require.Equal(t, "http", def.Listeners[0].Name)
	require.Equal(t, []string{"HTTPRoute/zeta", "HTTPRoute/team-b/chat"}, routeNames(def.Listeners[0].Routes))
	require.Equal(t, "internal", def.Listeners[1].Name)
	require.Equal(t, "127.0.0.1", def.Listeners[1].BindAddress())
	require.Equal(t, []string{"HTTPRoute/alpha", "HTTPRoute/zeta"}, routeNames(def.Listeners[1].Routes))
	require.Len(t, teamB.Listeners, 1)
	require.Equal(t, []string{"HTTPRoute/team-b/chat"}, routeNames(teamB.Listeners[0].Routes))
	// One RouteConfig per route, shared by every listener it is attached to.
	require.Same(t, def.Listeners[0].Routes[0], def.Listeners[1].Routes[1])
	require.Same(t, def.Listeners[0].Routes[1], teamB.Listeners[0].Routes[0])

	// Cross-namespace backendRefs resolve; weights default to 1.
	chat := teamB.Listeners[0].Routes[0]
	require.Equal(t, []string{"chat.example.com"}, chat.Hostnames)
	require.Len(t, chat.Rules, 1)
	var got []string
	for _, wb := range chat.Rules[0].Backends {
		got = append(got, fmt.Sprintf("%s=%d", wb.Backend.Ref, wb.Weight))
	}
	require.Equal(t, []string{"Backend/ml/vllm=3", "Backend/ml/claude=1", "Backend/openai=0"}, got)
	require.Same(t, vllm, chat.Rules[0].Backends[0].Backend)
	require.Same(t, openai, chat.Rules[0].Backends[2].Backend)

	// Timeouts: 0s disables, an explicit value overrides, absent defaults.
	alpha := def.Listeners[1].Routes[0]
	require.Len(t, alpha.Rules, 3)
	require.Equal(t, RuleConfig{Index: 0, Name: "streaming", Matches: []RouteMatch{{Path: &PathMatch{Value: "/v1"}}},
		Backends: []WeightedBackend{{Backend: cfg.Backends[0], Weight: 1}}, Timeout: 0, TimeoutSet: true}, *alpha.Rules[0])
	require.Equal(t, 10*time.Minute, alpha.Rules[1].Timeout)
	require.Equal(t, 2, alpha.Rules[2].Index)
	require.Equal(t, DefaultRequestTimeout, alpha.Rules[2].Timeout)
	require.Equal(t, DefaultRequestTimeout, chat.Rules[0].Timeout)

	require.Same(t, def, cfg.Gateway("edge"))
	require.Nil(t, cfg.Gateway("nope"))
}

func TestBuildConfigSettings(t *testing.T) {
	cfg, vs := BuildConfig(nil, Settings{SystemCABundle: "/etc/pki/tls/certs/ca-bundle.crt"})
	require.Empty(t, vs)
	require.Equal(t, "/etc/pki/tls/certs/ca-bundle.crt", cfg.Settings.SystemCABundle)
	require.Empty(t, cfg.Gateways)
	require.Empty(t, cfg.Backends)
	require.Empty(t, cfg.Objects)
}

func TestBuildConfigRequestTimeout(t *testing.T) {
	for _, tc := range []struct {
		timeouts string
		want     time.Duration
	}{
		{"", DefaultRequestTimeout},
		{"    timeouts: {}\n", DefaultRequestTimeout},
		{"    timeouts: {request: null}\n", DefaultRequestTimeout},
		{"    timeouts: {request: 45s}\n", 45 * time.Second},
		{"    timeouts: {request: 1h30m}\n", 90 * time.Minute},
		{"    timeouts: {request: 0s}\n", 0},
		{"    timeouts: {request: \"0\"}\n", 0},
	} {
		t.Run(tc.timeouts, func(t *testing.T) {
			objs := decodeFiles(t, map[string]string{"p.yaml": gatewayDoc("  listeners: [{name: http, port: 80, protocol: HTTP}]\n") +
				"---\n" + backendDoc("  provider: openai\n") +
				"---\n" + routeDoc("  parentRefs: [{name: gw}]\n  rules:\n  - backendRefs: [{name: be}]\n"+tc.timeouts)})
			cfg, vs := BuildConfig(objs, Settings{})
			require.Empty(t, rendered(vs))
			rules := cfg.Gateways[0].Listeners[0].Routes[0].Rules
			require.Len(t, rules, 1)
			require.Equal(t, tc.want, rules[0].Timeout)
		})
	}
}

func TestBuildConfigViolations(t *testing.T) {
	const gw = `apiVersion: tollgate.dev/v1alpha1
kind: Gateway
metadata: {name: edge}
spec:
  listeners:
  - {name: http, port: 8080, protocol: HTTP}
  - {name: admin, port: 9090, protocol: HTTP}
`
	const be = `apiVersion: tollgate.dev/v1alpha1
kind: Backend
metadata:
  name: openai
spec:
  provider: openai
`
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  []string
	}{
		{
			name: "duplicate name across two files points at the first",
			files: map[string]string{
				"a.yaml": gw + "---\n" + be,
				"b.yaml": "# the same backend again\n" + be,
			},
			// The duplicate's line is its name's; the first is named by where it starts.
			want: []string{`b.yaml:5: Backend/openai: metadata.name: "openai" is already defined at a.yaml:9`},
		},
		{
			name: "duplicate name in three files and in one file",
			files: map[string]string{
				"z.yaml": be,
				"m.yaml": be + "---\n" + be,
				"a.yaml": "\n\n" + be,
			},
			want: []string{
				`m.yaml:4: Backend/openai: metadata.name: "openai" is already defined at a.yaml:3`,
				`m.yaml:11: Backend/openai: metadata.name: "openai" is already defined at a.yaml:3`,
				`z.yaml:4: Backend/openai: metadata.name: "openai" is already defined at a.yaml:3`,
			},
		},
		{
			name: "same name is fine across kinds and namespaces",
			files: map[string]string{
				"a.yaml": be + "---\n" + "apiVersion: tollgate.dev/v1alpha1\nkind: Backend\nmetadata: {name: openai, namespace: other}\nspec: {provider: openai}\n" +
					"---\n" + "apiVersion: tollgate.dev/v1alpha1\nkind: Gateway\nmetadata: {name: openai}\nspec: {listeners: [{name: http, port: 80, protocol: HTTP}]}\n",
			},
		},
		{
			name: "duplicate in a namespace",
			files: map[string]string{
				"a.yaml": "apiVersion: tollgate.dev/v1alpha1\nkind: Backend\nmetadata: {name: openai, namespace: ml}\nspec: {provider: openai}\n",
				"b.yaml": "apiVersion: tollgate.dev/v1alpha1\nkind: Backend\nmetadata: {name: openai, namespace: ml}\nspec: {provider: anthropic}\n",
			},
			want: []string{`b.yaml:3: Backend/ml/openai: metadata.name: "openai" is already defined at a.yaml:1`},
		},
		{
			name: "dangling backendRef",
			files: map[string]string{
				"a.yaml": gw + "---\n" + be,
				"r.yaml": "apiVersion: tollgate.dev/v1alpha1\nkind: HTTPRoute\nmetadata: {name: rt}\nspec:\n  parentRefs: [{name: edge}]\n  rules:\n  - backendRefs:\n    - name: openai\n    - name: anthropic\n",
			},
			want: []string{`r.yaml:9: HTTPRoute/rt: spec.rules[0].backendRefs[1].name: Backend/anthropic does not exist`},
		},
		{
			name: "backendRef defaults to the route's namespace",
			files: map[string]string{
				"a.yaml": gw + "---\n" + be,
				"r.yaml": "apiVersion: tollgate.dev/v1alpha1\nkind: HTTPRoute\nmetadata: {name: rt, namespace: team-a}\nspec:\n  parentRefs: [{name: edge, namespace: default}]\n  rules:\n  - backendRefs: [{name: openai}]\n",
			},
			want: []string{`r.yaml:7: HTTPRoute/team-a/rt: spec.rules[0].backendRefs[0].name: Backend/team-a/openai does not exist`},
		},
		{
			name: "dangling parentRef",
			files: map[string]string{
				"a.yaml": gw + "---\n" + be,
				"r.yaml": "apiVersion: tollgate.dev/v1alpha1\nkind: HTTPRoute\nmetadata: {name: rt}\nspec:\n  parentRefs:\n  - name: edge\n  - name: egde\n  rules:\n  - backendRefs: [{name: openai}]\n",
			},
			want: []string{`r.yaml:7: HTTPRoute/rt: spec.parentRefs[1].name: Gateway/egde does not exist`},
		},
		{
			name: "parentRef defaults to the route's namespace",
			files: map[string]string{
				"a.yaml": gw + "---\n" + be,
				"r.yaml": "apiVersion: tollgate.dev/v1alpha1\nkind: HTTPRoute\nmetadata: {name: rt, namespace: team-a}\nspec:\n  parentRefs: [{name: edge}]\n  rules:\n  - backendRefs: [{name: openai, namespace: default}]\n",
			},
			want: []string{`r.yaml:5: HTTPRoute/team-a/rt: spec.parentRefs[0].name: Gateway/team-a/edge does not exist`},
		},
		{
			name: "unknown sectionName",
			files: map[string]string{
				"a.yaml": gw + "---\n" + be,
				"r.yaml": "apiVersion: tollgate.dev/v1alpha1\nkind: HTTPRoute\nmetadata: {name: rt}\nspec:\n  parentRefs:\n  - name: edge\n    sectionName: https\n  rules:\n  - backendRefs: [{name: openai}]\n",
			},
			want: []string{`r.yaml:7: HTTPRoute/rt: spec.parentRefs[0].sectionName: Gateway/edge has no listener named "https"`},
		},
		{
			name: "dangling backend and parent of one route are both reported",
			files: map[string]string{
				"r.yaml": "apiVersion: tollgate.dev/v1alpha1\nkind: HTTPRoute\nmetadata: {name: rt}\nspec:\n  parentRefs: [{name: edge}]\n  rules:\n  - backendRefs: [{name: openai}]\n  - backendRefs: [{name: openai}, {name: vllm}]\n",
			},
			want: []string{
				`r.yaml:5: HTTPRoute/rt: spec.parentRefs[0].name: Gateway/edge does not exist`,
				`r.yaml:7: HTTPRoute/rt: spec.rules[0].backendRefs[0].name: Backend/openai does not exist`,
				`r.yaml:8: HTTPRoute/rt: spec.rules[1].backendRefs[0].name: Backend/openai does not exist`,
				`r.yaml:8: HTTPRoute/rt: spec.rules[1].backendRefs[1].name: Backend/vllm does not exist`,
			},
		},
		{
			name: "the same backend twice in one rule",
			files: map[string]string{
				"a.yaml": gw + "---\n" + be,
				"r.yaml": "apiVersion: tollgate.dev/v1alpha1\nkind: HTTPRoute\nmetadata: {name: rt}\nspec:\n  parentRefs: [{name: edge}]\n  rules:\n  - backendRefs:\n    - {name: openai, weight: 1}\n    - {name: openai, namespace: default, weight: 2}\n  - backendRefs: [{name: openai}]\n",
			},
			want: []string{`r.yaml:9: HTTPRoute/rt: spec.rules[0].backendRefs[1].name: Backend/openai is already listed at backendRefs[0]: give it one entry with the combined weight`},
		},
		{
			name: "violations from several routes and files, sorted",
			files: map[string]string{
				"a.yaml": gw,
				"b.yaml": be + "---\n" + "apiVersion: tollgate.dev/v1alpha1\nkind: HTTPRoute\nmetadata: {name: two}\nspec:\n  parentRefs: [{name: edge, sectionName: grpc}]\n  rules: [{backendRefs: [{name: gemini}]}]\n",
				"c.yaml": "apiVersion: tollgate.dev/v1alpha1\nkind: HTTPRoute\nmetadata: {name: one}\nspec:\n  parentRefs: [{name: edge, namespace: infra}]\n  rules: [{backendRefs: [{name: openai}]}]\n" +
					"---\n" + gw,
			},
			want: []string{
				`b.yaml:12: HTTPRoute/two: spec.parentRefs[0].sectionName: Gateway/edge has no listener named "grpc"`,
				`b.yaml:13: HTTPRoute/two: spec.rules[0].backendRefs[0].name: Backend/gemini does not exist`,
				`c.yaml:5: HTTPRoute/one: spec.parentRefs[0].name: Gateway/infra/edge does not exist`,
				`c.yaml:10: Gateway/edge: metadata.name: "edge" is already defined at a.yaml:1`,
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, vs := BuildConfig(decodeFiles(t, tc.files), Settings{})
			if len(tc.want) == 0 {
				require.Empty(t, rendered(vs))
				require.NotNil(t, cfg)
				return
			}
			require.Nil(t, cfg)
			// BuildConfig returns its violations sorted already.
			got := make([]string, len(vs))
			for i, v := range vs {
				got[i] = v.Error()
			}
			require.Equal(t, tc.want, got)
		})
	}
}

// Objects that come from the API have no file: the duplicate message still
// says something sensible, and the first object (in input order) wins.
func TestBuildConfigObjectsWithoutSource(t *testing.T) {
	mk := func(host string) *Backend {
		b := &Backend{Spec: BackendSpec{Hostname: host}}
		b.APIVersion, b.Kind = APIVersion, KindBackend
		b.Metadata.Name = "api"
		return b
	}
	first, second := mk("one.internal"), mk("two.internal")
	cfg, vs := BuildConfig([]Object{first, second}, Settings{})
	require.Nil(t, cfg)
	require.Equal(t, []string{`Backend/api: metadata.name: "api" is already defined at an earlier object`}, rendered(vs))

	cfg, vs = BuildConfig([]Object{first}, Settings{})
	require.Empty(t, vs)
	require.Same(t, first, cfg.Backends[0].Backend)
}
