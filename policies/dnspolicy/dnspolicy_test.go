package dnspolicy_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/policies"
	"github.com/tollgate-dev/tollgate/policies/dnspolicy"
)

func TestParseResolver(t *testing.T) {
	for in, want := range map[string]string{
		"10.0.0.2":          "10.0.0.2:53",
		"10.0.0.2:5353":     "10.0.0.2:5353",
		"2001:db8::53":      "[2001:db8::53]:53",
		"[2001:db8::53]:54": "[2001:db8::53]:54",
		"::ffff:10.0.0.2":   "10.0.0.2:53",
	} {
		a, err := dnspolicy.ParseResolver(in)
		require.NoError(t, err, in)
		require.Equal(t, want, a.String(), in)
	}
	for _, in := range []string{"", "dns.google", "10.0.0.2:0", "10.0.0.2:99999", "fe80::1%eth0", "10.0.0.0/8"} {
		_, err := dnspolicy.ParseResolver(in)
		require.Error(t, err, in)
	}
}

func TestNormalizeSuffix(t *testing.T) {
	for in, want := range map[string]string{".openai.com": "openai.com", "OpenAI.com.": "openai.com", "a.b.example": "a.b.example"} {
		got, ok := dnspolicy.NormalizeSuffix(in)
		require.True(t, ok, in)
		require.Equal(t, want, got)
	}
	for _, in := range []string{"com", ".com", "", ".", "*.openai.com", "open_ai.com", "openai..com"} {
		_, ok := dnspolicy.NormalizeSuffix(in)
		require.False(t, ok, in)
	}
}

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
metadata: {name: vllm}
spec: {addresses: [{ip: 10.0.3.11}], port: 8000}
---
apiVersion: tollgate.dev/v1alpha1
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{name: egress}]
  rules: [{backendRefs: [{name: openai}, {name: vllm}]}]
`

// Checks follows lowering's choice of policy: of two DNSPolicies on one
// backend the first by name applies, so only its check runs; a Gateway
// target and a static backend ask for none.
func TestChecksFollowTheWinningPolicy(t *testing.T) {
	src := base + `---
apiVersion: tollgate.dev/v1alpha1
kind: DNSPolicy
metadata: {name: b-loses}
spec:
  targetRefs: [{kind: Backend, name: openai}]
  reverseDNS: {allowedSuffixes: [.loser.example]}
---
apiVersion: tollgate.dev/v1alpha1
kind: DNSPolicy
metadata: {name: a-wins}
spec:
  targetRefs: [{kind: Backend, name: openai}]
  resolvers: [10.0.0.53]
  refreshRate: 2m
  reverseDNS: {allowedSuffixes: [.OpenAI.com, openai.com]}
---
apiVersion: tollgate.dev/v1alpha1
kind: DNSPolicy
metadata: {name: gateway}
spec:
  targetRefs: [{kind: Gateway, name: egress}]
  addressFamily: IPv6
`
	objs, errs := policies.NewScheme().Decode("/p.yaml", []byte(src))
	require.Empty(t, errs)
	cfg, errs := model.BuildConfig(objs, model.Settings{})
	require.Empty(t, errs)
	require.Equal(t, []model.ReverseDNSCheck{{
		Hostname:        "api.openai.com",
		Resolvers:       []model.Address{{IP: "10.0.0.53", Port: 53}},
		Family:          model.FamilyIPv4Preferred,
		AllowedSuffixes: []string{"openai.com"},
		Interval:        2 * time.Minute,
	}}, dnspolicy.Checks(cfg))

	require.Empty(t, policies.Lower(cfg, policies.Inputs{}))
	var openai, vllm *model.BackendConfig
	for _, b := range cfg.Backends {
		switch b.Ref.Name {
		case "openai":
			openai = b
		case "vllm":
			vllm = b
		}
	}
	gw := model.Ref{Kind: model.KindGateway, Namespace: "default", Name: "egress"}
	// The backend's policy sets no family: the gateway's applies to Envoy.
	require.Equal(t, model.FamilyIPv6, openai.DNS.For(gw).AddressFamily)
	require.Equal(t, "a-wins", openai.DNS.Policy.Name)
	require.Nil(t, vllm.DNS.Gateways, "static addresses are not resolved")
	require.Len(t, cfg.Conditions, 2) // b-loses conflicted; openai not verified
}
