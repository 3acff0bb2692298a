package model

// ObservabilitySettings are a gateway's ObservabilityPolicy, as every one of
// its listeners carries it (ListenerConfig.Observability): where the
// gateway's Envoys send their access logs, whether they count requests and
// tokens in their own stats, and where they send traces. Attribution
// (namespace, service account, SPIFFE ID) and accounting (models, tokens)
// come from the tollgate dynamic metadata the listener's own filters write
// from verified sources only; these settings only read them.
type ObservabilitySettings struct {
	// Policy is the ObservabilityPolicy this comes from.
	Policy Ref
	// Gateway is the gateway it targets, whose key (GatewayKey) every log
	// line, metric and span names.
	Gateway Ref
	// JSONLog is the JSON access log; nil means none.
	JSONLog *JSONAccessLog
	// OpenTelemetryLog is the OTLP access log; nil means none (or its
	// collector is unavailable: see the policy's condition).
	OpenTelemetryLog *OpenTelemetryAccessLog
	// Metrics turns on the request and token counters in the Envoys' own
	// stats (GET /stats/prometheus on their admin port).
	Metrics bool
	// Tracing is OpenTelemetry tracing; nil means none (or its collector
	// is unavailable).
	Tracing *TracingSettings
}

// HasAccessLog reports whether the policy names an access log of its own,
// which then replaces the gateway's default stdout log.
func (s *ObservabilitySettings) HasAccessLog() bool {
	return s != nil && (s.JSONLog != nil || s.OpenTelemetryLog != nil)
}

// Collectors are the backends the settings send OTLP to (a cluster each),
// without duplicates, in a stable order.
func (s *ObservabilitySettings) Collectors() []*BackendConfig {
	if s == nil {
		return nil
	}
	var out []*BackendConfig
	add := func(b *BackendConfig) {
		for _, o := range out {
			if o.Ref == b.Ref {
				return
			}
		}
		out = append(out, b)
	}
	if s.OpenTelemetryLog != nil {
		add(s.OpenTelemetryLog.Collector)
	}
	if s.Tracing != nil {
		add(s.Tracing.Collector)
	}
	return out
}

// JSONAccessLog is a JSON access log written by each Envoy.
type JSONAccessLog struct {
	// Path is an absolute path on the Envoy hosts; /dev/stdout and
	// /dev/stderr are the Envoy's own streams.
	Path string
}

// Paths of the Envoy's own streams, which get Envoy's stream loggers
// rather than a file.
const (
	PathStdout = "/dev/stdout"
	PathStderr = "/dev/stderr"
)

// OpenTelemetryAccessLog sends access log records over OTLP/gRPC.
type OpenTelemetryAccessLog struct {
	// Collector runs an OTLP/gRPC logs service; it speaks HTTP/2.
	Collector *BackendConfig
	// LogName names the log (Envoy's built-in log_name resource attribute).
	LogName string
	// ResourceAttributes are added to every record's resource.
	ResourceAttributes map[string]string
}

// TracingSettings are OpenTelemetry tracing of the gateway's requests.
type TracingSettings struct {
	// Collector runs an OTLP/gRPC trace service; it speaks HTTP/2.
	Collector *BackendConfig
	// SamplingPercent of requests without a sampled parent are traced,
	// 0 to 100.
	SamplingPercent float64
	// ServiceName is the spans' service.name.
	ServiceName string
}

// DefaultSamplingPercent is the share of requests traced when the policy
// sets no samplingPercent.
const DefaultSamplingPercent = 1.0

// DefaultOpenTelemetryLogName is the OTLP log name when the policy sets
// none.
const DefaultOpenTelemetryLogName = "tollgate"
