package translate

import (
	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/tollgate-dev/tollgate/model"
)

// Listener builds the Envoy listener of a gateway listener: one filter chain
// with an HTTP connection manager that fetches its routes over ADS.
func Listener(cfg *model.Config, l *model.ListenerConfig) (*listenerv3.Listener, error) {
	hcm, err := toAny(HTTPConnectionManager(gatewayOf(cfg, l), l))
	if err != nil {
		return nil, err
	}
	chain := &listenerv3.FilterChain{
		Filters: []*listenerv3.Filter{{
			Name:       wellknown.HTTPConnectionManager,
			ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: hcm},
		}},
	}
	if l.TLS != nil {
		// HTTPS: see listenertls.go.
		if chain.TransportSocket, err = DownstreamTLSTransportSocket(l); err != nil {
			return nil, err
		}
	}
	return &listenerv3.Listener{
		Name:             ListenerName(l),
		Address:          socketAddress(l.BindAddress(), l.Port),
		TrafficDirection: corev3.TrafficDirection_OUTBOUND,
		FilterChains:     []*listenerv3.FilterChain{chain},
	}, nil
}

// HTTPConnectionManager is the HCM of a listener. The router is always the
// last HTTP filter; features add theirs before it.
func HTTPConnectionManager(g *model.GatewayConfig, l *model.ListenerConfig) *hcmv3.HttpConnectionManager {
	n := rateLimitNeedsOf(g, l)
	b := bodyNeedsOf(g, l) // once per connection manager, like n
	return &hcmv3.HttpConnectionManager{
		StatPrefix: StatPrefix(l),
		CodecType:  hcmv3.HttpConnectionManager_AUTO,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource:    adsConfigSource(),
			RouteConfigName: RouteConfigName(l),
		}},
		// The JSON body of access control refusals (externalauth.go).
		LocalReplyConfig: localReplyConfig(l, n, b),

		HttpFilters: httpFilters(g, l, n, b),
		AccessLog:   AccessLogs(l), // observability.go
		Tracing:     Tracing(l),
		// Workloads talk to the gateway directly, so the peer address is
		// the client. The gateway does not append it to X-Forwarded-For:
		// internal addresses have no business reaching a provider.
		UseRemoteAddress: wrapperspb.Bool(true),
		SkipXffAppend:    true,
		// Virtual hosts match host names; a port in Host must not defeat
		// that.
		StripPortMode:     &hcmv3.HttpConnectionManager_StripAnyHostPort{StripAnyHostPort: true},
		NormalizePath:     wrapperspb.Bool(true),
		MergeSlashes:      true,
		GenerateRequestId: wrapperspb.Bool(true),
		// A workload's own x-forwarded-client-cert never passes: the
		// verified identity is the peer certificate, carried in no header.
		ForwardClientCertDetails: hcmv3.HttpConnectionManager_SANITIZE,
	}
}

func routerFilter() *hcmv3.HttpFilter {
	// Envoy's x-envoy-* request headers (expected timeout, attempt count)
	// describe our internals to a third party: suppress them.
	router := mustAny(&routerv3.Router{SuppressEnvoyHeaders: true})
	return &hcmv3.HttpFilter{
		Name:       wellknown.Router,
		ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: router},
	}
}

// accessLogFields is the JSON access log of every gateway. The path is
// logged without its query string, because some providers (Gemini) accept
// API keys as query parameters; request and response headers that carry
// credentials are never logged.
var accessLogFields = map[string]string{
	"start_time":            "%START_TIME%",
	"method":                "%REQ(:METHOD)%",
	"path":                  "%PATH(NQ)%",
	"protocol":              "%PROTOCOL%",
	"authority":             "%REQ(:AUTHORITY)%",
	"response_code":         "%RESPONSE_CODE%",
	"response_flags":        "%RESPONSE_FLAGS%",
	"response_code_details": "%RESPONSE_CODE_DETAILS%",
	"bytes_received":        "%BYTES_RECEIVED%",
	"bytes_sent":            "%BYTES_SENT%",
	"duration_ms":           "%DURATION%",
	"upstream_service_time": "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
	"upstream_cluster":      "%UPSTREAM_CLUSTER%",
	"upstream_host":         "%UPSTREAM_HOST%",
	"upstream_failure":      "%UPSTREAM_TRANSPORT_FAILURE_REASON%",
	"route_name":            "%ROUTE_NAME%",
	"downstream_remote":     "%DOWNSTREAM_REMOTE_ADDRESS%",
	"request_id":            "%REQ(X-REQUEST-ID)%",
	"user_agent":            "%REQ(USER-AGENT)%",
}

// ClientIdentityLogField is the access log field of a listener that
// verifies client certificates: the URI SAN of the verified certificate (a
// workload's SPIFFE ID), "-" when the client presented none.
const ClientIdentityLogField = "client_identity"

func stdoutAccessLog(clientIdentity bool) *accesslogv3.AccessLog {
	fields := make(map[string]*structpb.Value, len(accessLogFields)+1)
	for k, v := range accessLogFields {
		fields[k] = structpb.NewStringValue(v)
	}
	if clientIdentity {
		fields[ClientIdentityLogField] = structpb.NewStringValue("%DOWNSTREAM_PEER_URI_SAN%")
	}
	cfg := mustAny(&streamv3.StdoutAccessLog{
		AccessLogFormat: &streamv3.StdoutAccessLog_LogFormat{LogFormat: &corev3.SubstitutionFormatString{
			Format: &corev3.SubstitutionFormatString_JsonFormat{JsonFormat: &structpb.Struct{Fields: fields}},
		}},
	})
	return &accesslogv3.AccessLog{
		Name:       "envoy.access_loggers.stdout",
		ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: cfg},
	}
}

// gatewayOf is the gateway a listener belongs to.
func gatewayOf(cfg *model.Config, l *model.ListenerConfig) *model.GatewayConfig {
	for _, g := range cfg.Gateways {
		for _, gl := range g.Listeners {
			if gl == l {
				return g
			}
		}
	}
	return nil
}

// adsConfigSource points a dependent resource (RDS, EDS, SDS) at the ADS
// stream the Envoy already has.
func adsConfigSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}
}

func socketAddress(host string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Protocol:      corev3.SocketAddress_TCP,
		Address:       host,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}
