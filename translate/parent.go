package translate

import (
	"sort"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	previoushostsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/host/previous_hosts/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/tollgate-dev/tollgate/model"
)

// A gateway in Parent mode (a "child") forwards every request to its
// parent gateway, which routes it again with its own routes, credentials,
// provider TLS, fail-over and guard rails. So the child gets no backend
// cluster at all, hence no credential and no provider certificate: one
// cluster, parent/<ns>/<gateway>, reaches the parent's addresses, and every
// route rule sends its traffic there with the request's own Host (the
// parent matches the same hostnames) and the name of the route it matched
// in ForwardedRouteHeader.
//
// The child retries only what cannot have reached the parent: a failed
// connection, a stream the parent refused, a reset before the request was
// sent, each on another parent Envoy. It never retries a 5xx or a timeout:
// the parent already did whatever fail-over its routes allow, and a second
// attempt could run (and bill) the inference twice.

// ParentConnectTimeout bounds the TCP (and TLS) handshake to a parent
// Envoy: parents are nearby, so a connection that takes longer is better
// retried on another one.
const ParentConnectTimeout = 5 * time.Second

// ParentRetryOn are the only conditions a child retries on. connect-failure:
// no connection; refused-stream: HTTP/2 REFUSED_STREAM, the parent did not
// process the stream (also what a GOAWAY leaves behind); reset-before-request:
// the stream was reset before its headers were sent upstream.
const ParentRetryOn = "connect-failure,refused-stream,reset-before-request"

// ParentNumRetries is how many more parent Envoys a request may try.
const ParentNumRetries = 2

// translateChild builds the resources of a Parent-mode gateway.
func translateChild(cfg *model.Config, g *model.GatewayConfig) (*GatewayResources, error) {
	gr := &GatewayResources{Key: model.GatewayKey(g.Ref)}
	for _, l := range g.Listeners {
		lis, err := Listener(cfg, l)
		if err != nil {
			return nil, err
		}
		gr.Listeners = append(gr.Listeners, lis)
		gr.Secrets = append(gr.Secrets, ListenerSecrets(l)...)
		rc, err := RouteConfiguration(g, l)
		if err != nil {
			return nil, err
		}
		gr.Routes = append(gr.Routes, rc)
	}
	c, err := ParentCluster(cfg, g)
	if err != nil {
		return nil, err
	}
	gr.Clusters = append(gr.Clusters, c)
	if !g.Parent.HasHostname() {
		gr.Endpoints = append(gr.Endpoints, ParentLoadAssignment(g))
	}
	sort.Slice(gr.Listeners, func(i, j int) bool { return gr.Listeners[i].Name < gr.Listeners[j].Name })
	sort.Slice(gr.Routes, func(i, j int) bool { return gr.Routes[i].Name < gr.Routes[j].Name })
	sort.Slice(gr.Secrets, func(i, j int) bool { return gr.Secrets[i].Name < gr.Secrets[j].Name })
	return gr, nil
}

// ChildRoute is one match of a rule at a Parent-mode gateway: it forwards
// to the parent and names the route it matched, overwriting whatever value
// of ForwardedRouteHeader the workload sent. Source restrictions
// (EgressPolicy allowedSources) and ExternalAuth rules are checked here,
// where the workload is the peer (RouteConfiguration adds them, see
// externalauth.go); the parent only sees the child's Envoys.
//
// A rule the child's own RegionAllowListPolicy refuses (see
// model.GatewayConfig.ChildRegionRefusal) answers 403 here and is never
// forwarded.
func ChildRoute(g *model.GatewayConfig, r *model.RouteConfig, rule *model.RuleConfig, m model.RouteMatch, matchIndex int) (*routev3.Route, error) {
	if rf := g.ChildRegionRefusal(rule); rf != nil {
		return &routev3.Route{
			Name:   RouteName(r, rule, matchIndex),
			Match:  RouteMatch(m),
			Action: &routev3.Route_DirectResponse{DirectResponse: RegionRefusedResponse([]*model.RegionRefusal{rf})},
		}, nil
	}
	route := &routev3.Route{
		Name:   RouteName(r, rule, matchIndex),
		Match:  RouteMatch(m),
		Action: &routev3.Route_Route{Route: ParentRouteAction(g, rule)},
		RequestHeadersToAdd: []*corev3.HeaderValueOption{{
			Header:       &corev3.HeaderValue{Key: ForwardedRouteHeader, Value: ForwardedRouteValue(r)},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		}},
		// A large prompt can still be retried on another parent Envoy.
		RequestBodyBufferLimit: wrapperspb.UInt64(DefaultBufferLimit),
	}
	return route, nil
}

// ParentRouteAction sends a rule's traffic to the parent. The Host header
// is left alone and the timeouts are the rule's own, which the parent
// applies too: the child never cuts a stream the parent still serves.
func ParentRouteAction(g *model.GatewayConfig, rule *model.RuleConfig) *routev3.RouteAction {
	ra := &routev3.RouteAction{
		ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: ParentClusterName(g.Parent.Gateway.Ref)},
		Timeout:          durationpb.New(rule.Timeout),
		RetryPolicy:      ParentRetryPolicy(),
	}
	if rule.StreamIdleTimeout != nil {
		ra.IdleTimeout = durationpb.New(*rule.StreamIdleTimeout)
	}
	return ra
}

// ParentRetryPolicy retries only failures that cannot have reached a
// parent, each time on another parent Envoy when there is one.
func ParentRetryPolicy() *routev3.RetryPolicy {
	return &routev3.RetryPolicy{
		RetryOn:    ParentRetryOn,
		NumRetries: wrapperspb.UInt32(ParentNumRetries),
		RetryHostPredicate: []*routev3.RetryPolicy_RetryHostPredicate{{
			Name:       "envoy.retry_host_predicates.previous_hosts",
			ConfigType: &routev3.RetryPolicy_RetryHostPredicate_TypedConfig{TypedConfig: mustAny(&previoushostsv3.PreviousHostsPredicate{})},
		}},
		HostSelectionRetryMaxAttempts: 3,
	}
}

// ParentCluster is the cluster through which a Parent-mode gateway's
// Envoys reach its parent's Envoys: a DNS cluster with strict DNS semantics
// (every address of every name is an endpoint, so that retries can pick
// another parent Envoy) when an address is a hostname, else EDS with the
// parent's IPs. HTTP/2 (cleartext, or negotiated by ALPN over TLS) carries
// many streamed completions on few connections, and makes a request the
// parent did not take a refused stream, which is safe to retry.
func ParentCluster(cfg *model.Config, g *model.GatewayConfig) (*clusterv3.Cluster, error) {
	hop := g.Parent
	name := ParentClusterName(hop.Gateway.Ref)
	c := &clusterv3.Cluster{
		Name:           name,
		ConnectTimeout: durationpb.New(ParentConnectTimeout),
		LbPolicy:       clusterv3.Cluster_ROUND_ROBIN,
	}
	if hop.HasHostname() {
		dc, err := DNSCluster(model.DNSSettings{})
		if err != nil {
			return nil, err
		}
		dc.AllAddressesInSingleEndpoint = false
		if c.ClusterDiscoveryType, err = dnsClusterType(dc); err != nil {
			return nil, err
		}
		c.LoadAssignment = ParentLoadAssignment(g)
	} else {
		c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS}
		c.EdsClusterConfig = &clusterv3.Cluster_EdsClusterConfig{EdsConfig: adsConfigSource(), ServiceName: name}
	}
	po := &httpv3.HttpProtocolOptions{}
	if hop.TLS != nil {
		po.UpstreamProtocolOptions = &httpv3.HttpProtocolOptions_AutoConfig{AutoConfig: &httpv3.HttpProtocolOptions_AutoHttpConfig{
			HttpProtocolOptions:  &corev3.Http1ProtocolOptions{},
			Http2ProtocolOptions: &corev3.Http2ProtocolOptions{},
		}}
	} else {
		po.UpstreamProtocolOptions = &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}},
		}}
	}
	opts, err := toAny(po)
	if err != nil {
		return nil, err
	}
	c.TypedExtensionProtocolOptions = map[string]*anypb.Any{httpProtocolOptionsKey: opts}
	if hop.TLS != nil {
		ts, err := tlsTransportSocket(ParentTLSContext(cfg, hop.TLS))
		if err != nil {
			return nil, err
		}
		c.TransportSocket = ts
	}
	return c, nil
}

// ParentLoadAssignment lists the parent's addresses on the hop's port:
// served over EDS when they are all IPs, inline in the DNS cluster
// otherwise.
func ParentLoadAssignment(g *model.GatewayConfig) *endpointv3.ClusterLoadAssignment {
	hop := g.Parent
	var lbs []*endpointv3.LbEndpoint
	for _, a := range hop.Addresses {
		host := a.Hostname
		if host == "" {
			host = a.IP
		}
		lbs = append(lbs, lbEndpoint(host, hop.Port, a.Hostname))
	}
	return &endpointv3.ClusterLoadAssignment{
		ClusterName: ParentClusterName(hop.Gateway.Ref),
		Endpoints:   []*endpointv3.LocalityLbEndpoints{{LbEndpoints: lbs}},
	}
}

// ParentTLSContext originates TLS to the parent. The files are paths on
// the child's Envoy hosts, read by Envoy: tollgate never holds the child's
// private key, so nothing secret travels over xDS for the hop.
//
// With SPIFFE, the child presents its own SVID and checks the parent's
// SPIFFE ID against its trust domain's bundle, both from the child Envoy's
// SPIRE agent (see listenertls.go): nothing secret travels over xDS either.
func ParentTLSContext(cfg *model.Config, t *model.ParentHopTLS) *tlsv3.UpstreamTlsContext {
	if t.SPIFFEID != "" {
		return &tlsv3.UpstreamTlsContext{
			Sni: t.SNI,
			CommonTlsContext: &tlsv3.CommonTlsContext{
				TlsParams:                      tlsParams(""),
				AlpnProtocols:                  alpn(model.ProtocolAuto),
				TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{spireSDSConfig(t.SVIDName)},
				ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
					DefaultValidationContext:         &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: sanMatchers(t.SANs)},
					ValidationContextSdsSecretConfig: spireSDSConfig(t.Bundle),
				}},
			},
		}
	}
	ca := t.CAFile
	if ca == "" {
		ca = cfg.Settings.SystemCABundle
	}
	ctx := &tlsv3.UpstreamTlsContext{
		Sni: t.SNI,
		CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsParams:     tlsParams(""),
			AlpnProtocols: alpn(model.ProtocolAuto),
			ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
				TrustedCa:                 &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: ca}},
				MatchTypedSubjectAltNames: sanMatchers(t.SANs),
			}},
		},
	}
	if t.CertificateFile != "" {
		ctx.CommonTlsContext.TlsCertificates = []*tlsv3.TlsCertificate{{
			CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: t.CertificateFile}},
			PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: t.PrivateKeyFile}},
		}}
	}
	return ctx
}

// StripForwardedRoute makes a gateway with children remove
// ForwardedRouteHeader before a request leaves for a backend: it is
// tollgate's own, and providers have no business seeing internal route
// names. The parent routes with its own rules and never by this header,
// which a workload could set.
func StripForwardedRoute(g *model.GatewayConfig, rc *routev3.RouteConfiguration) {
	if len(g.Children) > 0 && g.Parent == nil {
		rc.RequestHeadersToRemove = append(rc.RequestHeadersToRemove, ForwardedRouteHeader)
	}
}
