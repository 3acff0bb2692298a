package translate

import (
	"net"
	"strconv"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/tollgate-dev/tollgate/model"
)

// enforceAlways is the ejection probability tollgate gives every detector
// it turns on. Envoy's default for consecutive gateway failures is 0
// (counted, never enforced), which would leave a provider answering 503
// in service.
const enforceAlways = 100

// applyQoS adds a backend's QoSController settings to its cluster: outlier
// detection, circuit breaker limits merged into the EgressPolicy's
// thresholds (lowering refuses a limit both set), and health checks. A
// backend without a QoSController keeps Envoy's defaults: no ejection, no
// probes.
func applyQoS(c *clusterv3.Cluster, b *model.BackendConfig) {
	q := b.QoS
	if q == nil {
		return
	}
	c.OutlierDetection = OutlierDetection(q)
	mergeQoSCircuitBreakers(c, q.CircuitBreakers)
	if hc := HealthCheck(b); hc != nil {
		c.HealthChecks = []*corev3.HealthCheck{hc}
	}
}

// OutlierDetection turns a backend's QoS settings into Envoy's passive
// health checking, or nil when every detector is off.
//
// Local and external failures are split, so that a connect failure, a TLS
// failure, a reset or a timeout counts towards consecutive local-origin
// failures and only answers the provider actually sent count towards the
// 5xx and gateway-failure counts. A 429 is not a failure: Envoy counts
// every non-5xx answer as a success (and resets the counts), which is
// right for a rate limit that refuses one request; the route's retries
// move that request to another backend.
//
// Success-rate ejection is off unless configured, for external and local
// failures alike (Envoy would otherwise enforce both by default once a
// backend has five hosts).
func OutlierDetection(q *model.QoSSettings) *clusterv3.OutlierDetection {
	o := q.OutlierDetection
	if o == nil {
		return nil
	}
	od := &clusterv3.OutlierDetection{
		Consecutive_5Xx:                        wrapperspb.UInt32(o.Consecutive5xx),
		EnforcingConsecutive_5Xx:               enforcing(o.Consecutive5xx > 0),
		ConsecutiveGatewayFailure:              wrapperspb.UInt32(o.ConsecutiveGatewayFailures),
		EnforcingConsecutiveGatewayFailure:     enforcing(o.ConsecutiveGatewayFailures > 0),
		SplitExternalLocalOriginErrors:         true,
		ConsecutiveLocalOriginFailure:          wrapperspb.UInt32(o.ConsecutiveLocalOriginFailures),
		EnforcingConsecutiveLocalOriginFailure: enforcing(o.ConsecutiveLocalOriginFailures > 0),
		Interval:                               durationpb.New(o.Interval),
		BaseEjectionTime:                       durationpb.New(o.BaseEjectionTime),
		MaxEjectionTime:                        durationpb.New(o.MaxEjectionTime),
		MaxEjectionPercent:                     wrapperspb.UInt32(o.MaxEjectionPercent),
		EnforcingSuccessRate:                   enforcing(o.SuccessRate != nil),
		EnforcingLocalOriginSuccessRate:        enforcing(o.SuccessRate != nil),
	}
	if sr := o.SuccessRate; sr != nil {
		od.SuccessRateMinimumHosts = wrapperspb.UInt32(sr.MinimumHosts)
		od.SuccessRateRequestVolume = wrapperspb.UInt32(sr.RequestVolume)
		// Envoy takes the factor in thousandths.
		od.SuccessRateStdevFactor = wrapperspb.UInt32(uint32(sr.StdevFactor*1000 + 0.5))
	}
	if q.HealthCheck != nil {
		// A probe that passes proves the health endpoint answers, not that
		// completions do: it must not cut short an ejection that real
		// traffic earned.
		od.SuccessfulActiveHealthCheckUnejectHost = wrapperspb.Bool(false)
	}
	return od
}

func enforcing(on bool) *wrapperspb.UInt32Value {
	if on {
		return wrapperspb.UInt32(enforceAlways)
	}
	return wrapperspb.UInt32(0)
}

// mergeQoSCircuitBreakers sets the QoSController's limits on the default
// priority thresholds, next to the EgressPolicy's.
func mergeQoSCircuitBreakers(c *clusterv3.Cluster, cb model.QoSCircuitBreakers) {
	if cb.MaxConnections == nil && cb.MaxPendingRequests == nil && cb.MaxRequests == nil && cb.MaxRetries == nil && cb.RetryBudget == nil {
		return
	}
	if c.CircuitBreakers == nil {
		c.CircuitBreakers = &clusterv3.CircuitBreakers{}
	}
	var t *clusterv3.CircuitBreakers_Thresholds
	for _, th := range c.CircuitBreakers.Thresholds {
		if th.Priority == corev3.RoutingPriority_DEFAULT {
			t = th
			break
		}
	}
	if t == nil {
		t = &clusterv3.CircuitBreakers_Thresholds{Priority: corev3.RoutingPriority_DEFAULT}
		c.CircuitBreakers.Thresholds = append(c.CircuitBreakers.Thresholds, t)
	}
	if cb.MaxConnections != nil {
		t.MaxConnections = wrapperspb.UInt32(*cb.MaxConnections)
	}
	if cb.MaxPendingRequests != nil {
		t.MaxPendingRequests = wrapperspb.UInt32(*cb.MaxPendingRequests)
	}
	if cb.MaxRequests != nil {
		t.MaxRequests = wrapperspb.UInt32(*cb.MaxRequests)
	}
	if cb.MaxRetries != nil {
		t.MaxRetries = wrapperspb.UInt32(*cb.MaxRetries)
	}
	if rb := cb.RetryBudget; rb != nil {
		t.RetryBudget = &clusterv3.CircuitBreakers_Thresholds_RetryBudget{
			BudgetPercent:       &typev3.Percent{Value: rb.BudgetPercent},
			MinRetryConcurrency: wrapperspb.UInt32(rb.MinRetryConcurrency),
		}
	}
}

// HealthCheck is the backend's active HTTP health check, or nil. Probes
// use the cluster's own transport socket (SNI, verification, ALPN) and the
// protocol the backend speaks; Host is the backend's hostname, since
// Envoy's default would be the cluster name.
func HealthCheck(b *model.BackendConfig) *corev3.HealthCheck {
	if b.QoS == nil || b.QoS.HealthCheck == nil {
		return nil
	}
	h := b.QoS.HealthCheck
	http := &corev3.HealthCheck_HttpHealthCheck{
		Host: healthCheckHost(b),
		Path: h.Path,
	}
	for _, code := range h.ExpectedStatuses {
		http.ExpectedStatuses = append(http.ExpectedStatuses, &typev3.Int64Range{Start: int64(code), End: int64(code) + 1})
	}
	hc := &corev3.HealthCheck{
		Timeout:            durationpb.New(h.Timeout),
		Interval:           durationpb.New(h.Interval),
		UnhealthyThreshold: wrapperspb.UInt32(h.UnhealthyThreshold),
		HealthyThreshold:   wrapperspb.UInt32(h.HealthyThreshold),
		HealthChecker:      &corev3.HealthCheck_HttpHealthCheck_{HttpHealthCheck: http},
	}
	switch b.Protocol {
	case model.ProtocolAuto:
		// The probe speaks HTTP/1.1 and offers only http/1.1 in ALPN, which
		// every auto backend accepts. (HttpHealthCheck.use_alpn_protocol
		// would follow the negotiated protocol, but only Envoy 1.40 knows
		// it.)
		hc.TlsOptions = &corev3.HealthCheck_TlsOptions{AlpnProtocols: []string{"http/1.1"}}
	case model.ProtocolHTTP2:
		http.CodecClientType = typev3.CodecClientType_HTTP2
	}
	return hc
}

// healthCheckHost is the Host of a probe: the backend's hostname, or for a
// backend known only by static addresses, its first address.
func healthCheckHost(b *model.BackendConfig) string {
	if b.Hostname != "" || len(b.Addresses) == 0 {
		return b.Hostname
	}
	a := b.Addresses[0]
	return net.JoinHostPort(a.IP, strconv.FormatUint(uint64(a.Port), 10))
}
