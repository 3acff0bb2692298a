package translate

import (
	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
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
// answer: its local replies for resets and terminations after the request
// was sent become 502, which the outer retry policy does not retry, while
// a refused connection or an ejected backend stays 503 (nothing was sent),
// which moves the request to the next priority.

// needsHop reports whether a backend must be reached through a hop when it
// sits behind a fail-over aggregate.
func needsHop(b *model.BackendConfig) bool { return b.Credential != nil }

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

// hopLocalReplyFlags are Envoy response flags of a hop's local replies that
// mean the request may have reached the provider; they answer 502.
var hopLocalReplyFlags = []string{"UR", "UC", "LR", "DC", "UPE"}

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
	return &clusterv3.Cluster{
		Name:                 HopName(b),
		ConnectTimeout:       durationpb.New(DefaultConnectTimeout),
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
	}, nil
}

// HopListener is the internal listener behind a backend's hop: one route to
// the backend's cluster with its Host, no timeout or retry of its own (the
// outer route's apply), no access log (the outer one logs the request).
func HopListener(b *model.BackendConfig) (*listenerv3.Listener, error) {
	action := &routev3.RouteAction{
		ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: ClusterName(b)},
		Timeout:          durationpb.New(0),
	}
	if b.Hostname != "" {
		action.HostRewriteSpecifier = &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: b.Hostname}
	}
	var mappers []*hcmv3.ResponseMapper
	mappers = append(mappers, &hcmv3.ResponseMapper{
		Filter: &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_ResponseFlagFilter{
			ResponseFlagFilter: &accesslogv3.ResponseFlagFilter{Flags: hopLocalReplyFlags},
		}},
		StatusCode: wrapperspb.UInt32(502),
	})
	hcm, err := toAny(&hcmv3.HttpConnectionManager{
		StatPrefix: HopName(b),
		CodecType:  hcmv3.HttpConnectionManager_AUTO,
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{
			Name: HopName(b),
			VirtualHosts: []*routev3.VirtualHost{{
				Name:    HopName(b),
				Domains: []string{"*"},
				Routes: []*routev3.Route{{
					Name:   HopName(b),
					Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
					Action: &routev3.Route_Route{Route: action},
				}},
			}},
		}},
		HttpFilters:      []*hcmv3.HttpFilter{routerFilter()},
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
