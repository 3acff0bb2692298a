package translate

import (
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/tollgate-dev/tollgate/model"
)

// DefaultConnectTimeout bounds the TCP (and TLS) handshake to a backend.
const DefaultConnectTimeout = 10 * time.Second

// httpProtocolOptionsKey is the extension name Envoy looks up in
// typed_extension_protocol_options.
const httpProtocolOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

// Cluster builds a backend's cluster for the Envoys of gateway gw. A
// backend with a hostname and no static addresses is a DNS cluster with
// logical DNS semantics (one connection target, re-resolved as the
// provider's DNS changes, as suits CDN-fronted APIs), resolved with the
// gateway's DNSPolicy defaults and the backend's overrides; a backend with
// static or reverse-DNS-verified addresses takes its endpoints from EDS, so
// that address changes never touch the cluster.
func Cluster(cfg *model.Config, gw model.Ref, b *model.BackendConfig) (*clusterv3.Cluster, error) {
	connect := DefaultConnectTimeout
	if t := b.Egress.ConnectTimeout; t != nil {
		connect = *t
	}
	c := &clusterv3.Cluster{
		Name:            ClusterName(b),
		ConnectTimeout:  durationpb.New(connect),
		LbPolicy:        clusterv3.Cluster_ROUND_ROBIN,
		CircuitBreakers: circuitBreakers(b.Egress),
	}
	if isEDS(b) {
		c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS}
		c.EdsClusterConfig = &clusterv3.Cluster_EdsClusterConfig{
			EdsConfig:   adsConfigSource(),
			ServiceName: ClusterName(b),
		}
	} else {
		dc, err := DNSCluster(b.DNS.For(gw))
		if err != nil {
			return nil, err
		}
		if c.ClusterDiscoveryType, err = dnsClusterType(dc); err != nil {
			return nil, err
		}
		c.LoadAssignment = ClusterLoadAssignment(b)
	}
	po, err := HTTPProtocolOptions(b)
	if err != nil {
		return nil, err
	}
	opts, err := toAny(po)
	if err != nil {
		return nil, err
	}
	c.TypedExtensionProtocolOptions = map[string]*anypb.Any{httpProtocolOptionsKey: opts}
	if b.TLS {
		ts, err := UpstreamTLSTransportSocket(cfg, b)
		if err != nil {
			return nil, err
		}
		c.TransportSocket = ts
	}
	applyQoS(c, b)
	return c, nil
}

func isEDS(b *model.BackendConfig) bool { return len(b.Addresses) > 0 }

// HTTPProtocolOptions picks the upstream protocol (negotiated by ALPN for
// auto, or fixed) and carries the backend's upstream HTTP filters.
func HTTPProtocolOptions(b *model.BackendConfig) (*httpv3.HttpProtocolOptions, error) {
	filters, err := UpstreamHTTPFilters(b)
	if err != nil {
		return nil, err
	}
	o := &httpv3.HttpProtocolOptions{HttpFilters: filters}
	if t := b.Egress.IdleTimeout; t != nil {
		o.CommonHttpProtocolOptions = &corev3.HttpProtocolOptions{IdleTimeout: durationpb.New(*t)}
	}
	switch b.Protocol {
	case model.ProtocolAuto:
		o.UpstreamProtocolOptions = &httpv3.HttpProtocolOptions_AutoConfig{AutoConfig: &httpv3.HttpProtocolOptions_AutoHttpConfig{
			HttpProtocolOptions:  &corev3.Http1ProtocolOptions{},
			Http2ProtocolOptions: &corev3.Http2ProtocolOptions{},
		}}
	case model.ProtocolHTTP2:
		o.UpstreamProtocolOptions = &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}},
		}}
	default:
		o.UpstreamProtocolOptions = &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_HttpProtocolOptions{HttpProtocolOptions: &corev3.Http1ProtocolOptions{}},
		}}
	}
	return o, nil
}

// circuitBreakers turns EgressPolicy connection limits into Envoy's default
// priority thresholds; unset limits keep Envoy's defaults (1024 each).
func circuitBreakers(e model.EgressSettings) *clusterv3.CircuitBreakers {
	if e.MaxConnections == nil && e.MaxPendingRequests == nil && e.MaxRequests == nil {
		return nil
	}
	t := &clusterv3.CircuitBreakers_Thresholds{Priority: corev3.RoutingPriority_DEFAULT}
	if e.MaxConnections != nil {
		t.MaxConnections = wrapperspb.UInt32(*e.MaxConnections)
	}
	if e.MaxPendingRequests != nil {
		t.MaxPendingRequests = wrapperspb.UInt32(*e.MaxPendingRequests)
	}
	if e.MaxRequests != nil {
		t.MaxRequests = wrapperspb.UInt32(*e.MaxRequests)
	}
	return &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{t}}
}

// OAuth2TokenCluster is the cluster Envoy fetches a backend's OAuth2 tokens
// through: TLS to the token endpoint, verified like any provider. The
// gateway's DNS defaults apply to it; the backend's own DNS overrides are
// about the backend's hostname, not the token endpoint's.
func OAuth2TokenCluster(cfg *model.Config, gw model.Ref, b *model.BackendConfig) (*clusterv3.Cluster, error) {
	o := b.Credential.OAuth2
	token := &model.BackendConfig{
		Ref:      model.Ref{Kind: "OAuth2TokenEndpoint", Namespace: b.Ref.Namespace, Name: b.Ref.Name},
		Hostname: o.TokenHost,
		Port:     o.TokenPort,
		TLS:      true,
		Protocol: model.ProtocolHTTP1,
		DNS:      model.BackendDNS{Gateways: b.DNS.Gateways},
	}
	c, err := Cluster(cfg, gw, token)
	if err != nil {
		return nil, err
	}
	c.Name = OAuth2ClusterName(b)
	c.LoadAssignment.ClusterName = c.Name
	return c, nil
}

// ClusterLoadAssignment lists a backend's endpoints: its static addresses
// (served over EDS), or its hostname (inline in a DNS cluster).
func ClusterLoadAssignment(b *model.BackendConfig) *endpointv3.ClusterLoadAssignment {
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: ClusterName(b)}
	var lbs []*endpointv3.LbEndpoint
	if isEDS(b) {
		for _, a := range b.Addresses {
			lbs = append(lbs, lbEndpoint(a.IP, a.Port, b.Hostname))
		}
	} else {
		lbs = append(lbs, lbEndpoint(b.Hostname, b.Port, b.Hostname))
	}
	cla.Endpoints = []*endpointv3.LocalityLbEndpoints{{LbEndpoints: lbs}}
	return cla
}

func lbEndpoint(host string, port uint32, hostname string) *endpointv3.LbEndpoint {
	return &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
		Address:  socketAddress(host, port),
		Hostname: hostname,
	}}}
}
