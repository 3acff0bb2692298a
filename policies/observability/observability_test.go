package observability_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/policies"
)

const base = `apiVersion: tollgate.dev/v1alpha1
kind: Gateway
metadata: {name: egress, namespace: platform}
spec:
  listeners:
  - {name: a, port: 10080, protocol: HTTP}
  - {name: b, port: 10081, protocol: HTTP}
---
apiVersion: tollgate.dev/v1alpha1
kind: Gateway
metadata: {name: untouched, namespace: platform}
spec:
  listeners: [{name: a, port: 10080, protocol: HTTP}]
---
apiVersion: tollgate.dev/v1alpha1
kind: Backend
metadata: {name: collector, namespace: platform}
spec: {hostname: otel.internal, port: 4317, protocol: HTTP/2}
`

func lower(t *testing.T, src string) (*model.Config, model.Violations) {
	t.Helper()
	objs, errs := policies.NewScheme().Decode("/policies/p.yaml", []byte(src))
	require.Empty(t, errs)
	cfg, errs := model.BuildConfig(objs, model.Settings{})
	require.Empty(t, errs)
	return cfg, policies.Lower(cfg, policies.Inputs{})
}

func TestDefaultsOnEveryListenerOfTheGateway(t *testing.T) {
	cfg, errs := lower(t, base+`---
apiVersion: tollgate.dev/v1alpha1
kind: ObservabilityPolicy
metadata: {name: obs, namespace: platform}
spec:
  targetRefs: [{kind: Gateway, name: egress}]
  accessLog:
    openTelemetry: {collectorRef: {name: collector}}
  tracing: {collectorRef: {name: collector}}
`)
	require.Empty(t, errs)
	g := cfg.Gateway("platform/egress")
	s := g.Listeners[0].Observability
	require.NotNil(t, s)
	require.Same(t, s, g.Listeners[1].Observability)
	require.Equal(t, model.Ref{Kind: "ObservabilityPolicy", Namespace: "platform", Name: "obs"}, s.Policy)
	require.Equal(t, g.Ref, s.Gateway)
	require.Nil(t, s.JSONLog)
	require.False(t, s.Metrics)
	require.Equal(t, model.DefaultOpenTelemetryLogName, s.OpenTelemetryLog.LogName)
	require.Equal(t, model.DefaultSamplingPercent, s.Tracing.SamplingPercent)
	require.Equal(t, "platform/egress", s.Tracing.ServiceName, "the gateway's key names its spans")
	require.Len(t, s.Collectors(), 1, "one collector for logs and traces is one cluster")
	require.Nil(t, cfg.Gateway("platform/untouched").Listeners[0].Observability)
}

func TestZeroSamplingIsKept(t *testing.T) {
	cfg, errs := lower(t, base+`---
apiVersion: tollgate.dev/v1alpha1
kind: ObservabilityPolicy
metadata: {name: obs, namespace: platform}
spec:
  targetRefs: [{kind: Gateway, name: egress}]
  tracing: {collectorRef: {name: collector}, samplingPercent: 0}
`)
	require.Empty(t, errs)
	require.Zero(t, cfg.Gateway("platform/egress").Listeners[0].Observability.Tracing.SamplingPercent)
}

func TestConflictingPoliciesFirstByNameWins(t *testing.T) {
	cfg, errs := lower(t, base+`---
apiVersion: tollgate.dev/v1alpha1
kind: ObservabilityPolicy
metadata: {name: b, namespace: platform}
spec:
  targetRefs: [{kind: Gateway, name: egress}]
  metrics: {enabled: true}
---
apiVersion: tollgate.dev/v1alpha1
kind: ObservabilityPolicy
metadata: {name: a, namespace: platform}
spec:
  targetRefs: [{kind: Gateway, name: egress}]
  accessLog: {json: {path: /var/log/envoy/access.json}}
`)
	require.Empty(t, errs)
	s := cfg.Gateway("platform/egress").Listeners[0].Observability
	require.Equal(t, "a", s.Policy.Name)
	require.False(t, s.Metrics)
	require.Len(t, cfg.Conditions, 1)
	require.Equal(t, "Conflicted", cfg.Conditions[0].Reason)
}
