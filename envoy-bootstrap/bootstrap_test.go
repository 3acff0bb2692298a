package bootstrap_test

import (
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"

	bootstrap "github.com/tollgate-dev/tollgate/envoy-bootstrap"
	"github.com/tollgate-dev/tollgate/translate"
)

// parse loads the rendered YAML the way Envoy does (YAML → proto JSON) and
// checks it against Envoy's constraints.
func parse(t *testing.T, data []byte) *bootstrapv3.Bootstrap {
	t.Helper()
	js, err := yaml.YAMLToJSON(data)
	require.NoError(t, err)
	b := &bootstrapv3.Bootstrap{}
	require.NoError(t, protojson.Unmarshal(js, b), "Envoy could not parse the bootstrap")
	require.NoError(t, translate.ValidateDeep(b))
	return b
}

func TestRender(t *testing.T) {
	for _, tc := range []struct {
		name     string
		opts     bootstrap.Options
		wantType string
		wantAPI  string
	}{
		{"ip", bootstrap.Options{Gateway: "egress", NodeID: "vm-1", XDSAddr: "127.0.0.1:18000"}, "STATIC", "GRPC"},
		{"dns-delta", bootstrap.Options{Gateway: "team-a/egress", NodeID: "vm-2", XDSAddr: "tollgate.internal:18000", Delta: true, AdminPort: 9902}, "STRICT_DNS", "DELTA_GRPC"},
		{"hostile names", bootstrap.Options{Gateway: "egress\nadmin: {}", NodeID: "\"x\": y", XDSAddr: "[::1]:18000"}, "STATIC", "GRPC"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, err := bootstrap.Render(tc.opts)
			require.NoError(t, err)
			b := parse(t, data)
			require.Equal(t, tc.opts.Gateway, b.GetNode().GetCluster())
			require.Equal(t, tc.opts.NodeID, b.GetNode().GetId())
			require.Equal(t, tc.wantAPI, b.GetDynamicResources().GetAdsConfig().GetApiType().String())
			xds := b.GetStaticResources().GetClusters()[0]
			require.Equal(t, "xds_cluster", xds.GetName())
			require.Equal(t, tc.wantType, xds.GetType().String())
			require.Equal(t, "127.0.0.1", b.GetAdmin().GetAddress().GetSocketAddress().GetAddress())
		})
	}
}

func TestRenderErrors(t *testing.T) {
	for _, tc := range []struct {
		opts bootstrap.Options
		want string
	}{
		{bootstrap.Options{NodeID: "n", XDSAddr: "127.0.0.1:1"}, "--gateway is required"},
		{bootstrap.Options{Gateway: "g", XDSAddr: "127.0.0.1:1"}, "--node-id is required"},
		{bootstrap.Options{Gateway: "g", NodeID: "n", XDSAddr: "127.0.0.1"}, "want host:port"},
		{bootstrap.Options{Gateway: "g", NodeID: "n", XDSAddr: "127.0.0.1:0"}, "port must be"},
	} {
		_, err := bootstrap.Render(tc.opts)
		require.Error(t, err)
		require.True(t, strings.Contains(err.Error(), tc.want), err.Error())
	}
}
