package envoysim_test

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	deltav3 "github.com/envoyproxy/go-control-plane/pkg/server/delta/v3"
	sotwv3 "github.com/envoyproxy/go-control-plane/pkg/server/sotw/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"github.com/stretchr/testify/require"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/tollgate-dev/tollgate/xds/envoysim"
)

const (
	nodeID  = "envoy-1"
	gateway = "gw"
)

var allTypes = []string{resource.ClusterType, resource.EndpointType, resource.ListenerType, resource.RouteType, resource.SecretType}

// testServer is a go-control-plane ADS server on 127.0.0.1 that records
// what its callbacks see.
type testServer struct {
	cache cachev3.SnapshotCache
	addr  string
	// refuse, if set, is returned for every request, ending the stream.
	refuse error

	mu        sync.Mutex
	node      *corev3.Node
	nacks     []nack
	firstNack chan struct{} // closed at the first NACK
}

type nack struct{ typeURL, version, message string }

// adsServer serves ADS from go-control-plane's SotW and Delta servers.
// pkg/server/v3 would do the same, but it imports the ratelimit module,
// which this module does not require.
type adsServer struct {
	sotw  sotwv3.Server
	delta deltav3.Server
}

func (s adsServer) StreamAggregatedResources(st discovery.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	return s.sotw.StreamHandler(st, resource.AnyType)
}

func (s adsServer) DeltaAggregatedResources(st discovery.AggregatedDiscoveryService_DeltaAggregatedResourcesServer) error {
	return s.delta.DeltaStreamHandler(st, resource.AnyType)
}

func startServer(t *testing.T, refuse error) *testServer {
	t.Helper()
	s := &testServer{
		cache:     cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil),
		refuse:    refuse,
		firstNack: make(chan struct{}),
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s.addr = lis.Addr().String()
	g := grpc.NewServer()
	discovery.RegisterAggregatedDiscoveryServiceServer(g, adsServer{
		sotw:  sotwv3.NewServer(t.Context(), s.cache, s, sotwv3.WithOrderedADS()),
		delta: deltav3.NewServer(t.Context(), s.cache, s),
	})
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	return s
}

func (s *testServer) setSnapshot(t *testing.T, snap *cachev3.Snapshot) {
	t.Helper()
	require.NoError(t, snap.Consistent())
	require.NoError(t, s.cache.SetSnapshot(t.Context(), nodeID, snap))
}

func (s *testServer) request(node *corev3.Node, typeURL, version string, detail *rpcstatus.Status) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.node == nil && node != nil {
		s.node = node
	}
	if detail != nil {
		if len(s.nacks) == 0 {
			close(s.firstNack)
		}
		s.nacks = append(s.nacks, nack{typeURL, version, detail.GetMessage()})
	}
	return s.refuse
}

func (s *testServer) OnStreamRequest(_ int64, r *discovery.DiscoveryRequest) error {
	return s.request(r.GetNode(), r.GetTypeUrl(), r.GetVersionInfo(), r.GetErrorDetail())
}

func (s *testServer) OnStreamDeltaRequest(_ int64, r *discovery.DeltaDiscoveryRequest) error {
	return s.request(r.GetNode(), r.GetTypeUrl(), "", r.GetErrorDetail())
}

func (*testServer) OnStreamOpen(context.Context, int64, string) error      { return nil }
func (*testServer) OnStreamClosed(int64, *corev3.Node)                     {}
func (*testServer) OnDeltaStreamOpen(context.Context, int64, string) error { return nil }
func (*testServer) OnDeltaStreamClosed(int64, *corev3.Node)                {}
func (*testServer) OnStreamResponse(context.Context, int64, *discovery.DiscoveryRequest, *discovery.DiscoveryResponse) {
}
func (*testServer) OnStreamDeltaResponse(int64, *discovery.DeltaDiscoveryRequest, *discovery.DeltaDiscoveryResponse) {
}

func connect(t *testing.T, s *testServer, delta bool, reject func(string, proto.Message) error) *envoysim.Client {
	t.Helper()
	c, err := envoysim.New(t.Context(), s.addr, envoysim.Options{
		NodeID:      nodeID,
		Gateway:     gateway,
		Delta:       delta,
		DialOptions: []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())},
		Reject:      reject,
		Logf:        t.Logf,
	})
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c
}

func waitCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// forModes runs a test against SotW and Delta ADS.
func forModes(t *testing.T, f func(t *testing.T, delta bool)) {
	for _, mode := range []struct {
		name  string
		delta bool
	}{{"sotw", false}, {"delta", true}} {
		t.Run(mode.name, func(t *testing.T) { f(t, mode.delta) })
	}
}

func TestFollowsReferencesAndAcks(t *testing.T) {
	forModes(t, func(t *testing.T, delta bool) {
		s := startServer(t, nil)
		s.setSnapshot(t, snapshot(t, "1", "backend-eds", 9000))
		c := connect(t, s, delta, nil)
		ctx := waitCtx(t)

		st, err := c.WaitFor(ctx, func(s envoysim.State) bool {
			for _, typeURL := range allTypes {
				if s.Versions[typeURL] != "1" {
					return false
				}
			}
			return true
		})
		require.NoError(t, err)
		require.Equal(t, []string{"backend"}, st.Names(resource.ClusterType))
		require.Equal(t, []string{"backend-eds"}, st.Names(resource.EndpointType))
		require.Equal(t, []string{"http"}, st.Names(resource.ListenerType))
		require.Equal(t, []string{"routes"}, st.Names(resource.RouteType))
		require.Equal(t, []string{"client-cert"}, st.Names(resource.SecretType))
		for _, typeURL := range allTypes {
			require.GreaterOrEqual(t, c.Responses(typeURL), 1, typeURL)
		}

		s.mu.Lock()
		require.Equal(t, nodeID, s.node.GetId())
		require.Equal(t, gateway, s.node.GetCluster())
		s.mu.Unlock()

		// Version 2 renames the cluster's EDS service: the client must
		// follow the new name and forget the old one.
		s.setSnapshot(t, snapshot(t, "2", "backend-v2", 9001))
		st, err = c.WaitFor(ctx, func(s envoysim.State) bool {
			return s.Versions[resource.ClusterType] == "2" && s.Versions[resource.EndpointType] == "2" &&
				len(s.Resources[resource.EndpointType]) == 1
		})
		require.NoError(t, err)
		cla, ok := envoysim.Get[*endpointv3.ClusterLoadAssignment](st, "backend-v2")
		require.True(t, ok, "names: %v", st.Names(resource.EndpointType))
		port := cla.GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress().GetPortValue()
		require.EqualValues(t, 9001, port)

		for _, r := range c.History() {
			require.True(t, r.Acked, "%v", r)
		}
		require.NoError(t, c.Err())
	})
}

func TestNack(t *testing.T) {
	refuseBad := func(_ string, res proto.Message) error {
		if c, ok := res.(*clusterv3.Cluster); ok && c.GetName() == "bad" {
			return errors.New("cluster bad refused")
		}
		return nil
	}
	for _, tc := range []struct {
		name    string
		reject  func(string, proto.Message) error
		timeout time.Duration // of the extra cluster
		wantErr string
	}{
		{"reject hook", refuseBad, time.Second, "cluster bad refused"},
		{"invalid resource", nil, -time.Second, "ConnectTimeout: value must be greater than 0s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			forModes(t, func(t *testing.T, delta bool) {
				s := startServer(t, nil)
				s.setSnapshot(t, snapshot(t, "1", "backend-eds", 9000))
				c := connect(t, s, delta, tc.reject)
				ctx := waitCtx(t)
				_, err := c.WaitFor(ctx, func(s envoysim.State) bool { return s.Versions[resource.ClusterType] == "1" })
				require.NoError(t, err)

				bad := &clusterv3.Cluster{
					Name:                 "bad",
					ConnectTimeout:       durationpb.New(tc.timeout),
					ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
				}
				s.setSnapshot(t, snapshot(t, "2", "backend-eds", 9000, bad))
				r, err := c.WaitForResponse(ctx, func(r envoysim.Response) bool { return !r.Acked })
				require.NoError(t, err)
				require.Equal(t, resource.ClusterType, r.TypeURL)
				require.Equal(t, "2", r.Version)
				require.Contains(t, r.Err, tc.wantErr)

				// The server saw the NACK; in SotW it carries the last
				// accepted version.
				select {
				case <-s.firstNack:
				case <-ctx.Done():
					t.Fatal("the server saw no NACK")
				}
				s.mu.Lock()
				first := s.nacks[0]
				s.mu.Unlock()
				require.Equal(t, resource.ClusterType, first.typeURL)
				require.Contains(t, first.message, tc.wantErr)
				if !delta {
					require.Equal(t, "1", first.version)
				}

				// The previously accepted clusters are kept.
				st := c.State()
				require.Equal(t, "1", st.Versions[resource.ClusterType])
				require.Equal(t, []string{"backend"}, st.Names(resource.ClusterType))

				// A fixed version is accepted again.
				s.setSnapshot(t, snapshot(t, "3", "backend-eds", 9000))
				st, err = c.WaitFor(ctx, func(s envoysim.State) bool { return s.Versions[resource.ClusterType] == "3" })
				require.NoError(t, err)
				require.Equal(t, []string{"backend"}, st.Names(resource.ClusterType))
				t.Logf("%d CDS responses", c.Responses(resource.ClusterType))
			})
		})
	}
}

func TestSubscribe(t *testing.T) {
	forModes(t, func(t *testing.T, delta bool) {
		s := startServer(t, nil)
		extra := &tlsv3.Secret{Name: "extra", Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
			CertificateChain: inline("cert"), PrivateKey: inline("key"),
		}}}
		s.setSnapshot(t, snapshot(t, "1", "backend-eds", 9000, extra))
		c := connect(t, s, delta, nil)
		ctx := waitCtx(t)
		_, err := c.WaitFor(ctx, func(s envoysim.State) bool { return len(s.Resources[resource.ClusterType]) == 1 })
		require.NoError(t, err)

		c.Subscribe(resource.SecretType, "extra")
		st, err := c.WaitFor(ctx, func(s envoysim.State) bool { return len(s.Resources[resource.SecretType]) == 2 })
		require.NoError(t, err)
		require.Equal(t, []string{"client-cert", "extra"}, st.Names(resource.SecretType))
	})
}

func TestServerRefusesStream(t *testing.T) {
	forModes(t, func(t *testing.T, delta bool) {
		s := startServer(t, status.Error(codes.PermissionDenied, "node envoy-1 is not allowed"))
		c := connect(t, s, delta, nil)
		_, err := c.WaitFor(waitCtx(t), func(envoysim.State) bool { return false })
		require.ErrorContains(t, err, "not allowed")
		<-c.Done()
		st, ok := status.FromError(c.Err())
		require.True(t, ok, "%v", c.Err())
		require.Equal(t, codes.PermissionDenied, st.Code())
		require.Equal(t, "node envoy-1 is not allowed", st.Message())
	})
}

// snapshot builds a listener routing to an EDS cluster, whose endpoints
// are named eds and listen on port, with a client certificate from SDS.
func snapshot(t *testing.T, version, eds string, port uint32, extra ...types.Resource) *cachev3.Snapshot {
	t.Helper()
	ads := &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: "http",
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource: ads, RouteConfigName: "routes",
		}},
		HttpFilters: []*hcmv3.HttpFilter{{
			Name:       wellknown.Router,
			ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, &routerv3.Router{})},
		}},
	}
	listener := &listenerv3.Listener{
		Name:    "http",
		Address: socketAddress("0.0.0.0", 8080),
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
			Name:       wellknown.HTTPConnectionManager,
			ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, hcm)},
		}}}},
	}
	route := &routev3.RouteConfiguration{
		Name: "routes",
		VirtualHosts: []*routev3.VirtualHost{{
			Name:    "all",
			Domains: []string{"*"},
			Routes: []*routev3.Route{{
				Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{
					ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "backend"},
				}},
			}},
		}},
	}
	tls := &tlsv3.UpstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
		TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: "client-cert", SdsConfig: ads}},
	}}
	cluster := &clusterv3.Cluster{
		Name:                 "backend",
		ConnectTimeout:       durationpb.New(time.Second),
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: ads, ServiceName: eds},
		TransportSocket: &corev3.TransportSocket{
			Name:       wellknown.TransportSocketTLS,
			ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(t, tls)},
		},
	}
	cla := &endpointv3.ClusterLoadAssignment{
		ClusterName: eds,
		Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{{
			HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
				Address: socketAddress("127.0.0.1", port),
			}},
		}}}},
	}
	secret := &tlsv3.Secret{Name: "client-cert", Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
		CertificateChain: inline("cert"), PrivateKey: inline("key"),
	}}}
	resources := map[resource.Type][]types.Resource{
		resource.ListenerType: {listener},
		resource.RouteType:    {route},
		resource.ClusterType:  {cluster},
		resource.EndpointType: {cla},
		resource.SecretType:   {secret},
	}
	for _, r := range extra {
		typeURL := resource.APITypePrefix + string(r.ProtoReflect().Descriptor().FullName())
		resources[typeURL] = append(resources[typeURL], r)
	}
	snap, err := cachev3.NewSnapshot(version, resources)
	require.NoError(t, err)
	return snap
}

func socketAddress(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

func inline(s string) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: s}}
}

func mustAny(t *testing.T, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	require.NoError(t, err)
	return a
}
