package translate_test

import (
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/tollgate-dev/tollgate/translate"
)

func packed(t *testing.T, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	require.NoError(t, err)
	return a
}

// listenerWith is a valid listener whose only filter is hcm, packed in an
// Any as Envoy receives it.
func listenerWith(t *testing.T, hcm *hcmv3.HttpConnectionManager) *listenerv3.Listener {
	return &listenerv3.Listener{
		Name: "l",
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
			Name:       "envoy.filters.network.http_connection_manager",
			ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: packed(t, hcm)},
		}}}},
	}
}

func validHCM(t *testing.T) *hcmv3.HttpConnectionManager {
	return &hcmv3.HttpConnectionManager{
		StatPrefix:     "http",
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{RouteConfigName: "r"}},
		HttpFilters:    []*hcmv3.HttpFilter{{Name: "envoy.filters.http.router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: packed(t, &routerv3.Router{})}}},
	}
}

// TestValidateDeepChecksInsideAny guards what "deep" means: a violation of
// Envoy's constraints in a message packed in an Any — in a singular field,
// a list, a map, or an Any inside an Any — is found, although the outer
// message's own ValidateAll passes; and an Any of an unknown type is an
// error, as Envoy refuses it.
func TestValidateDeepChecksInsideAny(t *testing.T) {
	require.NoError(t, translate.ValidateDeep(listenerWith(t, validHCM(t))), "the valid base must pass, or the cases below prove nothing")

	noPrefix := validHCM(t)
	noPrefix.StatPrefix = "" // min_len 1
	badRouter := validHCM(t)
	badRouter.HttpFilters[0].ConfigType = &hcmv3.HttpFilter_TypedConfig{TypedConfig: packed(t, &routerv3.Router{
		// An Any inside an Any (the router in the HCM in the listener)
		// with a nameless filter, which Envoy refuses.
		UpstreamHttpFilters: []*hcmv3.HttpFilter{{Name: ""}},
	})}
	unknown := validHCM(t)
	unknown.HttpFilters[0].ConfigType = &hcmv3.HttpFilter_TypedConfig{TypedConfig: &anypb.Any{TypeUrl: "type.googleapis.com/tollgate.NoSuchType"}}
	badOptions := &clusterv3.Cluster{
		Name:           "c",
		ConnectTimeout: durationpb.New(1),
		TypedExtensionProtocolOptions: map[string]*anypb.Any{
			"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": packed(t, &httpv3.HttpProtocolOptions{
				UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
					ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{},
				}},
				HttpFilters: []*hcmv3.HttpFilter{{Name: ""}},
			}),
		},
	}
	for _, c := range []struct {
		name string
		m    proto.Message
		want string
	}{
		{"Any in a list (listener filter)", listenerWith(t, noPrefix), "StatPrefix"},
		{"Any in an Any in a list (HCM's router)", listenerWith(t, badRouter), "envoy.extensions.filters.http.router.v3.Router"},
		{"unknown type in an Any", listenerWith(t, unknown), `unknown type "type.googleapis.com/tollgate.NoSuchType"`},
		{"Any in a map (cluster protocol options)", badOptions, "HttpProtocolOptions"},
	} {
		t.Run(c.name, func(t *testing.T) {
			require.NoError(t, c.m.(interface{ ValidateAll() error }).ValidateAll(), "the outer message must pass on its own: the violation is inside the Any")
			err := translate.ValidateDeep(c.m)
			require.Error(t, err, "ValidateDeep did not look inside the Any")
			require.Contains(t, err.Error(), c.want)
		})
	}
}
