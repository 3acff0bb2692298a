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
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
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
		// Secrets are referenced from transport sockets and from upstream
		// HTTP filters (credential injectors) alike: follow every one.
		sdsRefs(c.ProtoReflect(), secrets)
	}
	for _, m := range listeners {
		l := m.(*listenerv3.Listener)
		sdsRefs(l.ProtoReflect(), secrets)
		for _, fc := range slices.Concat(l.GetFilterChains(), []*listenerv3.FilterChain{l.GetDefaultFilterChain()}) {
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

// sdsRefs adds every SDS secret fetched over ADS anywhere below m,
// looking inside Anys, as Envoy does when it builds the listener or
// cluster and everything in it.
func sdsRefs(m protoreflect.Message, names map[string]bool) {
	switch x := m.Interface().(type) {
	case *tlsv3.SdsSecretConfig:
		if isADS(x.GetSdsConfig()) {
			names[x.GetName()] = true
		}
		return
	case *anypb.Any:
		if inner, err := x.UnmarshalNew(); err == nil {
			sdsRefs(inner.ProtoReflect(), names)
		}
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Message() != nil:
			for i := 0; i < v.List().Len(); i++ {
				sdsRefs(v.List().Get(i).Message(), names)
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				sdsRefs(mv.Message(), names)
				return true
			})
		case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
			sdsRefs(v.Message(), names)
		}
		return true
	})
}

func isADS(cs *corev3.ConfigSource) bool { return cs.GetAds() != nil }
