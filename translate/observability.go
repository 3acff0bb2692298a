package translate

import (
	"slices"
	"sort"
	"strings"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tracev3 "github.com/envoyproxy/go-control-plane/envoy/config/trace/v3"
	filev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	otelv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/open_telemetry/v3"
	statsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stats/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	metadatav3 "github.com/envoyproxy/go-control-plane/envoy/type/metadata/v3"
	tracingv3 "github.com/envoyproxy/go-control-plane/envoy/type/tracing/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	otlpcommonv1 "go.opentelemetry.io/proto/otlp/common/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/tollgate-dev/tollgate/model"
)

// Observability: a gateway's ObservabilityPolicy (story 12, outbound
// attribution) becomes, on each of its listeners' HTTP connection
// managers, access loggers (AccessLogs) and OpenTelemetry tracing
// (Tracing); its collectors become clusters like any backend's
// (ObservabilityBackends); and the clusters its routes send to carry the
// backend and provider they stand for (annotateClusters), because Envoy
// itself only knows the cluster.
//
// Everything that says who called and what it cost is read from the
// tollgate dynamic metadata (metadata.go), which the listener's own filters
// write from the verified client certificate and the request and response
// bodies (pipeline.go); nothing here reads a request header a workload
// could set. Like the default log, no sink records the query string (some
// providers take API keys there) or any credential header.
//
// Every field and extension here is in Envoy 1.37 (the stats access
// logger, envoy.access_loggers.stats, is new in 1.37; Envoy 1.40 deprecates
// its stat_prefix for stats_scope, which 1.37 and 1.38 lack, so stat_prefix
// it is, and a 1.40 Envoy logs a deprecation warning for it).

// Extension names.
const (
	accessLoggerFile     = "envoy.access_loggers.file"
	accessLoggerStdout   = "envoy.access_loggers.stdout"
	accessLoggerStderr   = "envoy.access_loggers.stderr"
	accessLoggerOTel     = "envoy.access_loggers.open_telemetry"
	accessLoggerStats    = "envoy.access_loggers.stats"
	tracerOpenTelemetry  = "envoy.tracers.opentelemetry"
	metadataKeyBackend   = "backend"
	metadataKeyProvider  = "provider"
	defaultLogBodyFormat = "%REQ(:METHOD)% %PATH(NQ)% %RESPONSE_CODE%"
)

// Metric names, as the stats access logger creates them; Envoy's
// Prometheus endpoint (GET /stats/prometheus) prefixes them with envoy_
// and turns every character outside [a-zA-Z0-9_] into _, in metric and
// label names alike (PrometheusStatsFormatter::metricName and
// sanitizeName, source/server/admin/prometheus_stats.cc):
// envoy_tollgate_requests and envoy_gen_ai_client_token_usage.
const (
	// RequestsStatPrefix and RequestsCounter: one per request that
	// reached the gateway's router or a local reply.
	RequestsStatPrefix = "tollgate"
	RequestsCounter    = "requests"
	// TokensStatPrefix and TokensCounter: the provider-reported tokens,
	// by gen_ai.token.type (OpenTelemetry GenAI semantic conventions'
	// gen_ai.client.token.usage, counted rather than a histogram).
	TokensStatPrefix = "gen_ai"
	TokensCounter    = "client.token.usage"
)

// Metric tag names: OpenTelemetry GenAI semantic conventions where one
// fits, tollgate.* for the attribution it has no name for.
const (
	TagGateway        = "tollgate.gateway"
	TagRoute          = "tollgate.route"
	TagBackend        = "tollgate.backend"
	TagNamespace      = "tollgate.namespace"
	TagServiceAccount = "tollgate.service_account"
	TagProvider       = "gen_ai.provider.name"
	TagRequestModel   = "gen_ai.request.model"
	TagResponseModel  = "gen_ai.response.model"
	TagTokenType      = "gen_ai.token.type"
	TagStatus         = "http.response.status_code"
)

// LogField is one field of the attribution access log.
type LogField struct{ name, format string }

// Name is the field's key in the JSON object and the OTLP attributes.
func (f LogField) Name() string { return f.name }

// Format is the substitution format Envoy fills it with.
func (f LogField) Format() string { return f.format }

// AttributionLogFields are the fields of every ObservabilityPolicy access
// log, JSON and OpenTelemetry alike, for the listener of gateway. Like
// accessLogFields: the path without its query string, no credential
// header.
//
// backend and provider come from the metadata annotateClusters puts on
// the route's cluster (%CLUSTER_METADATA% reads the cluster the route
// chose, StreamInfo::upstreamClusterInfo, which
// ConnectionManagerImpl::ActiveStream::refreshCachedRoute sets from the
// route entry: source/common/http/conn_manager_impl.cc): for a fail-over
// route that is the aggregate, which lists every member, as
// upstream_cluster does. A request that matched no route has neither.
//
// A request a rate limit refused has response_flags containing RL and
// response_code_details request_rate_limited (the filter's
// RcDetails::RateLimited, source/extensions/filters/http/ratelimit/ratelimit.cc);
// one whose limit could not be checked and fails closed, RLSE and
// rate_limiter_error.
func AttributionLogFields(gateway model.Ref, clientIdentity bool) []LogField {
	f := []LogField{
		{"start_time", "%START_TIME%"},
		{"request_id", "%REQ(X-REQUEST-ID)%"},
		{"gateway", model.GatewayKey(gateway)},
		{"method", "%REQ(:METHOD)%"},
		{"path", "%PATH(NQ)%"},
		{"authority", "%REQ(:AUTHORITY)%"},
		{"protocol", "%PROTOCOL%"},
		{"route", "%ROUTE_NAME%"},
		{"backend", "%CLUSTER_METADATA(" + MetadataNamespace + ":" + metadataKeyBackend + ")%"},
		{"provider", "%CLUSTER_METADATA(" + MetadataNamespace + ":" + metadataKeyProvider + ")%"},
		{"upstream_cluster", "%UPSTREAM_CLUSTER%"},
		{"upstream_host", "%UPSTREAM_HOST%"},
		{"upstream_attempts", "%UPSTREAM_REQUEST_ATTEMPT_COUNT%"},
		{"upstream_failure", "%UPSTREAM_TRANSPORT_FAILURE_REASON%"},
		{"spiffe_id", MetadataFormat(MetaSPIFFEID)},
		{"namespace", MetadataFormat(MetaNamespace)},
		{"service_account", MetadataFormat(MetaServiceAccount)},
		{"request_model", MetadataFormat(MetaRequestModel)},
		{"response_model", MetadataFormat(MetaResponseModel)},
		{"input_tokens", MetadataFormat(MetaInputTokens)},
		{"output_tokens", MetadataFormat(MetaOutputTokens)},
		{"cached_tokens", MetadataFormat(MetaCachedTokens)},
		{"status", "%RESPONSE_CODE%"},
		{"response_flags", "%RESPONSE_FLAGS%"},
		{"response_code_details", "%RESPONSE_CODE_DETAILS%"},
		{"bytes_received", "%BYTES_RECEIVED%"},
		{"bytes_sent", "%BYTES_SENT%"},
		// From the start of the request to the last byte sent, and to
		// the first byte read from the provider (its response headers,
		// which a streamed completion sends before its first token).
		{"duration_ms", "%DURATION%"},
		{"time_to_first_byte_ms", "%RESPONSE_DURATION%"},
		{"downstream_remote", "%DOWNSTREAM_REMOTE_ADDRESS%"},
		{"user_agent", "%REQ(USER-AGENT)%"},
	}
	if clientIdentity {
		f = append(f, LogField{ClientIdentityLogField, "%DOWNSTREAM_PEER_URI_SAN%"})
	}
	return f
}

// AccessLogs are a listener's access loggers. Without an ObservabilityPolicy,
// or with one that names no access log of its own, the default stdout log
// stays; the policy's sinks replace it, and its metrics add stats loggers.
func AccessLogs(l *model.ListenerConfig) []*accesslogv3.AccessLog {
	s := l.Observability
	clientIdentity := l.TLS != nil && l.TLS.Client != nil
	var out []*accesslogv3.AccessLog
	if !s.HasAccessLog() {
		out = append(out, stdoutAccessLog(clientIdentity))
	}
	if s == nil {
		return out
	}
	fields := AttributionLogFields(s.Gateway, clientIdentity)
	if j := s.JSONLog; j != nil {
		out = append(out, jsonAccessLog(j.Path, fields))
	}
	if o := s.OpenTelemetryLog; o != nil {
		out = append(out, otelAccessLog(o, fields))
	}
	if s.Metrics {
		out = append(out, statsAccessLogs(s)...)
	}
	return out
}

func jsonFormat(fields []LogField) *corev3.SubstitutionFormatString {
	m := make(map[string]*structpb.Value, len(fields))
	for _, f := range fields {
		m[f.name] = structpb.NewStringValue(f.format)
	}
	return &corev3.SubstitutionFormatString{
		Format: &corev3.SubstitutionFormatString_JsonFormat{JsonFormat: &structpb.Struct{Fields: m}},
	}
}

// jsonAccessLog writes the fields as one JSON object per line: to the
// Envoy's own stdout or stderr with the stream loggers, else to the file.
func jsonAccessLog(path string, fields []LogField) *accesslogv3.AccessLog {
	format := jsonFormat(fields)
	var name string
	var cfg proto.Message
	switch path {
	case model.PathStdout:
		name, cfg = accessLoggerStdout, &streamv3.StdoutAccessLog{AccessLogFormat: &streamv3.StdoutAccessLog_LogFormat{LogFormat: format}}
	case model.PathStderr:
		name, cfg = accessLoggerStderr, &streamv3.StderrAccessLog{AccessLogFormat: &streamv3.StderrAccessLog_LogFormat{LogFormat: format}}
	default:
		name, cfg = accessLoggerFile, &filev3.FileAccessLog{Path: path, AccessLogFormat: &filev3.FileAccessLog_LogFormat{LogFormat: format}}
	}
	return typedAccessLog(name, cfg, nil)
}

func typedAccessLog(name string, cfg proto.Message, filter *accesslogv3.AccessLogFilter) *accesslogv3.AccessLog {
	return &accesslogv3.AccessLog{
		Name:       name,
		Filter:     filter,
		ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: mustAny(cfg)},
	}
}

// collectorService is the gRPC service of an OTLP collector, through its
// backend's cluster, as ExtAuthz reaches a gRPC authorization service.
func collectorService(b *model.BackendConfig) *corev3.GrpcService { return backendGRPCService(b) }

// otelAccessLog sends the fields as the attributes of one OTLP log record
// per request, over the top-level grpc_service (Envoy 1.37; the older
// common_config is deprecated there).
func otelAccessLog(o *model.OpenTelemetryAccessLog, fields []LogField) *accesslogv3.AccessLog {
	attrs := &otlpcommonv1.KeyValueList{}
	for _, f := range fields {
		attrs.Values = append(attrs.Values, keyValue(f.name, f.format))
	}
	cfg := &otelv3.OpenTelemetryAccessLogConfig{
		GrpcService: collectorService(o.Collector),
		LogName:     o.LogName,
		Body:        &otlpcommonv1.AnyValue{Value: &otlpcommonv1.AnyValue_StringValue{StringValue: defaultLogBodyFormat}},
		Attributes:  attrs,
	}
	if len(o.ResourceAttributes) > 0 {
		ra := &otlpcommonv1.KeyValueList{}
		keys := make([]string, 0, len(o.ResourceAttributes))
		for k := range o.ResourceAttributes {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			ra.Values = append(ra.Values, keyValue(k, o.ResourceAttributes[k]))
		}
		cfg.ResourceAttributes = ra
	}
	return typedAccessLog(accessLoggerOTel, cfg, nil)
}

func keyValue(k, v string) *otlpcommonv1.KeyValue {
	return &otlpcommonv1.KeyValue{Key: k, Value: &otlpcommonv1.AnyValue{Value: &otlpcommonv1.AnyValue_StringValue{StringValue: v}}}
}

// statsAccessLogs are the request and token counters, as stats access
// loggers (extensions/access_loggers/stats/v3): each counter gets its tags
// from substitution formats evaluated per request, so every distinct tag
// set is its own series (StatsAccessLog::emitLog in
// source/extensions/access_loggers/stats/stats.cc calls
// Scope::counterFromStatNameWithTags with the formatted tags, which
// Prometheus renders as labels).
//
// Tag values are bounded by the configuration (gateway, route, backend,
// provider, status), by identities the gateway verified (namespace,
// service account) and by what the provider answered (the response model).
// The model a request names is the workload's own input: a workload
// sending a new name on every request would create a series each. So
// gen_ai.request.model is a tag only of requests whose response reported
// token usage, where the provider served that model; other requests count
// without it.
//
// A counter whose value format does not yield a number is not incremented
// and Envoy logs an error (getFormatValue, stats.cc): each token counter
// has its own logger, filtered on its metadata key being present
// (MetadataFilter::evaluate in source/common/access_log/access_log_impl.cc:
// a present key matches the value matcher, an absent one
// match_if_key_not_found).
func statsAccessLogs(s *model.ObservabilitySettings) []*accesslogv3.AccessLog {
	tag := func(name, format string) *statsv3.Config_Tag {
		return &statsv3.Config_Tag{Name: name, ValueFormat: format}
	}
	attribution := func(withRequestModel bool) []*statsv3.Config_Tag {
		tags := []*statsv3.Config_Tag{
			tag(TagGateway, model.GatewayKey(s.Gateway)),
			tag(TagRoute, "%ROUTE_NAME%"),
			tag(TagBackend, "%CLUSTER_METADATA("+MetadataNamespace+":"+metadataKeyBackend+")%"),
			tag(TagProvider, "%CLUSTER_METADATA("+MetadataNamespace+":"+metadataKeyProvider+")%"),
			tag(TagNamespace, MetadataFormat(MetaNamespace)),
			tag(TagServiceAccount, MetadataFormat(MetaServiceAccount)),
		}
		if withRequestModel {
			tags = append(tags, tag(TagRequestModel, MetadataFormat(MetaRequestModel)))
		}
		return append(tags, tag(TagResponseModel, MetadataFormat(MetaResponseModel)))
	}
	requests := func(accounted bool) *accesslogv3.AccessLog {
		tags := append(attribution(accounted), tag(TagStatus, "%RESPONSE_CODE%"))
		cfg := &statsv3.Config{
			//lint:ignore SA1019 required by Envoy 1.37 (min_len 1); its replacement, stats_scope, is 1.39+
			StatPrefix: RequestsStatPrefix,
			Counters: []*statsv3.Config_Counter{{
				Stat:       &statsv3.Config_Stat{Name: RequestsCounter, Tags: tags},
				ValueFixed: wrapperspb.UInt64(1),
			}},
		}
		return typedAccessLog(accessLoggerStats, cfg, usageReported(accounted))
	}
	tokens := func(key, typ string) *accesslogv3.AccessLog {
		tags := append(attribution(true), tag(TagTokenType, typ))
		cfg := &statsv3.Config{
			//lint:ignore SA1019 required by Envoy 1.37 (min_len 1); its replacement, stats_scope, is 1.39+
			StatPrefix: TokensStatPrefix,
			Counters: []*statsv3.Config_Counter{{
				Stat:        &statsv3.Config_Stat{Name: TokensCounter, Tags: tags},
				ValueFormat: MetadataFormat(key),
			}},
		}
		return typedAccessLog(accessLoggerStats, cfg, metadataPresent(key))
	}
	return []*accesslogv3.AccessLog{
		requests(true),
		requests(false),
		tokens(MetaInputTokens, "input"),
		tokens(MetaOutputTokens, "output"),
	}
}

// metadataPresent passes the requests whose tollgate metadata has key.
func metadataPresent(key string) *accesslogv3.AccessLogFilter {
	return metadataFilter(key, &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_PresentMatch{PresentMatch: true}}, false)
}

// usageReported passes the requests whose response reported token usage
// (accounted), or those whose did not. An absent key matches
// match_if_key_not_found; a present one the value matcher, which for
// "not reported" only a null value matches.
func usageReported(accounted bool) *accesslogv3.AccessLogFilter {
	if accounted {
		return metadataPresent(MetaInputTokens)
	}
	return metadataFilter(MetaInputTokens, &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_NullMatch_{NullMatch: &matcherv3.ValueMatcher_NullMatch{}}}, true)
}

func metadataFilter(key string, value *matcherv3.ValueMatcher, ifNotFound bool) *accesslogv3.AccessLogFilter {
	return &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_MetadataFilter{MetadataFilter: &accesslogv3.MetadataFilter{
		Matcher: &matcherv3.MetadataMatcher{
			Filter: MetadataNamespace,
			Path:   []*matcherv3.MetadataMatcher_PathSegment{{Segment: &matcherv3.MetadataMatcher_PathSegment_Key{Key: key}}},
			Value:  value,
		},
		MatchIfKeyNotFound: wrapperspb.Bool(ifNotFound),
	}}}
}

// Tracing is a listener's OpenTelemetry tracing, nil without one.
//
// Sampling: samplingPercent is both the random and the overall sampling,
// so that no header a workload sends (x-client-trace-id,
// x-envoy-force-trace) traces more than that share of requests without a
// parent (ConnectionManagerUtility::mutateTracingRequestHeader). A request
// that carries a W3C traceparent keeps its parent's sampled flag: the
// OpenTelemetry tracer has no sampler here, so Tracer::startSpan with a
// parent context respects it (source/extensions/tracers/opentelemetry/tracer.cc).
//
// The span's http.url tag would hold the query string
// (HttpTracerUtility::finalizeDownstreamSpan sets it from
// buildOriginalUri, source/common/tracing/http_tracer_impl.cc); a custom
// tag of the same name replaces it without, since custom tags are applied
// after (HttpTracerUtility::setCommonTags) and the OpenTelemetry span
// overwrites an attribute of the same key (Span::setAttribute).
func Tracing(l *model.ListenerConfig) *hcmv3.HttpConnectionManager_Tracing {
	s := l.Observability
	if s == nil || s.Tracing == nil {
		return nil
	}
	t := s.Tracing
	provider := &tracev3.OpenTelemetryConfig{
		GrpcService: collectorService(t.Collector),
		ServiceName: t.ServiceName,
	}
	return &hcmv3.HttpConnectionManager_Tracing{
		RandomSampling:  &typev3.Percent{Value: t.SamplingPercent},
		OverallSampling: &typev3.Percent{Value: t.SamplingPercent},
		Provider: &tracev3.Tracing_Http{
			Name:       tracerOpenTelemetry,
			ConfigType: &tracev3.Tracing_Http_TypedConfig{TypedConfig: mustAny(provider)},
		},
		CustomTags: tracingTags(s),
	}
}

// tracingTags are the span attributes of attribution: the same facts as
// the logs, under the metrics' names, and GenAI usage attributes.
func tracingTags(s *model.ObservabilitySettings) []*tracingv3.CustomTag {
	request := func(tag, key string) *tracingv3.CustomTag {
		return &tracingv3.CustomTag{Tag: tag, Type: &tracingv3.CustomTag_Metadata_{Metadata: &tracingv3.CustomTag_Metadata{
			Kind:        &metadatav3.MetadataKind{Kind: &metadatav3.MetadataKind_Request_{Request: &metadatav3.MetadataKind_Request{}}},
			MetadataKey: &metadatav3.MetadataKey{Key: MetadataNamespace, Path: []*metadatav3.MetadataKey_PathSegment{{Segment: &metadatav3.MetadataKey_PathSegment_Key{Key: key}}}},
		}}}
	}
	cluster := func(tag, key string) *tracingv3.CustomTag {
		return &tracingv3.CustomTag{Tag: tag, Type: &tracingv3.CustomTag_Metadata_{Metadata: &tracingv3.CustomTag_Metadata{
			Kind:        &metadatav3.MetadataKind{Kind: &metadatav3.MetadataKind_Cluster_{Cluster: &metadatav3.MetadataKind_Cluster{}}},
			MetadataKey: &metadatav3.MetadataKey{Key: MetadataNamespace, Path: []*metadatav3.MetadataKey_PathSegment{{Segment: &metadatav3.MetadataKey_PathSegment_Key{Key: key}}}},
		}}}
	}
	return []*tracingv3.CustomTag{
		{Tag: "http.url", Type: &tracingv3.CustomTag_Value{Value: "%REQ(:SCHEME)%://%REQ(:AUTHORITY)%%PATH(NQ)%"}},
		{Tag: TagGateway, Type: &tracingv3.CustomTag_Literal_{Literal: &tracingv3.CustomTag_Literal{Value: model.GatewayKey(s.Gateway)}}},
		{Tag: TagRoute, Type: &tracingv3.CustomTag_Value{Value: "%ROUTE_NAME%"}},
		cluster(TagBackend, metadataKeyBackend),
		cluster(TagProvider, metadataKeyProvider),
		request("tollgate.spiffe_id", MetaSPIFFEID),
		request(TagNamespace, MetaNamespace),
		request(TagServiceAccount, MetaServiceAccount),
		request(TagRequestModel, MetaRequestModel),
		request(TagResponseModel, MetaResponseModel),
		request("gen_ai.usage.input_tokens", MetaInputTokens),
		request("gen_ai.usage.output_tokens", MetaOutputTokens),
	}
}

// ObservabilityBackends are the OTLP collectors of the listener's
// ObservabilityPolicy, which need clusters like any backend a route
// reaches (the policy refuses a Parent-mode gateway, which has none).
func ObservabilityBackends(l *model.ListenerConfig) []*model.BackendConfig {
	return l.Observability.Collectors()
}

// annotateClusters puts, on each cluster a route of an observed gateway
// sends to, the backend and provider it stands for (filter metadata
// tollgate: backend <namespace>/<name>, provider <spec.provider>), which
// the access logs, metrics and spans read as %CLUSTER_METADATA%. A
// fail-over aggregate lists its members in fail-over order, and their
// distinct providers in the same order. A backend without spec.provider
// has no provider key.
func annotateClusters(g *model.GatewayConfig, gr *GatewayResources) {
	observed := false
	for _, l := range g.Listeners {
		observed = observed || l.Observability != nil
	}
	if !observed {
		return
	}
	members := map[string][]*model.BackendConfig{}
	for _, l := range g.Listeners {
		for _, r := range l.Routes {
			for _, rule := range r.Rules {
				for _, t := range Targets(g, rule) {
					members[t.Cluster] = t.Members
				}
			}
		}
	}
	for _, c := range gr.Clusters {
		bs, ok := members[c.GetName()]
		if !ok {
			continue
		}
		var backends, providers []string
		for _, b := range bs {
			backends = append(backends, b.Ref.Namespace+"/"+b.Ref.Name)
			if b.Provider != "" && !slices.Contains(providers, b.Provider) {
				providers = append(providers, b.Provider)
			}
		}
		fields := map[string]*structpb.Value{metadataKeyBackend: structpb.NewStringValue(strings.Join(backends, ","))}
		if len(providers) > 0 {
			fields[metadataKeyProvider] = structpb.NewStringValue(strings.Join(providers, ","))
		}
		if c.Metadata == nil {
			c.Metadata = &corev3.Metadata{}
		}
		if c.Metadata.FilterMetadata == nil {
			c.Metadata.FilterMetadata = map[string]*structpb.Struct{}
		}
		c.Metadata.FilterMetadata[MetadataNamespace] = &structpb.Struct{Fields: fields}
	}
}
