package model

import "time"

// QoSSettings are a backend's QoSController settings with every default
// applied: how the gateway's Envoys judge the health of the backend's hosts
// and how much load and how many retries they allow it.
type QoSSettings struct {
	// Policy is the QoSController this comes from.
	Policy Ref
	// OutlierDetection is passive ejection from real traffic; nil when the
	// policy turns every detector off.
	OutlierDetection *QoSOutlierDetection
	// CircuitBreakers are limits merged, field by field, with the
	// EgressPolicy's connection limits (a field set by both is refused
	// while lowering).
	CircuitBreakers QoSCircuitBreakers
	// HealthCheck is active HTTP health checking; nil (the default) sends
	// the backend no probe traffic.
	HealthCheck *QoSHealthCheck
}

// QoSOutlierDetection ejects a host after consecutive failures. A zero
// count turns that detector off.
type QoSOutlierDetection struct {
	// Consecutive5xx counts 5xx responses from the backend.
	Consecutive5xx uint32
	// ConsecutiveGatewayFailures counts 502, 503 and 504 from the backend.
	ConsecutiveGatewayFailures uint32
	// ConsecutiveLocalOriginFailures counts failures Envoy sees itself:
	// connect failures, TLS failures, resets and timeouts.
	ConsecutiveLocalOriginFailures uint32
	// Interval is how often Envoy returns ejected hosts whose time is up
	// (and runs success-rate analysis).
	Interval time.Duration
	// BaseEjectionTime is the first ejection's length; the n-th lasts n
	// times as long, up to MaxEjectionTime.
	BaseEjectionTime time.Duration
	MaxEjectionTime  time.Duration
	// MaxEjectionPercent caps the share of the backend's hosts ejected at
	// once.
	MaxEjectionPercent uint32
	// SuccessRate, when set, also ejects hosts whose success rate is far
	// below their peers'.
	SuccessRate *QoSSuccessRate
}

// QoSSuccessRate is statistical outlier detection across a backend's hosts.
type QoSSuccessRate struct {
	MinimumHosts  uint32
	RequestVolume uint32
	// StdevFactor: hosts below mean - StdevFactor × stdev are ejected.
	StdevFactor float64
}

// QoSCircuitBreakers are per-Envoy limits on the backend's cluster; nil
// fields keep the EgressPolicy's value or Envoy's default.
type QoSCircuitBreakers struct {
	MaxConnections     *uint32
	MaxPendingRequests *uint32
	MaxRequests        *uint32
	MaxRetries         *uint32
	RetryBudget        *QoSRetryBudget
}

// QoSRetryBudget limits concurrent retries to a share of active requests.
type QoSRetryBudget struct {
	// BudgetPercent of active and pending requests that may be retries.
	BudgetPercent float64
	// MinRetryConcurrency is the floor of concurrent retries.
	MinRetryConcurrency uint32
}

// QoSHealthCheck is an active HTTP health check of every host of the
// backend.
type QoSHealthCheck struct {
	Path               string
	Interval           time.Duration
	Timeout            time.Duration
	UnhealthyThreshold uint32
	HealthyThreshold   uint32
	// ExpectedStatuses are the healthy response codes, sorted.
	ExpectedStatuses []uint32
}
