package main

import (
	"bufio"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/policies"
	"github.com/tollgate-dev/tollgate/store"
	"github.com/tollgate-dev/tollgate/translate"
)

// explainConfig loads a policy directory as tollgate serve does.
func explainConfig(t *testing.T, dir string) *model.Config {
	t.Helper()
	st, err := store.New(store.Options{})
	require.NoError(t, err)
	require.NoError(t, store.NewFileSource(dir, policies.NewScheme(), nil).Sync(st), dir)
	cfg := st.Config()
	require.NotNil(t, cfg)
	return cfg
}

func explain(t *testing.T, cfg *model.Config, ns, name string) *model.RouteExplanation {
	t.Helper()
	e, err := model.ExplainRoute(cfg, model.Ref{Kind: model.KindHTTPRoute, Namespace: ns, Name: name})
	require.NoError(t, err)
	return e
}

// explained finds the settings of scope and setting (scope "" matches any).
func explained(list []model.ExplainedSetting, scope, setting string) []model.ExplainedSetting {
	var out []model.ExplainedSetting
	for _, s := range list {
		if s.Setting == setting && (scope == "" || s.Scope == scope) {
			out = append(out, s)
		}
	}
	return out
}

func oneSetting(t *testing.T, list []model.ExplainedSetting, scope, setting string) model.ExplainedSetting {
	t.Helper()
	got := explained(list, scope, setting)
	require.Len(t, got, 1, "%s %s in %+v", scope, setting, list)
	return got[0]
}

// lineOf is the 1-based line of the first line of file that contains text
// at or after line from.
func lineOf(t *testing.T, file string, from int, text string) int {
	t.Helper()
	f, err := os.Open(file)
	require.NoError(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		if n >= from && strings.Contains(sc.Text(), text) {
			return n
		}
	}
	t.Fatalf("%s has no %q after line %d", file, text, from)
	return 0
}

// secretContents are the contents of every secret and private key file of
// the examples: none may appear in an explanation.
func secretContents(t *testing.T) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir("../../examples", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		secret := strings.Contains(filepath.ToSlash(path), "/secrets/") || strings.HasSuffix(path, ".key")
		if !secret {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, line := range strings.Split(string(data), "\n") {
			// PEM armour lines are not secret; the base64 body is.
			if line = strings.TrimSpace(line); len(line) >= 8 && !strings.HasPrefix(line, "-----") {
				out = append(out, line)
			}
		}
		return nil
	})
	require.NoError(t, err)
	require.NotEmpty(t, out)
	return out
}

// TestExplainExamples explains every route of every example and checks
// that each setting names an origin that exists, a field that origin
// really writes, and no secret.
func TestExplainExamples(t *testing.T) {
	secrets := secretContents(t)
	dirs, err := filepath.Glob("../../examples/*")
	require.NoError(t, err)
	routes := 0
	for _, dir := range dirs {
		name := filepath.Base(dir)
		if _, err := os.Stat(filepath.Join(dir, "README.md")); err != nil {
			continue
		}
		// An example whose policies sit in a folder of their own, next to
		// tollgate's configuration.
		if st, err := os.Stat(filepath.Join(dir, "policies")); err == nil && st.IsDir() {
			dir = filepath.Join(dir, "policies")
		}
		cfg := explainConfig(t, dir)
		for _, b := range cfg.Backends {
			// The control: the loaded credentials are among the contents
			// checked below.
			if c := b.Credential; c != nil && c.Secret != nil {
				require.Contains(t, secrets, string(c.Secret), "secret of %s", b.Ref)
			}
		}
		for _, o := range cfg.Objects {
			ref := model.RefOf(o)
			if ref.Kind != model.KindHTTPRoute {
				continue
			}
			routes++
			t.Run(name+"/"+ref.Name, func(t *testing.T) {
				e := explain(t, cfg, ref.Namespace, ref.Name)
				require.Len(t, e.Rules, len(o.(*model.HTTPRoute).Spec.Rules))
				checkExplanation(t, cfg, e, secrets)
			})
		}
	}
	require.Greater(t, routes, 20)
}

// checkExplanation checks what every explanation must hold: it is
// deterministic, it has listeners and settings, each setting names an
// origin of the config and a field that origin really writes (with its
// file and line), and no secret appears in it.
func checkExplanation(t *testing.T, cfg *model.Config, e *model.RouteExplanation, secrets []string) {
	t.Helper()
	objs := map[string]model.Object{}
	for _, o := range cfg.Objects {
		objs[model.RefOf(o).String()] = o
	}
	require.NotEmpty(t, e.Parents)
	require.NotEmpty(t, e.Settings)
	again, err := model.ExplainRoute(cfg, model.Ref{Kind: model.KindHTTPRoute, Namespace: e.Namespace, Name: e.Name})
	require.NoError(t, err)
	require.Equal(t, e, again, "explanations are deterministic")
	data, err := json.Marshal(e)
	require.NoError(t, err)
	for _, s := range secrets {
		require.NotContains(t, string(data), s, "a secret leaked into the explanation")
	}
	for _, s := range append(append([]model.ExplainedSetting{}, e.Settings...), e.Overridden...) {
		require.NotEmpty(t, s.Scope, "%+v", s)
		require.NotEmpty(t, s.Setting, "%+v", s)
		require.NotEmpty(t, s.From, "%+v", s)
		if s.From == model.FromDefault {
			require.Empty(t, s.Field, "%+v", s)
			continue
		}
		origin, ok := objs[s.From]
		require.True(t, ok, "%s: %s is not an object of the config", s.Setting, s.From)
		src := origin.GetSource()
		_, written := src.Fields[s.Field]
		require.True(t, written || s.Field == "spec", "%s: %s does not write %s", s.Setting, s.From, s.Field)
		require.Equal(t, src.File, s.File, "%+v", s)
		require.Equal(t, src.LineOf(s.Field), s.Line, "%+v", s)
	}
}

// TestExplainProvenance checks concrete attributions in example 10: a
// rule's own timeout, a gateway's guard rail, a route's override of it.
func TestExplainProvenance(t *testing.T) {
	dir := "../../examples/10-provider-features"
	cfg := explainConfig(t, dir)
	anthropicFile := filepath.Join(dir, "anthropic.yaml")
	guardFile := filepath.Join(dir, "guardrails.yaml")

	e := explain(t, cfg, "default", "anthropic")
	require.Equal(t, "HTTPRoute/anthropic", e.Route)
	require.Equal(t, []string{"api.anthropic.com", "anthropic.llm.internal"}, e.Hostnames)
	require.Equal(t, []model.ExplainedParent{{Gateway: "Gateway/egress", Listener: "http", Port: 10080, Protocol: "HTTP", Mode: "Endpoint",
		Field: "spec.parentRefs[0]", Line: lineOf(t, anthropicFile, e.Line, "parentRefs")}}, e.Parents)
	require.Equal(t, []string{"path Exact /v1/messages/count_tokens"}, e.Rules[0].Matches)
	require.Equal(t, "count-tokens", e.Rules[0].Name)

	// The rule's own timeout wins over the backend's EgressPolicy, which is
	// listed as overridden.
	timeout := oneSetting(t, e.Settings, "rule[0]", "timeout")
	require.Equal(t, "30s", timeout.Value)
	require.Equal(t, "HTTPRoute/anthropic", timeout.From)
	require.Equal(t, "spec.rules[0].timeouts.request", timeout.Field)
	require.Equal(t, lineOf(t, anthropicFile, e.Line, "request: 30s"), timeout.Line)
	lost := oneSetting(t, e.Overridden, "rule[0]", "timeout")
	require.Equal(t, "10m", lost.Value)
	require.Equal(t, "EgressPolicy/anthropic", lost.From)
	require.Equal(t, "HTTPRoute/anthropic", lost.OverriddenBy)
	// The second rule has none: the backend's EgressPolicy sets it.
	timeout = oneSetting(t, e.Settings, "rule[1]", "timeout")
	require.Equal(t, "10m", timeout.Value)
	require.Equal(t, "EgressPolicy/anthropic", timeout.From)
	require.Equal(t, "spec.timeouts.request", timeout.Field)
	require.Equal(t, lineOf(t, anthropicFile, 1, "request: 10m"), timeout.Line)

	// The gateway's GuardRailsPolicy sets the deny list of every route.
	deny := oneSetting(t, e.Settings, "route", "guardRails.models.deny")
	require.Equal(t, "GuardRailsPolicy/org-models", deny.From)
	require.Equal(t, "spec.models.deny", deny.Field)
	require.Equal(t, lineOf(t, guardFile, 1, "deny:"), deny.Line)
	require.Equal(t, []any{"Exact gpt-4-32k", "Prefix claude-3-opus", "RegularExpression .*-(preview|experimental)(-.*)?"}, jsonRoundTrip(t, deny.Value))

	// The credential is named by its file, never by its value.
	cred := oneSetting(t, e.Settings, "backend Backend/anthropic", "credential")
	require.Equal(t, "APIKey from file secrets/anthropic.key", cred.Value)
	require.Equal(t, "CredentialInjector/anthropic-key", cred.From)
	require.Equal(t, "spec.apiKey.secret", cred.Field)
	header := oneSetting(t, e.Settings, "backend Backend/anthropic", "credential.header")
	require.Equal(t, "x-api-key: <key>", header.Value)
	require.Equal(t, model.FromDefault, header.From)

	// A route-level GuardRailsPolicy replaces the gateway's cap and adds an
	// allow list; the gateway's deny list still applies.
	e = explain(t, cfg, "default", "anthropic-extended")
	tokens := oneSetting(t, e.Settings, "route", "guardRails.maxOutputTokens")
	require.Equal(t, "64000 (Clamp)", tokens.Value)
	require.Equal(t, "GuardRailsPolicy/extended-models", tokens.From)
	require.Equal(t, "spec.maxOutputTokens", tokens.Field)
	require.Equal(t, lineOf(t, guardFile, lineOf(t, guardFile, 1, "extended-models"), "maxOutputTokens"), tokens.Line)
	lost = oneSetting(t, e.Overridden, "route", "guardRails.maxOutputTokens")
	require.Equal(t, "32768 (Refuse)", lost.Value)
	require.Equal(t, "GuardRailsPolicy/org-models", lost.From)
	require.Equal(t, "GuardRailsPolicy/extended-models", lost.OverriddenBy)
	require.Equal(t, "GuardRailsPolicy/extended-models", oneSetting(t, e.Settings, "route", "guardRails.models.allow").From)
	require.Equal(t, "GuardRailsPolicy/org-models", oneSetting(t, e.Settings, "route", "guardRails.models.deny").From)
	beta := oneSetting(t, e.Settings, "backend Backend/anthropic-extended", "credential.headers.anthropic-beta")
	require.Equal(t, "spec.apiKey.headers.anthropic-beta", beta.Field)
	require.Equal(t, "CredentialInjector/anthropic-extended-key", beta.From)
	maxReq := oneSetting(t, e.Settings, "backend Backend/anthropic-extended", "egress.maxRequests")
	require.EqualValues(t, 32, maxReq.Value)
	require.Equal(t, "spec.connectionLimits.maxRequests", maxReq.Field)
}

func jsonRoundTrip(t *testing.T, v any) any {
	t.Helper()
	data, err := json.Marshal(v)
	require.NoError(t, err)
	var out any
	require.NoError(t, json.Unmarshal(data, &out))
	return out
}

// TestExplainDefaultsMatchTranslate checks the defaults the explanation
// reports against the ones translation applies.
func TestExplainDefaultsMatchTranslate(t *testing.T) {
	cfg := explainConfig(t, "../../examples/quickstart")
	e := explain(t, cfg, "", "openai")
	def := translate.EffectiveRetry(cfg.Gateways[0], cfg.Gateways[0].Listeners[0].Routes[0])
	for setting, want := range map[string]any{
		"retry.numRetries":           *def.NumRetries,
		"retry.retryOn":              def.RetryOn,
		"retry.retriableStatusCodes": def.RetriableStatusCodes,
		"retry.baseInterval":         "250ms",
		"retry.honorRetryAfter":      *def.HonorRetryAfter,
		"retry.bufferLimit":          model.ByteSize{Bytes: *def.BufferLimit}.String(),
	} {
		s := oneSetting(t, e.Settings, "route", setting)
		require.Equal(t, model.FromDefault, s.From, setting)
		require.Equal(t, jsonRoundTrip(t, want), jsonRoundTrip(t, s.Value), setting)
	}
	require.Equal(t, translate.DefaultBaseInterval, *def.BaseInterval)
	require.Equal(t, "10s", oneSetting(t, e.Settings, "backend Backend/openai", "egress.connectTimeout").Value)
	require.Equal(t, "10s", translate.DefaultConnectTimeout.String())
	require.Equal(t, "5m", oneSetting(t, e.Settings, "rule[0]", "timeout").Value)
	require.Equal(t, model.DefaultRequestTimeout, cfg.Gateways[0].Listeners[0].Routes[0].Rules[0].Timeout)

	// Example 3's gateway back-off sets some fields; the rest stay defaults.
	cfg = explainConfig(t, "../../examples/03-cloud-failover")
	e = explain(t, cfg, "default", "chat")
	n := oneSetting(t, e.Settings, "route", "retry.numRetries")
	require.EqualValues(t, 3, n.Value)
	require.Equal(t, "GuardRailsPolicy/egress-backoff", n.From)
	require.Equal(t, "spec.backoff.retries", n.Field)
	require.Equal(t, model.FromDefault, oneSetting(t, e.Settings, "route", "retry.retryOn").From)
	roles := []string{}
	for _, b := range e.Rules[0].Backends {
		roles = append(roles, b.Backend+" "+b.Role)
	}
	require.Equal(t, []string{"Backend/openai primary", "Backend/azure-openai primary", "Backend/anthropic fail-over 1"}, roles)
}

const explainGateways = `apiVersion: tollgate.dev/v1alpha1
kind: Gateway
metadata: {name: east}
spec:
  listeners:
  - {name: http, port: 10080, protocol: HTTP}
---
apiVersion: tollgate.dev/v1alpha1
kind: Gateway
metadata: {name: west}
spec:
  listeners:
  - {name: http, port: 10081, protocol: HTTP}
---
apiVersion: tollgate.dev/v1alpha1
kind: Backend
metadata: {name: openai}
spec:
  provider: openai
  modelMap: [{from: gpt-4o, to: gpt-4o-2024-08-06}]
---
apiVersion: tollgate.dev/v1alpha1
kind: HTTPRoute
metadata: {name: chat, namespace: team-a}
spec:
  parentRefs: [{name: east, namespace: default}, {name: west, namespace: default}]
  rules:
  - backendRefs: [{name: openai, namespace: default}]
`

const explainPolicies = `apiVersion: tollgate.dev/v1alpha1
kind: GuardRailsPolicy
metadata: {name: east-backoff}
spec:
  targetRefs: [{kind: Gateway, name: east}]
  backoff: {retries: 4, baseInterval: 1s}
---
apiVersion: tollgate.dev/v1alpha1
kind: GuardRailsPolicy
metadata: {name: west-backoff}
spec:
  targetRefs: [{kind: Gateway, name: west}]
  backoff: {retries: 1}
---
apiVersion: tollgate.dev/v1alpha1
kind: GuardRailsPolicy
metadata: {name: chat-backoff, namespace: team-a}
spec:
  targetRefs: [{kind: HTTPRoute, name: chat}]
  backoff: {baseInterval: 2s}
---
apiVersion: tollgate.dev/v1alpha1
kind: EgressPolicy
metadata: {name: a-first}
spec:
  targetRefs: [{kind: Backend, name: openai}]
  timeouts: {connect: 3s}
---
apiVersion: tollgate.dev/v1alpha1
kind: EgressPolicy
metadata: {name: b-second}
spec:
  targetRefs: [{kind: Backend, name: openai}]
  timeouts: {connect: 7s}
---
apiVersion: tollgate.dev/v1alpha1
kind: QoSController
metadata: {name: openai-health}
spec:
  targetRefs: [{kind: Backend, name: openai}]
  outlierDetection: {consecutive5xx: 7}
  circuitBreakers: {maxRetries: 5}
  healthCheck: {path: /health}
---
apiVersion: tollgate.dev/v1alpha1
kind: RateLimitPolicy
metadata: {name: openai-local}
spec:
  targetRefs: [{kind: Backend, name: openai}]
  local: {requests: 100, per: Minute}
---
apiVersion: tollgate.dev/v1alpha1
kind: RateLimitPolicy
metadata: {name: chat-local, namespace: team-a}
spec:
  targetRefs: [{kind: HTTPRoute, name: chat}]
  local: {requests: 10, per: Second}
---
apiVersion: tollgate.dev/v1alpha1
kind: CredentialInjector
metadata: {name: openai-oauth}
spec:
  targetRefs: [{kind: Backend, name: openai}]
  oauth2:
    tokenURL: https://auth.example.com/oauth/token
    clientID: gateway
    clientSecret: {file: secrets/oauth-client-secret}
    scopes: [inference]
`

// explainOAuthSecret is the client secret of explainPolicies.
const explainOAuthSecret = "oauth-secret-explain-9f1c"

// TestExplainOverridesAndConflicts: a route's policy overrides the
// gateways' field by field, gateways that disagree are told apart, and a
// policy that lost a conflict is listed as overridden.
func TestExplainOverridesAndConflicts(t *testing.T) {
	dir := t.TempDir()
	writePolicies(t, dir, map[string]string{"gateways.yaml": explainGateways, "policies.yaml": explainPolicies})
	require.NoError(t, os.Mkdir(filepath.Join(dir, "secrets"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "secrets", "oauth-client-secret"), []byte(explainOAuthSecret+"\n"), 0o600))
	cfg := explainConfig(t, dir)
	e := explain(t, cfg, "team-a", "chat")
	checkExplanation(t, cfg, e, []string{explainOAuthSecret})
	require.Equal(t, "HTTPRoute/team-a/chat", e.Route)
	require.Len(t, e.Parents, 2)
	const backend = "backend Backend/openai"

	// QoS: written fields point at the policy, the others are its
	// defaults.
	c5 := oneSetting(t, e.Settings, backend, "qos.outlierDetection.consecutive5xx")
	require.EqualValues(t, 7, c5.Value)
	require.Equal(t, "QoSController/openai-health", c5.From)
	require.Equal(t, "spec.outlierDetection.consecutive5xx", c5.Field)
	gw := oneSetting(t, e.Settings, backend, "qos.outlierDetection.consecutiveGatewayFailures")
	require.EqualValues(t, 3, gw.Value)
	require.Equal(t, model.FromDefault, gw.From)
	require.EqualValues(t, 5, oneSetting(t, e.Settings, backend, "qos.circuitBreakers.maxRetries").Value)
	require.Contains(t, oneSetting(t, e.Settings, backend, "qos.healthCheck").Value, "GET /health every 30s")

	// The route's local limit replaces the backend's.
	local := oneSetting(t, e.Settings, "rule[0]", "rateLimits.local")
	require.Equal(t, "10 requests per second, counted by each Envoy", local.Value)
	require.Equal(t, "RateLimitPolicy/team-a/chat-local", local.From)
	require.Equal(t, "spec.local", local.Field)
	lostLocal := oneSetting(t, e.Overridden, "rule[0]", "rateLimits.local")
	require.Equal(t, "RateLimitPolicy/openai-local", lostLocal.From)
	require.Equal(t, "RateLimitPolicy/team-a/chat-local", lostLocal.OverriddenBy)
	require.Equal(t, "RateLimitPolicy/openai-local", oneSetting(t, e.Settings, backend, "rateLimits").From)

	// OAuth2: the client secret is named by its file.
	cred := oneSetting(t, e.Settings, backend, "credential")
	require.Equal(t, "OAuth2 client credentials, client secret from file secrets/oauth-client-secret", cred.Value)
	require.Equal(t, "spec.oauth2.clientSecret", cred.Field)
	require.Equal(t, "gateway", oneSetting(t, e.Settings, backend, "credential.oauth2.clientID").Value)
	require.Equal(t, []any{"gpt-4o → gpt-4o-2024-08-06"}, jsonRoundTrip(t, oneSetting(t, e.Settings, backend, "modelMap").Value))

	// The route's baseInterval wins on both gateways: one entry.
	base := oneSetting(t, e.Settings, "route", "retry.baseInterval")
	require.Equal(t, "2s", base.Value)
	require.Equal(t, "GuardRailsPolicy/team-a/chat-backoff", base.From)
	require.Equal(t, "spec.backoff.baseInterval", base.Field)
	lost := oneSetting(t, e.Overridden, "route on Gateway/east", "retry.baseInterval")
	require.Equal(t, "1s", lost.Value)
	require.Equal(t, "GuardRailsPolicy/east-backoff", lost.From)
	require.Equal(t, "GuardRailsPolicy/team-a/chat-backoff", lost.OverriddenBy)
	// The gateways disagree on the retries: one entry each.
	require.EqualValues(t, 4, oneSetting(t, e.Settings, "route on Gateway/east", "retry.numRetries").Value)
	require.EqualValues(t, 1, oneSetting(t, e.Settings, "route on Gateway/west", "retry.numRetries").Value)
	require.Equal(t, "GuardRailsPolicy/west-backoff", oneSetting(t, e.Settings, "route on Gateway/west", "retry.numRetries").From)
	require.Empty(t, explained(e.Settings, "route", "retry.numRetries"))

	// EgressPolicy/b-second lost to a-first (first by name).
	connect := oneSetting(t, e.Settings, "backend Backend/openai", "egress.connectTimeout")
	require.Equal(t, "3s", connect.Value)
	require.Equal(t, "EgressPolicy/a-first", connect.From)
	conflict := oneSetting(t, e.Overridden, "backend Backend/openai", "egress")
	require.Equal(t, "EgressPolicy/b-second", conflict.From)
	require.Equal(t, "EgressPolicy/a-first", conflict.OverriddenBy)
	require.Equal(t, "spec.targetRefs[0]", conflict.Field)
	require.Contains(t, conflict.Note, "already applies EgressPolicy")
	found := false
	for _, c := range e.Conditions {
		found = found || (c.Object == "EgressPolicy/b-second" && c.Reason == "Conflicted")
	}
	require.True(t, found, "%+v", e.Conditions)

	// Not found: the error says so and lists the routes.
	_, err := model.ExplainRoute(cfg, model.Ref{Kind: model.KindHTTPRoute, Namespace: "team-a", Name: "nope"})
	require.ErrorIs(t, err, model.ErrRouteNotFound)
	require.EqualError(t, err, "HTTPRoute/team-a/nope does not exist; the HTTPRoutes are: HTTPRoute/team-a/chat")
}

// TestExplainCLI runs tollgate explain route against a served example.
func TestExplainCLI(t *testing.T) {
	inst, _ := startTollgateWith(t, "../../examples/10-provider-features", allowPlaintextSecrets)
	server := "http://" + inst.AdminAddr.String()
	secrets := secretContents(t)
	noSecret := func(out string) {
		t.Helper()
		for _, s := range secrets {
			require.NotContains(t, out, s)
		}
	}

	code, out, errOut := cli(t, "explain", "route", "default/anthropic-extended", "--server", server)
	require.Equal(t, 0, code, errOut)
	noSecret(out)
	require.Contains(t, out, "Route:      HTTPRoute/anthropic-extended (../../examples/10-provider-features/anthropic.yaml:")
	require.Contains(t, out, "Listeners:  Gateway/egress listener http (port 10080, HTTP)")
	require.Contains(t, out, "Hostnames:  claude-extended.llm.internal")
	require.Contains(t, out, "-> Backend/anthropic-extended  weight 1, priority 0 (primary), api.anthropic.com:443, anthropic")
	require.Regexp(t, `(?m)^SCOPE +SETTING +VALUE +FROM +FIELD$`, out)
	require.Regexp(t, `(?m)^route +guardRails\.models\.deny +Exact gpt-4-32k, Prefix claude-3-opus, .* +GuardRailsPolicy/org-models +spec\.models\.deny \(guardrails\.yaml:\d+\)$`, out)
	require.Regexp(t, `(?m)^backend Backend/anthropic-extended +credential +APIKey from file secrets/anthropic\.key +CredentialInjector/anthropic-extended-key +spec\.apiKey\.secret \(anthropic\.yaml:\d+\)$`, out)
	require.Contains(t, out, "Overridden (set, but not in effect):")
	require.Regexp(t, `(?m)^route +guardRails\.maxOutputTokens +32768 \(Refuse\) +GuardRailsPolicy/org-models +spec\.maxOutputTokens \(guardrails\.yaml:\d+\) +GuardRailsPolicy/extended-models$`, out)

	// NAME with -n, and -o json: the server's answer.
	code, out, errOut = cli(t, "explain", "route", "anthropic", "-n", "default", "-o", "json", "--server", server)
	require.Equal(t, 0, code, errOut)
	noSecret(out)
	var e model.RouteExplanation
	require.NoError(t, json.Unmarshal([]byte(out), &e))
	require.Equal(t, "HTTPRoute/anthropic", e.Route)
	timeout := oneSetting(t, e.Settings, "rule[0]", "timeout")
	require.Equal(t, "30s", timeout.Value)
	require.Equal(t, "HTTPRoute/anthropic", timeout.From)
	require.Equal(t, "spec.rules[0].timeouts.request", timeout.Field)
	require.Contains(t, out, `"overriddenBy": "HTTPRoute/anthropic"`)

	code, out, errOut = cli(t, "explain", "route", "default/openai", "-o", "yaml", "--server", server)
	require.Equal(t, 0, code, errOut)
	noSecret(out)
	require.Contains(t, out, "route: HTTPRoute/openai\n")
	require.Contains(t, out, "setting: credential.headers.openai-project\n")

	// Absent: a clear error, the routes listed, and a 404 Status.
	code, _, errOut = cli(t, "explain", "route", "default/nope", "--server", server)
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "HTTPRoute/nope does not exist; the HTTPRoutes are: HTTPRoute/anthropic, HTTPRoute/anthropic-extended, HTTPRoute/by-model, HTTPRoute/openai")
	resp, err := http.Get(server + "/explain/routes/default/nope")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
	var status map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&status))
	require.Equal(t, map[string]any{"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": float64(404), "reason": "NotFound",
		"message": "HTTPRoute/nope does not exist; the HTTPRoutes are: HTTPRoute/anthropic, HTTPRoute/anthropic-extended, HTTPRoute/by-model, HTTPRoute/openai"}, status)

	code, _, errOut = cli(t, "explain", "route", "team-a/chat", "-n", "team-b", "--server", server)
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "give one")
}

// TestExplainHandlerWithoutConfig: nothing to explain yet is a 503.
func TestExplainHandlerWithoutConfig(t *testing.T) {
	st, err := store.New(store.Options{})
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.Handle("GET /explain/routes/{ns}/{name}", explainHandler(st))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/explain/routes/default/chat")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Contains(t, string(body), `"reason": "ServiceUnavailable"`)
	require.Contains(t, string(body), `"kind": "Status"`)
}
