package qoscontroller_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/model/modeltest"
	"github.com/tollgate-dev/tollgate/policies"
	"github.com/tollgate-dev/tollgate/policies/qoscontroller"
)

const base = modeltest.EgressToOpenAI + `---
`

// lower decodes base plus policies and lowers them; it returns the openai
// backend.
func lower(t *testing.T, policySrc string) (*model.Config, *model.BackendConfig, model.Violations) {
	t.Helper()
	objs, errs := policies.NewScheme().Decode("/p.yaml", []byte(base+policySrc))
	require.Empty(t, errs)
	cfg, errs := model.BuildConfig(objs, model.Settings{})
	require.Empty(t, errs)
	errs = policies.Lower(cfg, policies.Inputs{})
	return cfg, cfg.Backends[0], errs
}

func TestDefaults(t *testing.T) {
	_, b, errs := lower(t, `apiVersion: tollgate.dev/v1alpha1
kind: QoSController
metadata: {name: q}
spec: {targetRefs: [{kind: Backend, name: openai}]}
`)
	require.Empty(t, errs)
	require.Equal(t, &model.QoSSettings{
		Policy: model.Ref{Kind: qoscontroller.KindName, Namespace: "default", Name: "q"},
		OutlierDetection: &model.QoSOutlierDetection{
			Consecutive5xx:                 5,
			ConsecutiveGatewayFailures:     3,
			ConsecutiveLocalOriginFailures: 3,
			Interval:                       10 * time.Second,
			BaseEjectionTime:               30 * time.Second,
			MaxEjectionTime:                300 * time.Second,
			MaxEjectionPercent:             100,
		},
	}, b.QoS)
}

func TestOutlierDetection(t *testing.T) {
	for name, tc := range map[string]struct {
		spec string
		want *model.QoSOutlierDetection
	}{
		"all counts 0 turn it off": {
			spec: `{consecutive5xx: 0, consecutiveGatewayFailures: 0, consecutiveLocalOriginFailures: 0}`,
			want: nil,
		},
		"success rate alone keeps it on": {
			spec: `{consecutive5xx: 0, consecutiveGatewayFailures: 0, consecutiveLocalOriginFailures: 0, successRate: {}}`,
			want: &model.QoSOutlierDetection{
				Interval: 10 * time.Second, BaseEjectionTime: 30 * time.Second, MaxEjectionTime: 300 * time.Second, MaxEjectionPercent: 100,
				SuccessRate: &model.QoSSuccessRate{MinimumHosts: 5, RequestVolume: 100, StdevFactor: 1.9},
			},
		},
		"a long base ejection raises the default maximum": {
			spec: `{baseEjectionTime: 10m}`,
			want: &model.QoSOutlierDetection{
				Consecutive5xx: 5, ConsecutiveGatewayFailures: 3, ConsecutiveLocalOriginFailures: 3,
				Interval: 10 * time.Second, BaseEjectionTime: 10 * time.Minute, MaxEjectionTime: 10 * time.Minute, MaxEjectionPercent: 100,
			},
		},
	} {
		t.Run(name, func(t *testing.T) {
			_, b, errs := lower(t, `apiVersion: tollgate.dev/v1alpha1
kind: QoSController
metadata: {name: q}
spec:
  targetRefs: [{kind: Backend, name: openai}]
  outlierDetection: `+tc.spec+"\n")
			require.Empty(t, errs)
			require.Equal(t, tc.want, b.QoS.OutlierDetection)
		})
	}
}

// EgressPolicy and QoSController limits merge field by field; the same
// field in both is refused, naming both policies.
func TestCircuitBreakersWithEgressPolicy(t *testing.T) {
	egress := `apiVersion: tollgate.dev/v1alpha1
kind: EgressPolicy
metadata: {name: e}
spec:
  targetRefs: [{kind: Backend, name: openai}]
  connectionLimits: {maxConnections: 10}
---
`
	_, b, errs := lower(t, egress+`apiVersion: tollgate.dev/v1alpha1
kind: QoSController
metadata: {name: q}
spec:
  targetRefs: [{kind: Backend, name: openai}]
  circuitBreakers: {maxRequests: 20, retryBudget: {budgetPercent: 5}}
`)
	require.Empty(t, errs)
	require.Equal(t, uint32(10), *b.Egress.MaxConnections)
	require.Equal(t, uint32(20), *b.QoS.CircuitBreakers.MaxRequests)
	require.Equal(t, &model.QoSRetryBudget{BudgetPercent: 5, MinRetryConcurrency: 3}, b.QoS.CircuitBreakers.RetryBudget)

	_, _, errs = lower(t, egress+`apiVersion: tollgate.dev/v1alpha1
kind: QoSController
metadata: {name: q}
spec:
  targetRefs: [{kind: Backend, name: openai}]
  circuitBreakers:
    maxConnections: 10
`)
	require.Len(t, errs, 1)
	require.Equal(t, "/p.yaml:31: QoSController/q: spec.circuitBreakers.maxConnections: is also set by EgressPolicy/e "+
		"(spec.connectionLimits.maxConnections, /p.yaml:23): set each limit in one policy only", errs[0].Error())
}

func TestSecondControllerConflicts(t *testing.T) {
	cfg, b, errs := lower(t, `apiVersion: tollgate.dev/v1alpha1
kind: QoSController
metadata: {name: b-second}
spec:
  targetRefs: [{kind: Backend, name: openai}]
  circuitBreakers: {maxRequests: 1}
---
apiVersion: tollgate.dev/v1alpha1
kind: QoSController
metadata: {name: a-first}
spec:
  targetRefs: [{kind: Backend, name: openai}]
`)
	require.Empty(t, errs)
	require.Equal(t, "a-first", b.QoS.Policy.Name)
	require.Nil(t, b.QoS.CircuitBreakers.MaxRequests)
	require.Equal(t, []model.Condition{{
		Object: "QoSController/b-second", Type: "Accepted", Status: false, Reason: "Conflicted",
		Message: "QoSController/a-first already applies QoSController to Backend/openai; only one QoSController may target an object",
	}}, cfg.Conditions)
}

func TestHealthCheckDefaults(t *testing.T) {
	_, b, errs := lower(t, `apiVersion: tollgate.dev/v1alpha1
kind: QoSController
metadata: {name: q}
spec:
  targetRefs: [{kind: Backend, name: openai}]
  healthCheck: {path: /v1/models, expectedStatuses: [401, 200]}
`)
	require.Empty(t, errs)
	require.Equal(t, &model.QoSHealthCheck{
		Path:               "/v1/models",
		Interval:           30 * time.Second,
		Timeout:            5 * time.Second,
		UnhealthyThreshold: 3,
		HealthyThreshold:   2,
		ExpectedStatuses:   []uint32{200, 401},
	}, b.QoS.HealthCheck)
}
