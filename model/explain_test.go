package model

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The policy kinds live in policies/*, which import this package; these
// tests decode stand-ins that have the same field names, so that the
// explanation can find the fields lowering would have read, and set the
// effective settings by hand as lowering would.

type explainTestPolicy struct {
	Base `yaml:",inline"`
	Spec explainTestSpec `yaml:"spec"`
}

type explainTestSpec struct {
	TargetRefs []TargetRef         `yaml:"targetRefs"`
	Backoff    *explainTestBackoff `yaml:"backoff,omitempty"`
	Models     *struct {
		Deny  []ModelMatch `yaml:"deny,omitempty"`
		Allow []ModelMatch `yaml:"allow,omitempty"`
	} `yaml:"models,omitempty"`
	APIKey *struct {
		Secret SecretSource `yaml:"secret"`
	} `yaml:"apiKey,omitempty"`
}

type explainTestBackoff struct {
	Retries      *uint32   `yaml:"retries,omitempty"`
	BaseInterval *Duration `yaml:"baseInterval,omitempty"`
}

func (p *explainTestPolicy) Targets() []TargetRef { return p.Spec.TargetRefs }
func (p *explainTestPolicy) Validate(*Validator)  {}

const explainTestPolicies = `apiVersion: tollgate.dev/v1alpha1
kind: TestGuardRails
metadata: {name: gateway-rails}
spec:
  targetRefs: [{kind: Gateway, name: egress}]
  backoff:
    retries: 4
    baseInterval: 1s
  models:
    deny: [{value: gpt-4-32k}]
---
apiVersion: tollgate.dev/v1alpha1
kind: TestGuardRails
metadata: {name: route-rails}
spec:
  targetRefs: [{kind: HTTPRoute, name: openai}]
  backoff:
    retries: 1
---
apiVersion: tollgate.dev/v1alpha1
kind: TestCredential
metadata: {name: openai-key}
spec:
  targetRefs: [{kind: Backend, name: openai}]
  apiKey:
    secret: {file: secrets/openai.key}
`

// explainTestConfig builds the quickstart example with the stand-in
// policies, lowered by hand.
func explainTestConfig(t *testing.T) (*Config, string) {
	t.Helper()
	s := NewScheme()
	s.Register("TestGuardRails", func() Object { return &explainTestPolicy{} })
	s.Register("TestCredential", func() Object { return &explainTestPolicy{} })
	quickstart := "../examples/quickstart/policies.yaml"
	data, err := os.ReadFile(quickstart)
	require.NoError(t, err)
	objs, vs := s.Decode(quickstart, data)
	require.Empty(t, rendered(vs))
	more, vs := s.Decode("policies/rails.yaml", []byte(explainTestPolicies))
	require.Empty(t, rendered(vs))
	cfg, vs := BuildConfig(append(objs, more...), Settings{})
	require.Empty(t, rendered(vs))

	g := cfg.Gateways[0]
	rc := g.Listeners[0].Routes[0]
	b := cfg.Backends[0]
	gwPolicy := Ref{Kind: "TestGuardRails", Namespace: DefaultNamespace, Name: "gateway-rails"}
	routePolicy := Ref{Kind: "TestGuardRails", Namespace: DefaultNamespace, Name: "route-rails"}
	four, one, second := uint32(4), uint32(1), time.Second
	g.Retry = &RetrySettings{Policy: gwPolicy, NumRetries: &four, BaseInterval: &second}
	rc.Retry = &RetrySettings{Policy: routePolicy, NumRetries: &one}
	g.GuardRails = &GuardRailSettings{Policy: gwPolicy, DenyModels: []ModelMatch{{Value: "gpt-4-32k"}},
		Sources: map[string]Ref{GuardRailDenyModels: gwPolicy}}
	b.Credential = &Credential{Policy: Ref{Kind: "TestCredential", Namespace: DefaultNamespace, Name: "openai-key"},
		Kind: CredentialAPIKey, Header: "Authorization", Prefix: "Bearer ", Secret: []byte("sk-explain-test-never-shown")}
	return cfg, quickstart
}

func findExplained(t *testing.T, list []ExplainedSetting, scope, setting string) ExplainedSetting {
	t.Helper()
	var out []ExplainedSetting
	for _, s := range list {
		if s.Scope == scope && s.Setting == setting {
			out = append(out, s)
		}
	}
	require.Len(t, out, 1, "%s %s in %+v", scope, setting, list)
	return out[0]
}

func TestExplainRouteProvenance(t *testing.T) {
	cfg, quickstart := explainTestConfig(t)
	e, err := ExplainRoute(cfg, Ref{Name: "openai"})
	require.NoError(t, err)
	require.Equal(t, "HTTPRoute/openai", e.Route)
	require.Equal(t, quickstart, e.File)
	require.Equal(t, 20, e.Line)
	require.Equal(t, []string{"api.openai.com"}, e.Hostnames)
	require.Equal(t, []ExplainedParent{{Gateway: "Gateway/egress", Listener: "http", Port: 10080, Protocol: "HTTP", Mode: "Endpoint", Field: "spec.parentRefs[0]", Line: 26}}, e.Parents)
	require.Len(t, e.Rules, 1)
	require.Equal(t, ExplainedBackend{Backend: "Backend/openai", Weight: 1, Role: "primary", Address: "api.openai.com:443", Schema: "openai",
		Field: "spec.rules[0].backendRefs[0]", Line: 31}, e.Rules[0].Backends[0])

	// The route's retries win over the gateway's; the gateway's base
	// interval stays; the rest are defaults.
	n := findExplained(t, e.Settings, "route", "retry.numRetries")
	require.Equal(t, uint32(1), n.Value)
	require.Equal(t, "TestGuardRails/route-rails", n.From)
	require.Equal(t, "spec.backoff.retries", n.Field)
	require.Equal(t, "policies/rails.yaml", n.File)
	require.Equal(t, 18, n.Line)
	lost := findExplained(t, e.Overridden, "route", "retry.numRetries")
	require.Equal(t, uint32(4), lost.Value)
	require.Equal(t, "TestGuardRails/gateway-rails", lost.From)
	require.Equal(t, 7, lost.Line)
	require.Equal(t, "TestGuardRails/route-rails", lost.OverriddenBy)
	base := findExplained(t, e.Settings, "route", "retry.baseInterval")
	require.Equal(t, "1s", base.Value)
	require.Equal(t, "TestGuardRails/gateway-rails", base.From)
	require.Equal(t, 8, base.Line)
	require.Equal(t, FromDefault, findExplained(t, e.Settings, "route", "retry.retryOn").From)
	deny := findExplained(t, e.Settings, "route", "guardRails.models.deny")
	require.Equal(t, []string{"Exact gpt-4-32k"}, deny.Value)
	require.Equal(t, "spec.models.deny", deny.Field)
	require.Equal(t, 10, deny.Line)

	// Backend fields: written ones point at the Backend, the rest are
	// defaults; the rule's timeout is the default.
	region := findExplained(t, e.Settings, "backend Backend/openai", "region")
	require.Equal(t, "us", region.Value)
	require.Equal(t, "Backend/openai", region.From)
	require.Equal(t, "spec.region", region.Field)
	require.Equal(t, 18, region.Line)
	host := findExplained(t, e.Settings, "backend Backend/openai", "hostname")
	require.Equal(t, "spec.provider", host.Field)
	require.Equal(t, FromDefault, findExplained(t, e.Settings, "backend Backend/openai", "port").From)
	timeout := findExplained(t, e.Settings, "rule[0]", "timeout")
	require.Equal(t, "5m", timeout.Value)
	require.Equal(t, FromDefault, timeout.From)

	// The credential names its file; its value appears nowhere.
	cred := findExplained(t, e.Settings, "backend Backend/openai", "credential")
	require.Equal(t, "APIKey from file secrets/openai.key", cred.Value)
	require.Equal(t, "spec.apiKey.secret", cred.Field)
	require.Equal(t, "Authorization: Bearer <key>", findExplained(t, e.Settings, "backend Backend/openai", "credential.header").Value)
	data, err := json.Marshal(e)
	require.NoError(t, err)
	require.NotContains(t, string(data), "sk-explain-test")

	// Every key of the JSON is lowerCamelCase.
	var generic any
	require.NoError(t, json.Unmarshal(data, &generic))
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				require.Regexp(t, `^[a-z][A-Za-z0-9]*$`, k)
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(generic)
}

func TestExplainRouteNotFound(t *testing.T) {
	cfg, _ := explainTestConfig(t)
	_, err := ExplainRoute(cfg, Ref{Kind: KindHTTPRoute, Namespace: "team-a", Name: "chat"})
	require.True(t, errors.Is(err, ErrRouteNotFound))
	require.EqualError(t, err, "HTTPRoute/team-a/chat does not exist; the HTTPRoutes are: HTTPRoute/openai")
	_, err = ExplainRoute(cfg, Ref{Kind: KindBackend, Name: "openai"})
	require.EqualError(t, err, "Backend/openai: only an HTTPRoute can be explained")
	require.False(t, errors.Is(err, ErrRouteNotFound))
	_, err = ExplainRoute(nil, Ref{Name: "openai"})
	require.Error(t, err)

	// Many routes: the error says how to list them instead.
	var b strings.Builder
	b.WriteString("apiVersion: tollgate.dev/v1alpha1\nkind: Gateway\nmetadata: {name: egress}\nspec:\n  listeners: [{name: http, port: 10080, protocol: HTTP}]\n")
	b.WriteString("---\napiVersion: tollgate.dev/v1alpha1\nkind: Backend\nmetadata: {name: openai}\nspec: {provider: openai}\n")
	for i := range 20 {
		b.WriteString("---\napiVersion: tollgate.dev/v1alpha1\nkind: HTTPRoute\nmetadata: {name: r" + string(rune('a'+i)) + "}\n" +
			"spec:\n  parentRefs: [{name: egress}]\n  rules: [{backendRefs: [{name: openai}]}]\n")
	}
	b.WriteString("---\napiVersion: tollgate.dev/v1alpha1\nkind: HTTPRoute\nmetadata: {name: chat, namespace: team-a}\n" +
		"spec:\n  parentRefs: [{name: egress, namespace: default}]\n  rules: [{backendRefs: [{name: openai, namespace: default}]}]\n")
	objs, vs := NewScheme().Decode(filepath.Join("x", "routes.yaml"), []byte(b.String()))
	require.Empty(t, rendered(vs))
	cfg, vs = BuildConfig(objs, Settings{})
	require.Empty(t, rendered(vs))
	_, err = ExplainRoute(cfg, Ref{Name: "nope"})
	require.ErrorIs(t, err, ErrRouteNotFound)
	require.EqualError(t, err, "HTTPRoute/nope does not exist (there are 21 HTTPRoutes: list them with tollgate get httproutes -A)")
	_, err = ExplainRoute(cfg, Ref{Namespace: "team-a", Name: "nope"})
	require.EqualError(t, err, "HTTPRoute/team-a/nope does not exist; the HTTPRoutes of namespace team-a are: HTTPRoute/team-a/chat (list every namespace's with tollgate get httproutes -A)")
}

// TestExplainSpecValue reads fields by their YAML names.
func TestExplainSpecValue(t *testing.T) {
	cfg, _ := explainTestConfig(t)
	var p Object
	for _, o := range cfg.Objects {
		if RefOf(o).Name == "openai-key" {
			p = o
		}
	}
	require.NotNil(t, p)
	v, ok := specValue(p, "spec.apiKey.secret")
	require.True(t, ok)
	require.Equal(t, SecretSource{File: "secrets/openai.key"}, v.Interface())
	v, ok = specValue(p, "spec.targetRefs[0].kind")
	require.True(t, ok)
	require.Equal(t, "Backend", v.String())
	for _, missing := range []string{"spec.targetRefs[3]", "spec.nope", "spec.backoff.retries", "metadata.labels.x"} {
		_, ok = specValue(p, missing)
		require.False(t, ok, missing)
	}
	require.Equal(t, "5m", fmtDuration(5*time.Minute))
	require.Equal(t, "1h", fmtDuration(time.Hour))
	require.Equal(t, "1h30m", fmtDuration(90*time.Minute))
	require.Equal(t, "1m30s", fmtDuration(90*time.Second))
	require.Equal(t, "250ms", fmtDuration(250*time.Millisecond))
}
