package xds

import (
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Label values that stand for what policies do not define, so that a
// client-chosen node.cluster or type URL cannot grow a metric without bound.
const (
	unknownGateway = "_unknown"
	otherType      = "other"
)

// Reasons a change is refused, as tollgate_refused_changes_total counts them.
const (
	// RefusedInvalidPolicy: the policies have violations (decoding,
	// resolution, lowering or translation).
	RefusedInvalidPolicy = "invalid_policy"
	// RefusedEnvoyWouldRefuse: the generated configuration fails Envoy's
	// own constraints (a tollgate bug).
	RefusedEnvoyWouldRefuse = "envoy_would_refuse"
	// RefusedPlaintextSecrets: plaintext xDS would serve secrets.
	RefusedPlaintextSecrets = "plaintext_secrets"
)

// durationBuckets span a millisecond to a minute: reloads and translations
// of small policy sets take milliseconds, large ones seconds.
var durationBuckets = prometheus.ExponentialBucketsRange(0.001, 60, 16)

// convergenceBuckets span 5 ms to 10 minutes: a local Envoy ACKs within
// milliseconds, a fleet behind a slow network or warming clusters within
// minutes.
var convergenceBuckets = prometheus.ExponentialBucketsRange(0.005, 600, 18)

// Metrics are tollgate's own Prometheus metrics. One Metrics is shared by
// the xDS server (connections, pushes, ACKs, convergence, translation) and
// the store (reloads, refused changes), which sees it through its own
// small interface.
type Metrics struct {
	registry *prometheus.Registry

	pushes       *prometheus.CounterVec
	acks         *prometheus.CounterVec
	nacks        *prometheus.CounterVec
	convergence  *prometheus.HistogramVec
	incomplete   *prometheus.CounterVec
	reload       *prometheus.HistogramVec
	translation  prometheus.Histogram
	validation   prometheus.Histogram
	refused      *prometheus.CounterVec
	connectedDsc *prometheus.Desc
	rateLimitDsc *prometheus.Desc

	mu      sync.Mutex
	servers []*Server // read by the connected-nodes collector
}

// NewMetrics returns tollgate's metrics on a registry of their own (not
// Prometheus' global default, so that libraries cannot add to it), with
// the Go runtime and process collectors.
func NewMetrics() *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		registry: reg,
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_xds_pushes_total",
			Help: "xDS responses sent to Envoys, by gateway, short resource type and stream kind (sotw or delta).",
		}, []string{"gateway", "type", "stream"}),
		acks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_xds_acks_total",
			Help: "xDS responses Envoys accepted (ACK), by gateway, type and stream kind.",
		}, []string{"gateway", "type", "stream"}),
		nacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_xds_nacks_total",
			Help: "xDS responses Envoys rejected (NACK), by gateway, type and stream kind.",
		}, []string{"gateway", "type", "stream"}),
		convergence: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tollgate_convergence_seconds",
			Help:    "Seconds from the publication of a new configuration for a gateway until every node of that gateway connected at that time ACKed it (nodes that disconnect or NACK are dropped from the wait).",
			Buckets: convergenceBuckets,
		}, []string{"gateway"}),
		incomplete: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_convergence_incomplete_total",
			Help: "Nodes whose wait for a published configuration ended without an ACK: reason nack (the node rejected it) or superseded (a newer configuration was published first).",
		}, []string{"gateway", "reason"}),
		reload: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tollgate_reload_duration_seconds",
			Help:    "Seconds the store spent decoding, resolving and lowering the policies of one change (translation and publication excluded), by result (applied or refused).",
			Buckets: durationBuckets,
		}, []string{"result"}),
		translation: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tollgate_translation_duration_seconds",
			Help:    "Seconds spent translating a resolved configuration into Envoy resources.",
			Buckets: durationBuckets,
		}),
		validation: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tollgate_validation_duration_seconds",
			Help:    "Seconds spent checking the generated Envoy resources against Envoy's constraints before publishing them.",
			Buckets: durationBuckets,
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_refused_changes_total",
			Help: "Changes refused while the last good configuration stayed, by reason: invalid_policy, envoy_would_refuse or plaintext_secrets.",
		}, []string{"reason"}),
		connectedDsc: prometheus.NewDesc("tollgate_connected_nodes",
			"Envoy streams connected, by gateway (_unknown: no policy defines the gateway the node names) and stream kind (sotw or delta).",
			[]string{"gateway", "stream"}, nil),
		rateLimitDsc: prometheus.NewDesc("tollgate_ratelimit_instances",
			"Rate limit service instances connected for their gateway's RateLimitConfig, by gateway (_unknown: no gateway with a rate limit service by that name).",
			[]string{"gateway"}, nil),
	}
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.pushes, m.acks, m.nacks, m.convergence, m.incomplete,
		m.reload, m.translation, m.validation, m.refused,
		connectedCollector{m},
	)
	return m
}

// Registry is where the metrics are registered, for the /metrics handler.
func (m *Metrics) Registry() *prometheus.Registry { return m.registry }

// Handler serves the metrics in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{Registry: m.registry})
}

// ObserveReload records the time the store spent on one change.
func (m *Metrics) ObserveReload(d time.Duration, err error) {
	if m == nil {
		return
	}
	result := "applied"
	if err != nil {
		result = "refused"
	}
	m.reload.WithLabelValues(result).Observe(d.Seconds())
}

// RefusedChange counts a change refused for reason (one of the Refused
// constants).
func (m *Metrics) RefusedChange(reason string) {
	if m == nil {
		return
	}
	m.refused.WithLabelValues(reason).Inc()
}

// refusalReason classifies an error of Publish.
func refusalReason(err error) string {
	var re *errEnvoyWouldRefuse
	switch {
	case errors.Is(err, ErrPlaintextSecrets):
		return RefusedPlaintextSecrets
	case errors.As(err, &re):
		return RefusedEnvoyWouldRefuse
	}
	return RefusedInvalidPolicy
}

// errEnvoyWouldRefuse marks a failed ValidateDeep, for refusalReason.
type errEnvoyWouldRefuse struct{ err error }

func (e *errEnvoyWouldRefuse) Error() string { return e.err.Error() }
func (e *errEnvoyWouldRefuse) Unwrap() error { return e.err }

func (m *Metrics) attach(s *Server) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.servers = append(m.servers, s)
}

// connectedCollector counts connected streams at scrape time from the
// tracker, so the gauge can never drift from /status/nodes.
type connectedCollector struct{ m *Metrics }

func (c connectedCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.m.connectedDsc
	ch <- c.m.rateLimitDsc
}

func (c connectedCollector) Collect(ch chan<- prometheus.Metric) {
	c.m.mu.Lock()
	servers := append([]*Server(nil), c.m.servers...)
	c.m.mu.Unlock()
	type key struct{ gateway, stream string }
	counts := map[key]int{}
	rls := map[string]int{}
	for _, s := range servers {
		for _, n := range s.Status().Nodes {
			if n.NodeID == "" && n.Gateway == "" {
				continue // no request yet: no gateway to count it under
			}
			gw := n.Gateway
			if strings.HasPrefix(gw, rateLimitPrefix) {
				gw = strings.TrimPrefix(gw, rateLimitPrefix)
				if !n.KnownGateway {
					gw = unknownGateway
				}
				rls[gw]++
				continue
			}
			if !n.KnownGateway {
				gw = unknownGateway
			}
			counts[key{gw, streamKind(n.Stream)}]++
		}
	}
	for gw, n := range rls {
		ch <- prometheus.MustNewConstMetric(c.m.rateLimitDsc, prometheus.GaugeValue, float64(n), gw)
	}
	for k, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.m.connectedDsc, prometheus.GaugeValue, float64(n), k.gateway, k.stream)
	}
}

// streamKind is "sotw" or "delta" from a tracker stream name.
func streamKind(stream string) string {
	for i := 0; i < len(stream); i++ {
		if stream[i] == '/' {
			return stream[:i]
		}
	}
	return stream
}

// metricType bounds the type label to the types tollgate serves.
func metricType(typeURL string) string {
	for _, t := range typeOrder {
		if t == typeURL {
			return shortType(typeURL)
		}
	}
	return otherType
}

// metricGateway bounds the gateway label to gateways the policies define.
func (s *Server) metricGateway(gateway string) string {
	if gateway != "" && s.knownGateway(gateway) {
		return gateway
	}
	return unknownGateway
}

func (s *Server) countPush(stream, typeURL, gateway string) {
	s.metrics.pushes.WithLabelValues(s.metricGateway(gateway), metricType(typeURL), streamKind(stream)).Inc()
}

func (s *Server) countAck(stream, typeURL, gateway string) {
	s.metrics.acks.WithLabelValues(s.metricGateway(gateway), metricType(typeURL), streamKind(stream)).Inc()
}

func (s *Server) countNack(stream, typeURL, gateway string) {
	s.metrics.nacks.WithLabelValues(s.metricGateway(gateway), metricType(typeURL), streamKind(stream)).Inc()
}
