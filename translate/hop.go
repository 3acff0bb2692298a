package translate

import (
	"math"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	previoushostsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/host/previous_hosts/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/tollgate-dev/tollgate/model"
)

// Fail-over to a backend with upstream HTTP filters (its credential) goes
// through a hop: Envoy runs the upstream filters of the cluster a route
// names, and behind an aggregate that is the aggregate, not the member
// (envoyproxy/envoy#29318). So the aggregate's members are hop clusters,
// each pointing at an internal listener of the same Envoy whose only route
// sends to the backend's own cluster — where its filters do run: the
// workload's credential headers are stripped and the backend's credential
// injected, per attempt, on the backend the attempt goes to.
//
// The hop never turns a request that reached a provider into a retriable
// answer, and never hides a refusal that is safe to retry:
//   - Its route retries, on another host of the backend, exactly what is
//     still known there to have reached no provider: a reset before the
//     request was sent and a refused HTTP/2 stream (hopRetryPolicy).
//   - Its local replies for Envoy's own refusals — no healthy host, a full
//     circuit breaker, a failed connection, or those retries spent — keep
//     503 and carry RefusalHeader, which the outer route retries on the
//     next backend; a provider's answer never carries it (the backend's
//     upstream filters remove it from responses).
//   - Its local replies for a reset or termination after the request was
//     sent, an upstream protocol error, or an overload-manager reset become
//     502, which the outer route does not retry.

// RefusalHeader marks a hop's local replies for Envoy's own refusals, so
// that the outer route can retry them (retriable-headers) without retrying
// a provider's 503, which may come after the provider did the work. The
// outer route removes it before the response leaves the gateway.
const RefusalHeader = "x-tollgate-envoy-refusal"

// refusalMatcher matches RefusalHeader in a retry policy.
func refusalMatcher() *routev3.HeaderMatcher {
	return &routev3.HeaderMatcher{Name: RefusalHeader, HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}}
}

// hopRefusalFlags are response flags of a hop's local replies that mean
// nothing reached the provider: no healthy upstream (UH), circuit breaker
// overflow (UO), connection failure (UF), and retries of a safe failure
// spent (URX: RetryStateImpl::shouldRetry returns NoRetryLimitExceeded only
// for a failure the policy would retry).
var hopRefusalFlags = []string{"UH", "UO", "UF", "URX"}

// hopLocalReplyFlags are response flags of a hop's local replies that mean
// the request may have reached the provider; they answer 502. OM is an
// overload-manager reset, which can come after the request was sent.
var hopLocalReplyFlags = []string{"UR", "UC", "LR", "DC", "UPE", "OM"}

// hopRetries is how often a hop's route retries a failure that reached no
// provider, on another host of the backend.
const hopRetries = 1

// hopRetryPolicy is the retry policy of a hop's route.
func hopRetryPolicy() *routev3.RetryPolicy {
	return &routev3.RetryPolicy{
		RetryOn:                       "reset-before-request,refused-stream",
		NumRetries:                    wrapperspb.UInt32(hopRetries),
		HostSelectionRetryMaxAttempts: 3,
		RetryHostPredicate: []*routev3.RetryPolicy_RetryHostPredicate{{
			Name:       "envoy.retry_host_predicates.previous_hosts",
			ConfigType: &routev3.RetryPolicy_RetryHostPredicate_TypedConfig{TypedConfig: mustAny(&previoushostsv3.PreviousHostsPredicate{})},
		}},
	}
}

// anyHop reports whether a fail-over target of a rule reaches a member
// through a hop.
func anyHop(targets []target) bool {
	for _, t := range targets {
		if !t.aggregate() {
			continue
		}
		for _, b := range t.Members {
			if needsHop(b) {
				return true
			}
		}
	}
	return false
}

// needsHop reports whether a backend must be reached through a hop when it
// sits behind a fail-over aggregate.
func needsHop(b *model.BackendConfig) bool { return b.Credential != nil || needsBodyHop(b) }

// singleHop reports whether a rule's only target is a backend reached
// through its hop anyway (it rewrites request bodies: body.go).
func singleHop(targets []target) bool {
	for _, t := range targets {
		if !t.aggregate() && needsBodyHop(t.Members[0]) {
			return true
		}
	}
	return false
}

// HopName names a backend's hop cluster and internal listener (clusters and
// listeners are separate namespaces in Envoy).
func HopName(b *model.BackendConfig) string {
	return "hop/" + b.Ref.Namespace + "/" + b.Ref.Name
}

// memberCluster is the cluster an aggregate lists for a backend.
func memberCluster(b *model.BackendConfig) string {
	if needsHop(b) {
		return HopName(b)
	}
	return ClusterName(b)
}

// HopCluster reaches a backend's internal listener.
func HopCluster(b *model.BackendConfig) (*clusterv3.Cluster, error) {
	opts, err := toAny(&httpv3.HttpProtocolOptions{
		UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}},
		}},
	})
	if err != nil {
		return nil, err
	}
	c := &clusterv3.Cluster{
		Name:                 HopName(b),
		ConnectTimeout:       durationpb.New(DefaultConnectTimeout),
		CircuitBreakers:      hopCircuitBreakers(),
		OutlierDetection:     hopOutlierDetection(b),
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: HopName(b),
			Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
					Address: &corev3.Address{Address: &corev3.Address_EnvoyInternalAddress{EnvoyInternalAddress: &corev3.EnvoyInternalAddress{
						AddressNameSpecifier: &corev3.EnvoyInternalAddress_ServerListenerName{ServerListenerName: HopName(b)},
					}}},
					Hostname: b.Hostname,
				}},
			}}}},
		},
		TypedExtensionProtocolOptions: map[string]*anypb.Any{httpProtocolOptionsKey: opts},
	}
	noPanic(c)
	return c, nil
}

// A hop must show its backend's health to the aggregate: a hop is one
// internal host, which the aggregate would otherwise always see healthy,
// so an ejected or unhealthy provider would keep every first attempt and,
// with retries off, never fail over. The hop therefore gets the backend's
// own outlier detection (QoSController): every answer the backend gives
// passes through the hop, and once the backend has no healthy host the
// hop answers every attempt with a 503 (no healthy upstream), which the
// hop's gateway-failure count ejects in turn. The hop lags its backend by
// that many requests, each of which the outer route retries on the next
// backend, since the 503 is a marked refusal.
//
// An active health check of the hop cannot do better: Envoy's health
// checkers run on the main thread, where an internal listener cannot be
// reached (InternalClientConnectionFactory::createClientConnection in
// source/extensions/bootstrap/internal_listener/client_connection_factory.cc
// closes such a connection), so the hop would always look unhealthy.
func hopOutlierDetection(b *model.BackendConfig) *clusterv3.OutlierDetection {
	if b.QoS == nil {
		return nil
	}
	od := OutlierDetection(b.QoS)
	if od == nil {
		return nil
	}
	// One host: success-rate analysis never applies, and there is no
	// active health check to un-eject it.
	od.EnforcingSuccessRate = enforcing(false)
	od.EnforcingLocalOriginSuccessRate = enforcing(false)
	od.SuccessRateMinimumHosts, od.SuccessRateRequestVolume, od.SuccessRateStdevFactor = nil, nil, nil
	od.SuccessfulActiveHealthCheckUnejectHost = nil
	od.MaxEjectionPercent = wrapperspb.UInt32(100)
	return od
}

// hopCircuitBreakers lifts the hop's own limits out of the way. Envoy's
// defaults (1024 connections, pending and active requests) would cap a
// backend whose EgressPolicy or QoSController allows more; and a hop that
// overflows fails the request at the outer router, where an overflow is
// never retried (RetryStateImpl::wouldRetryFromReset returns NoRetry for
// StreamResetReason::Overflow). The backend's own limits apply one step
// further, on its cluster, where an overflow is a refusal the hop marks
// and the outer route moves on to the next backend.
func hopCircuitBreakers() *clusterv3.CircuitBreakers {
	unlimited := wrapperspb.UInt32(math.MaxUint32)
	return &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
		Priority:           corev3.RoutingPriority_DEFAULT,
		MaxConnections:     unlimited,
		MaxPendingRequests: unlimited,
		MaxRequests:        unlimited,
	}}}
}

// HopListener is the internal listener behind a backend's hop: one route to
// the backend's cluster with its Host, no timeout or retry of its own (the
// outer route's apply), no access log (the outer one logs the request).
//
// The hop's route keeps as much of the body as the outer routes through it
// (bufferLimit): for its own retries, and for a SigV4 signer among the
// backend's upstream filters, which reads the whole body within the
// stream's buffer limit and answers 413 above it.
func HopListener(b *model.BackendConfig, bufferLimit uint64) (*listenerv3.Listener, error) {
	action := &routev3.RouteAction{
		ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: ClusterName(b)},
		Timeout:          durationpb.New(0),
		RetryPolicy:      hopRetryPolicy(),
	}
	if b.Hostname != "" {
		action.HostRewriteSpecifier = &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: b.Hostname}
	}
	// The first mapper whose filter matches applies
	// (LocalReplyImpl::rewrite in source/common/local_reply/local_reply.cc):
	// a refusal is a refusal even when a later flag is set too.
	mappers := []*hcmv3.ResponseMapper{{
		Filter: &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_ResponseFlagFilter{
			ResponseFlagFilter: &accesslogv3.ResponseFlagFilter{Flags: hopRefusalFlags},
		}},
		StatusCode: wrapperspb.UInt32(503),
		HeadersToAdd: []*corev3.HeaderValueOption{{
			Header:       &corev3.HeaderValue{Key: RefusalHeader, Value: "1"},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		}},
	}, {
		Filter: &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_ResponseFlagFilter{
			ResponseFlagFilter: &accesslogv3.ResponseFlagFilter{Flags: hopLocalReplyFlags},
		}},
		StatusCode: wrapperspb.UInt32(502),
	}}
	def := &routev3.Route{
		Name:                   HopName(b),
		Match:                  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action:                 &routev3.Route_Route{Route: action},
		RequestBodyBufferLimit: wrapperspb.UInt64(bufferLimit),
	}
	if needsBodyHop(b) {
		// The outer gateway's routing headers end here (body.go, schema.go).
		def.RequestHeadersToRemove = []string{ModelHeader, ClientSchemaHeader}
		if b.Credential == nil {
			// No upstream filters remove the refusal mark from this
			// backend's answers (credentials.go), so the hop's routes do:
			// its own refusals get the mark after the route's header
			// removal (Utility::sendLocalReply runs modify_headers before
			// LocalReplyImpl::rewrite), so they keep it.
			def.ResponseHeadersToRemove = []string{RefusalHeader}
		}
	}
	// Per-attempt body rewrites for this backend: its model names
	// (body.go) and its schema (schema.go).
	var filters []*hcmv3.HttpFilter
	mapFilter, err := modelMapFilter(b)
	if err != nil {
		return nil, err
	}
	if mapFilter != nil {
		filters = append(filters, mapFilter)
	}
	schemaFilters, schemaRoutes, err := hopSchema(b)
	if err != nil {
		return nil, err
	}
	filters = append(filters, schemaFilters...)
	for _, r := range schemaRoutes {
		if r.GetRoute() != nil {
			r.RequestBodyBufferLimit = def.RequestBodyBufferLimit
			r.ResponseHeadersToRemove = append(r.ResponseHeadersToRemove, def.ResponseHeadersToRemove...)
		}
	}
	routes := append(schemaRoutes, modelMapRoutes(b, def)...)
	routes = append(routes, def)
	hcm, err := toAny(&hcmv3.HttpConnectionManager{
		StatPrefix: HopName(b),
		CodecType:  hcmv3.HttpConnectionManager_AUTO,
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{
			Name: HopName(b),
			VirtualHosts: []*routev3.VirtualHost{{
				Name:    HopName(b),
				Domains: []string{"*"},
				Routes:  routes,
			}},
		}},
		HttpFilters:      append(filters, routerFilter()),
		LocalReplyConfig: &hcmv3.LocalReplyConfig{Mappers: mappers},
		// The outer gateway already normalised the request; keep it as is.
		StripPortMode: &hcmv3.HttpConnectionManager_StripAnyHostPort{StripAnyHostPort: true},
		// No stream idle limit of its own: the outer route's applies.
		StreamIdleTimeout: durationpb.New(0),
	})
	if err != nil {
		return nil, err
	}
	return &listenerv3.Listener{
		Name:              HopName(b),
		ListenerSpecifier: &listenerv3.Listener_InternalListener{InternalListener: &listenerv3.Listener_InternalListenerConfig{}},
		FilterChains: []*listenerv3.FilterChain{{
			Filters: []*listenerv3.Filter{{
				Name:       wellknown.HTTPConnectionManager,
				ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: hcm},
			}},
		}},
	}, nil
}
