package bootstrap_test

import (
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	internallistenerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/bootstrap/internal_listener/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
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
			require.True(t, b.GetBootstrapExtensions()[0].GetTypedConfig().MessageIs(&internallistenerv3.InternalListener{}), "fail-over hops need internal listeners")
			require.Nil(t, xds.GetTransportSocket(), "plaintext unless TLS files are given")
		})
	}
}

func TestRenderMTLS(t *testing.T) {
	files := bootstrap.Options{Gateway: "egress", NodeID: "vm-1",
		XDSCAFile: "/etc/envoy/xds-ca.crt", XDSCertFile: "/etc/envoy/xds.crt", XDSKeyFile: "/etc/envoy/xds.key"}
	with := func(addr, serverName string) bootstrap.Options {
		o := files
		o.XDSAddr, o.XDSServerName = addr, serverName
		return o
	}
	for _, tc := range []struct {
		name    string
		opts    bootstrap.Options
		sni     string
		sanType tlsv3.SubjectAltNameMatcher_SanType
		san     string
	}{
		{"dns host", with("tollgate.internal:18000", ""), "tollgate.internal", tlsv3.SubjectAltNameMatcher_DNS, "tollgate.internal"},
		{"ip host", with("10.0.0.5:18000", ""), "", tlsv3.SubjectAltNameMatcher_IP_ADDRESS, "10.0.0.5"},
		{"ipv6 host", with("[::1]:18000", ""), "", tlsv3.SubjectAltNameMatcher_IP_ADDRESS, "::1"},
		{"server name", with("10.0.0.5:18000", "tollgate.corp.example"), "tollgate.corp.example", tlsv3.SubjectAltNameMatcher_DNS, "tollgate.corp.example"},
		{"hostile paths", bootstrap.Options{Gateway: "egress", NodeID: "vm-1", XDSAddr: "tollgate.internal:18000",
			XDSCAFile: "/ca\"\nadmin: {}", XDSCertFile: "/c rt: x", XDSKeyFile: "/k'ey"}, "tollgate.internal", tlsv3.SubjectAltNameMatcher_DNS, "tollgate.internal"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, err := bootstrap.Render(tc.opts)
			require.NoError(t, err)
			b := parse(t, data)
			sock := b.GetStaticResources().GetClusters()[0].GetTransportSocket()
			require.Equal(t, "envoy.transport_sockets.tls", sock.GetName())
			got := &tlsv3.UpstreamTlsContext{}
			require.NoError(t, sock.GetTypedConfig().UnmarshalTo(got), "the typed_config is an UpstreamTlsContext")
			file := func(name string) *corev3.DataSource {
				return &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: name}}
			}
			want := &tlsv3.UpstreamTlsContext{
				Sni: tc.sni,
				CommonTlsContext: &tlsv3.CommonTlsContext{
					TlsParams:     &tlsv3.TlsParameters{TlsMinimumProtocolVersion: tlsv3.TlsParameters_TLSv1_2},
					AlpnProtocols: []string{"h2"},
					TlsCertificates: []*tlsv3.TlsCertificate{{
						CertificateChain: file(tc.opts.XDSCertFile),
						PrivateKey:       file(tc.opts.XDSKeyFile),
					}},
					ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
						TrustedCa: file(tc.opts.XDSCAFile),
						MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{
							SanType: tc.sanType,
							Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: tc.san}},
						}},
					}},
				},
			}
			require.True(t, proto.Equal(want, got), "UpstreamTlsContext:\n got %s\nwant %s", protojson.Format(got), protojson.Format(want))
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
		{bootstrap.Options{Gateway: "g", NodeID: "n", XDSAddr: "127.0.0.1:1", XDSCAFile: "/ca"}, "--xds-ca-file, --xds-cert-file and --xds-key-file go together"},
		{bootstrap.Options{Gateway: "g", NodeID: "n", XDSAddr: "127.0.0.1:1", XDSCertFile: "/c", XDSKeyFile: "/k"}, "go together"},
		{bootstrap.Options{Gateway: "g", NodeID: "n", XDSAddr: "127.0.0.1:1", XDSServerName: "x"}, "--xds-server-name needs"},
	} {
		_, err := bootstrap.Render(tc.opts)
		require.Error(t, err)
		require.True(t, strings.Contains(err.Error(), tc.want), err.Error())
	}
}

func TestRenderSPIFFE(t *testing.T) {
	const (
		socket   = "/run/spire/sockets/agent.sock"
		envoyID  = "spiffe://corp.example/gateway/egress/vm-1"
		serverID = "spiffe://corp.example/tollgate"
	)
	data, err := bootstrap.Render(bootstrap.Options{Gateway: "egress", NodeID: "vm-1", XDSAddr: "tollgate.internal:18000",
		SPIFFESocket: socket, SPIFFEID: envoyID, XDSSPIFFEID: serverID})
	require.NoError(t, err)
	b := parse(t, data)
	clusters := b.GetStaticResources().GetClusters()
	require.Len(t, clusters, 2)
	xds, agent := clusters[0], clusters[1]

	// The agent's SDS: a pipe, HTTP/2 (gRPC).
	require.Equal(t, bootstrap.SpireAgentCluster, agent.GetName())
	require.Equal(t, translate.SPIREAgentCluster, bootstrap.SpireAgentCluster, "listener and Parent-mode SDS name the agent's cluster")
	require.Equal(t, socket, agent.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetPipe().GetPath())
	require.Contains(t, agent.GetTypedExtensionProtocolOptions(), "envoy.extensions.upstreams.http.v3.HttpProtocolOptions")

	sock := xds.GetTransportSocket()
	got := &tlsv3.UpstreamTlsContext{}
	require.NoError(t, sock.GetTypedConfig().UnmarshalTo(got))
	sds := func(name string) *tlsv3.SdsSecretConfig {
		return &tlsv3.SdsSecretConfig{Name: name, SdsConfig: &corev3.ConfigSource{
			ResourceApiVersion: corev3.ApiVersion_V3,
			ConfigSourceSpecifier: &corev3.ConfigSource_ApiConfigSource{ApiConfigSource: &corev3.ApiConfigSource{
				ApiType: corev3.ApiConfigSource_GRPC, TransportApiVersion: corev3.ApiVersion_V3,
				GrpcServices: []*corev3.GrpcService{{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{
					EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: bootstrap.SpireAgentCluster}}}},
			}},
		}}
	}
	want := &tlsv3.UpstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
		TlsParams:                      &tlsv3.TlsParameters{TlsMinimumProtocolVersion: tlsv3.TlsParameters_TLSv1_2},
		AlpnProtocols:                  []string{"h2"},
		TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sds(envoyID)},
		ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
			DefaultValidationContext: &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{
				SanType: tlsv3.SubjectAltNameMatcher_URI,
				Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: serverID}},
			}}},
			// SPIRE's agent serves a trust domain's bundle under its ID.
			ValidationContextSdsSecretConfig: sds("spiffe://corp.example"),
		}},
	}}
	require.True(t, proto.Equal(want, got), "UpstreamTlsContext:\n got %s\nwant %s", protojson.Format(got), protojson.Format(want))
}

func TestRenderSPIFFEErrors(t *testing.T) {
	base := func(mod func(*bootstrap.Options)) bootstrap.Options {
		o := bootstrap.Options{Gateway: "g", NodeID: "n", XDSAddr: "127.0.0.1:1", SPIFFESocket: "/run/agent.sock",
			SPIFFEID: "spiffe://td/gw", XDSSPIFFEID: "spiffe://td/tollgate"}
		mod(&o)
		return o
	}
	for _, tc := range []struct {
		opts bootstrap.Options
		want string
	}{
		{base(func(o *bootstrap.Options) { o.SPIFFEID = "" }), "--spiffe-id is required with --spiffe-socket"},
		{base(func(o *bootstrap.Options) { o.XDSSPIFFEID = "" }), "--xds-spiffe-id is required"},
		{base(func(o *bootstrap.Options) { o.SPIFFEID = "corp/gw" }), `--spiffe-id "corp/gw"`},
		{base(func(o *bootstrap.Options) { o.XDSSPIFFEID = "spiffe://td/a*" }), `--xds-spiffe-id "spiffe://td/a*"`},
		{base(func(o *bootstrap.Options) { o.SPIFFESocket = "agent.sock" }), "want the absolute path"},
		{base(func(o *bootstrap.Options) { o.XDSCAFile = "/ca" }), "mutually exclusive"},
		{base(func(o *bootstrap.Options) { o.SPIFFESocket = "" }), "need --spiffe-socket"},
	} {
		_, err := bootstrap.Render(tc.opts)
		require.Error(t, err)
		require.Contains(t, err.Error(), tc.want)
	}
}

// TestRenderReplicas lists several tollgate replicas in the xDS cluster:
// the Envoy's ADS stream goes to one of them, and to another when it goes
// away (replicas serve identical versions for identical content).
func TestRenderReplicas(t *testing.T) {
	for _, tc := range []struct {
		addr, wantType string
		hosts          []string
	}{
		{"10.0.0.1:18000,10.0.0.2:18000", "STATIC", []string{"10.0.0.1", "10.0.0.2"}},
		{"tollgate-1.internal:18000, 10.0.0.2:18000", "STRICT_DNS", []string{"tollgate-1.internal", "10.0.0.2"}},
	} {
		data, err := bootstrap.Render(bootstrap.Options{Gateway: "egress", NodeID: "vm-1", XDSAddr: tc.addr})
		require.NoError(t, err)
		xds := parse(t, data).GetStaticResources().GetClusters()[0]
		require.Equal(t, tc.wantType, xds.GetType().String())
		var hosts []string
		for _, e := range xds.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints() {
			hosts = append(hosts, e.GetEndpoint().GetAddress().GetSocketAddress().GetAddress())
		}
		require.Equal(t, tc.hosts, hosts)
	}
	_, err := bootstrap.Render(bootstrap.Options{Gateway: "egress", NodeID: "vm-1", XDSAddr: "a.internal:18000,b.internal:18000",
		XDSCAFile: "/ca", XDSCertFile: "/c", XDSKeyFile: "/k"})
	require.ErrorContains(t, err, "--xds-server-name")
	_, err = bootstrap.Render(bootstrap.Options{Gateway: "egress", NodeID: "vm-1", XDSAddr: "a.internal:18000,b.internal:18000",
		XDSCAFile: "/ca", XDSCertFile: "/c", XDSKeyFile: "/k", XDSServerName: "tollgate.internal"})
	require.NoError(t, err)
}
