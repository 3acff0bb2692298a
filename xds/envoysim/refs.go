package envoysim

import (
	"slices"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
)

// followedTypes are the types subscribed to by name, for what clusters and
// listeners reference.
var followedTypes = []string{resource.EndpointType, resource.RouteType, resource.SecretType}

// references returns, by type URL, the names of the endpoints, route
// configurations and secrets that clusters and listeners fetch over ADS.
// References to other config sources are not followed: Envoy would open
// other streams for them.
func references(clusters, listeners map[string]proto.Message) map[string]map[string]bool {
	refs := map[string]map[string]bool{}
	for _, typeURL := range followedTypes {
		refs[typeURL] = map[string]bool{}
	}
	secrets := refs[resource.SecretType]
	for _, m := range clusters {
		c := m.(*clusterv3.Cluster)
		if eds := c.GetEdsClusterConfig(); c.GetType() == clusterv3.Cluster_EDS && isADS(eds.GetEdsConfig()) {
			name := eds.GetServiceName()
			if name == "" {
				name = c.GetName()
			}
			refs[resource.EndpointType][name] = true
		}
		secretRefs(c.GetTransportSocket(), secrets)
		for _, match := range c.GetTransportSocketMatches() {
			secretRefs(match.GetTransportSocket(), secrets)
		}
	}
	for _, m := range listeners {
		l := m.(*listenerv3.Listener)
		for _, fc := range slices.Concat(l.GetFilterChains(), []*listenerv3.FilterChain{l.GetDefaultFilterChain()}) {
			secretRefs(fc.GetTransportSocket(), secrets)
			for _, f := range fc.GetFilters() {
				hcm := &hcmv3.HttpConnectionManager{}
				if !f.GetTypedConfig().MessageIs(hcm) || f.GetTypedConfig().UnmarshalTo(hcm) != nil {
					continue
				}
				if rds := hcm.GetRds(); isADS(rds.GetConfigSource()) {
					refs[resource.RouteType][rds.GetRouteConfigName()] = true
				}
			}
		}
	}
	return refs
}

// secretRefs adds the SDS secrets a TLS transport socket fetches over ADS.
func secretRefs(ts *corev3.TransportSocket, names map[string]bool) {
	add := func(s *tlsv3.SdsSecretConfig) {
		if isADS(s.GetSdsConfig()) {
			names[s.GetName()] = true
		}
	}
	var common *tlsv3.CommonTlsContext
	up, down := &tlsv3.UpstreamTlsContext{}, &tlsv3.DownstreamTlsContext{}
	switch tc := ts.GetTypedConfig(); {
	case tc.MessageIs(up) && tc.UnmarshalTo(up) == nil:
		common = up.GetCommonTlsContext()
	case tc.MessageIs(down) && tc.UnmarshalTo(down) == nil:
		common = down.GetCommonTlsContext()
		add(down.GetSessionTicketKeysSdsSecretConfig())
	default:
		return
	}
	for _, s := range common.GetTlsCertificateSdsSecretConfigs() {
		add(s)
	}
	add(common.GetValidationContextSdsSecretConfig())
	add(common.GetCombinedValidationContext().GetValidationContextSdsSecretConfig())
}

func isADS(cs *corev3.ConfigSource) bool { return cs.GetAds() != nil }
