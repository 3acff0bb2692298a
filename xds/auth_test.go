package xds_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	clusterservice "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/tollgate-dev/tollgate/translate"
	"github.com/tollgate-dev/tollgate/xds"
	"github.com/tollgate-dev/tollgate/xds/envoysim"
	"github.com/tollgate-dev/tollgate/xds/xdstest"
)

// syncBuffer collects log output from several goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

const (
	egressID = "spiffe://corp.example/gateway/egress"
	rogueID  = "spiffe://corp.example/gateway/rogue"
)

// mtls is a TLS xDS server on 127.0.0.1 serving twoGateways (a and
// team/b), its CA and the log.
type mtls struct {
	ca   *xdstest.CA
	srv  *xds.Server
	addr string
	logs *syncBuffer
}

func startMTLS(t *testing.T, bindings []xds.IdentityBinding) *mtls {
	t.Helper()
	ca := xdstest.NewCA(t, "tollgate test CA")
	files := xdstest.WriteServerFiles(t, t.TempDir(), ca.Server(t, "tollgate"), ca)
	logs := &syncBuffer{}
	log := slogText(logs)
	tlsCfg, err := xds.NewServerTLS(xds.TLSFiles(files), log)
	require.NoError(t, err)
	authz, err := xds.NewAuthorizer(bindings)
	require.NoError(t, err)
	srv := xds.NewServer(t.Context(), xds.Options{Log: log, TLS: tlsCfg, Authorizer: authz})
	require.NoError(t, srv.Apply(config(t, strings.ReplaceAll(twoGateways, "TIMEOUT", "60s"))))
	return &mtls{ca: ca, srv: srv, addr: serve(t, srv), logs: logs}
}

// serve runs srv on a loopback port until the test ends.
func serve(t *testing.T, srv *xds.Server) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, lis) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	return lis.Addr().String()
}

func slogText(w *syncBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func waitCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func (m *mtls) connect(t *testing.T, leaf *xdstest.Leaf, node, gateway string, delta bool) *envoysim.Client {
	t.Helper()
	c, err := envoysim.New(context.Background(), m.addr, envoysim.Options{
		NodeID: node, Gateway: gateway, Delta: delta,
		DialOptions: []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(xdstest.ClientTLS(m.ca, leaf)))},
		Logf:        t.Logf,
	})
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c
}

func hasListener(s envoysim.State) bool { return len(s.Names(resourcev3.ListenerType)) == 1 }

// ended waits for the stream of c to end and returns why.
func ended(t *testing.T, c *envoysim.Client) error {
	t.Helper()
	select {
	case <-c.Done():
		return c.Err()
	case <-waitCtx(t).Done():
		t.Fatal("the stream was not ended")
		return nil
	}
}

var modes = map[string]bool{"sotw": false, "delta": true}

func TestMTLSIdentityGetsItsGateway(t *testing.T) {
	for name, delta := range modes {
		t.Run(name, func(t *testing.T) {
			m := startMTLS(t, []xds.IdentityBinding{
				{Identity: egressID, Gateways: []string{"a"}},
				{Identity: "VM-7.Corp.Example", Gateways: []string{"team/b"}},
			})
			spiffe := m.connect(t, m.ca.Client(t, []string{egressID}, nil), "vm-1", "a", delta)
			st, err := spiffe.WaitFor(waitCtx(t), hasListener)
			require.NoError(t, err)
			require.Equal(t, []string{"backend/default/openai"}, st.Names(resourcev3.ClusterType))

			// Without URI SANs, DNS SANs identify the Envoy; any of them
			// may carry the binding, compared without regard to case.
			dns := m.connect(t, m.ca.Client(t, nil, []string{"other.corp.example", "vm-7.corp.example"}), "vm-7", "team/b", delta)
			_, err = dns.WaitFor(waitCtx(t), hasListener)
			require.NoError(t, err)

			nodes := map[string]string{}
			for _, n := range m.srv.Status().Nodes {
				nodes[n.NodeID] = n.Identity
			}
			require.Equal(t, map[string]string{"vm-1": egressID, "vm-7": "vm-7.corp.example"}, nodes)
			require.Contains(t, m.logs.String(), "identity="+egressID)
		})
	}
}

func TestMTLSRefusesOtherGateway(t *testing.T) {
	for name, delta := range modes {
		t.Run(name, func(t *testing.T) {
			m := startMTLS(t, []xds.IdentityBinding{{Identity: egressID, Gateways: []string{"a"}}})

			c := m.connect(t, m.ca.Client(t, []string{egressID}, nil), "vm-1", "team/b", delta)
			err := ended(t, c)
			require.Equal(t, codes.PermissionDenied, status.Code(err), "%v", err)
			msg := status.Convert(err).Message()
			require.Contains(t, msg, `certificate identity "`+egressID+`" (node "vm-1") asked for gateway "team/b", but may serve only ["a"]`)
			require.Contains(t, msg, "fix node.cluster in this Envoy's bootstrap")
			require.Contains(t, msg, `add "team/b" to the gateways of "`+egressID+`" in xds-identities`)
			require.Empty(t, c.History())
			require.Equal(t, 1, strings.Count(m.logs.String(), "xDS stream refused"), m.logs.String())
			require.Empty(t, m.srv.Status().Nodes)

			// An identity without any binding is told how to add one.
			r := m.connect(t, m.ca.Client(t, []string{rogueID}, nil), "vm-2", "a", delta)
			err = ended(t, r)
			require.Equal(t, codes.PermissionDenied, status.Code(err), "%v", err)
			require.Contains(t, status.Convert(err).Message(), `no gateway is bound to this identity; to allow it, add {identity: "`+rogueID+`", gateways: ["a"]} to xds-identities`)

			// A node without a gateway is refused too.
			e := m.connect(t, m.ca.Client(t, []string{egressID}, nil), "vm-3", "", delta)
			err = ended(t, e)
			require.Equal(t, codes.PermissionDenied, status.Code(err), "%v", err)
			require.Contains(t, status.Convert(err).Message(), "did not name a gateway")
		})
	}
}

// A SPIFFE ID is the identity when present: DNS SANs beside it grant
// nothing.
func TestMTLSURISANTakesPrecedence(t *testing.T) {
	m := startMTLS(t, []xds.IdentityBinding{{Identity: "vm-1.corp.example", Gateways: []string{"a"}}})
	c := m.connect(t, m.ca.Client(t, []string{rogueID}, []string{"vm-1.corp.example"}), "vm-1", "a", false)
	err := ended(t, c)
	require.Equal(t, codes.PermissionDenied, status.Code(err), "%v", err)
	require.Contains(t, err.Error(), rogueID)
}

// A stream is bound to the gateway of its first request: a node that
// names another gateway later is refused instead of being moved to that
// gateway's snapshot.
func TestMTLSRefusesGatewaySwitch(t *testing.T) {
	m := startMTLS(t, []xds.IdentityBinding{{Identity: egressID, Gateways: []string{"a"}}})
	conn, err := grpc.NewClient(m.addr, grpc.WithTransportCredentials(credentials.NewTLS(xdstest.ClientTLS(m.ca, m.ca.Client(t, []string{egressID}, nil)))))
	require.NoError(t, err)
	defer conn.Close()
	ads := discoveryv3.NewAggregatedDiscoveryServiceClient(conn)
	ctx := waitCtx(t)

	t.Run("sotw", func(t *testing.T) {
		st, err := ads.StreamAggregatedResources(ctx)
		require.NoError(t, err)
		require.NoError(t, st.Send(&discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: "vm-1", Cluster: "a"}, TypeUrl: resourcev3.ClusterType}))
		resp, err := st.Recv()
		require.NoError(t, err)
		require.Len(t, resp.GetResources(), 1)
		require.NoError(t, st.Send(&discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: "vm-1", Cluster: "team/b"}, TypeUrl: resourcev3.ListenerType}))
		for err == nil {
			_, err = st.Recv()
		}
		require.Equal(t, codes.PermissionDenied, status.Code(err), "%v", err)
		require.Contains(t, err.Error(), `switched from gateway "a" to "team/b"`)
	})
	t.Run("delta", func(t *testing.T) {
		st, err := ads.DeltaAggregatedResources(ctx)
		require.NoError(t, err)
		require.NoError(t, st.Send(&discoveryv3.DeltaDiscoveryRequest{Node: &corev3.Node{Id: "vm-1", Cluster: "a"}, TypeUrl: resourcev3.ClusterType}))
		resp, err := st.Recv()
		require.NoError(t, err)
		require.Len(t, resp.GetResources(), 1)
		require.NoError(t, st.Send(&discoveryv3.DeltaDiscoveryRequest{Node: &corev3.Node{Id: "vm-1", Cluster: "team/b"}, TypeUrl: resourcev3.ListenerType}))
		for err == nil {
			_, err = st.Recv()
		}
		require.Equal(t, codes.PermissionDenied, status.Code(err), "%v", err)
	})
}

// The unary Fetch methods of the per-type services obey the same binding.
func TestMTLSFetch(t *testing.T) {
	m := startMTLS(t, []xds.IdentityBinding{{Identity: egressID, Gateways: []string{"a"}}})
	conn, err := grpc.NewClient(m.addr, grpc.WithTransportCredentials(credentials.NewTLS(xdstest.ClientTLS(m.ca, m.ca.Client(t, []string{egressID}, nil)))))
	require.NoError(t, err)
	defer conn.Close()
	cds := clusterservice.NewClusterDiscoveryServiceClient(conn)

	resp, err := cds.FetchClusters(waitCtx(t), &discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: "vm-1", Cluster: "a"}, TypeUrl: resourcev3.ClusterType})
	require.NoError(t, err)
	require.Len(t, resp.GetResources(), 1)

	_, err = cds.FetchClusters(waitCtx(t), &discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: "vm-1", Cluster: "team/b"}, TypeUrl: resourcev3.ClusterType})
	require.Equal(t, codes.PermissionDenied, status.Code(err), "%v", err)
}

// refusedAtHandshake checks that a client with tlsCfg cannot open a
// stream because the server refused its TLS handshake. With TLS 1.3 the
// client learns it from the server's alert after its own handshake
// finished, so the refusal shows either when opening the stream or as its
// end.
func (m *mtls) refusedAtHandshake(t *testing.T, creds credentials.TransportCredentials, want string) {
	t.Helper()
	c, err := envoysim.New(context.Background(), m.addr, envoysim.Options{
		NodeID: "vm-x", Gateway: "a",
		DialOptions: []grpc.DialOption{grpc.WithTransportCredentials(creds)},
	})
	if err == nil {
		t.Cleanup(c.Close)
		err = ended(t, c)
		require.Empty(t, c.History())
	}
	require.Equal(t, codes.Unavailable, status.Code(err), "%v", err)
	// The client's error depends on when the alert arrived; the server
	// says why.
	require.Eventually(t, func() bool { return strings.Contains(m.logs.String(), want) }, 10*time.Second, 10*time.Millisecond, "%s not in\n%s", want, m.logs.String())
}

func TestMTLSHandshakeRefusals(t *testing.T) {
	m := startMTLS(t, []xds.IdentityBinding{{Identity: egressID, Gateways: []string{"a"}}})
	untrusted := xdstest.NewCA(t, "untrusted CA")

	noCert := credentials.NewTLS(xdstest.ClientTLS(m.ca, nil))
	m.refusedAtHandshake(t, noCert, "tls: client didn't provide a certificate")

	// A certificate with the right SPIFFE ID from another CA.
	forged := credentials.NewTLS(xdstest.ClientTLS(m.ca, untrusted.Client(t, []string{egressID}, nil)))
	m.refusedAtHandshake(t, forged, "certificate signed by unknown authority")

	// A certificate without the clientAuth usage, e.g. a server
	// certificate of the same CA.
	serverCert := credentials.NewTLS(xdstest.ClientTLS(m.ca, m.ca.Issue(t, xdstest.LeafOptions{CommonName: "srv", URIs: []string{egressID}, Server: true})))
	m.refusedAtHandshake(t, serverCert, "incompatible key usage")

	m.refusedAtHandshake(t, insecure.NewCredentials(), "first record does not look like a TLS handshake")
	require.Empty(t, m.srv.Status().Nodes)
}

// A server with TLS but no identity bindings refuses everyone.
func TestMTLSWithoutAuthorizerRefusesAll(t *testing.T) {
	m := startMTLS(t, nil)
	c := m.connect(t, m.ca.Client(t, []string{egressID}, nil), "vm-1", "a", false)
	err := ended(t, c)
	require.Equal(t, codes.PermissionDenied, status.Code(err), "%v", err)
}

func secretOutput() *translate.Output {
	return &translate.Output{Gateways: []*translate.GatewayResources{{
		Key: "a",
		Secrets: []*tlsv3.Secret{{
			Name: "credential/default/openai",
			Type: &tlsv3.Secret_GenericSecret{GenericSecret: &tlsv3.GenericSecret{
				Secret: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "sk-test"}},
			}},
		}},
	}}}
}

func TestSecretsNeedTLSOrExplicitConsent(t *testing.T) {
	plain := xds.NewServer(t.Context(), xds.Options{})
	err := plain.Publish(secretOutput())
	require.ErrorContains(t, err, "refusing to serve secrets over plaintext xDS")
	require.ErrorContains(t, err, `gateway a: 1 secret(s) ["credential/default/openai"]`)
	require.ErrorContains(t, err, "--allow-plaintext-secrets")
	require.Nil(t, plain.Versions("a"), "nothing was published")

	// Trust material is public: a validation context alone is served.
	validation := &translate.Output{Gateways: []*translate.GatewayResources{{Key: "a", Secrets: []*tlsv3.Secret{{
		Name: "tls-validation/default/openai",
		Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			TrustedCa: &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: "/etc/ssl/certs/ca-certificates.crt"}},
		}},
	}}}}}
	require.NoError(t, plain.Publish(validation))
	withKey := secretOutput()
	withKey.Gateways[0].Secrets = append(withKey.Gateways[0].Secrets, validation.Gateways[0].Secrets...)
	require.ErrorContains(t, plain.Publish(withKey), `gateway a: 1 secret(s) ["credential/default/openai"]`)

	inline := &translate.Output{Gateways: []*translate.GatewayResources{{Key: "b", InlineSecrets: true}}}
	require.ErrorContains(t, plain.Publish(inline), "gateway b: credentials inline in its clusters (static AWS keys)")

	allowed := xds.NewServer(t.Context(), xds.Options{AllowPlaintextSecrets: true})
	require.NoError(t, allowed.Publish(secretOutput()))

	// Over mTLS the secret reaches the Envoys of its gateway.
	m := startMTLS(t, []xds.IdentityBinding{{Identity: egressID, Gateways: []string{"a"}}})
	require.NoError(t, m.srv.Publish(secretOutput()))
	c := m.connect(t, m.ca.Client(t, []string{egressID}, nil), "vm-1", "a", true)
	c.Subscribe(resourcev3.SecretType, "credential/default/openai")
	st, err := c.WaitFor(waitCtx(t), func(s envoysim.State) bool { return len(s.Names(resourcev3.SecretType)) == 1 })
	require.NoError(t, err)
	sec, _ := envoysim.Get[*tlsv3.Secret](st, "credential/default/openai")
	require.Equal(t, "sk-test", sec.GetGenericSecret().GetSecret().GetInlineString())
}

func TestCheckPlaintextAddr(t *testing.T) {
	for addr, ok := range map[string]bool{
		"127.0.0.1:18000":      true,
		"127.0.0.2:0":          true,
		"[::1]:18000":          true,
		"localhost:18000":      true,
		"0.0.0.0:18000":        false,
		":18000":               false,
		"[::]:18000":           false,
		"10.0.0.1:18000":       false,
		"tollgate.corp:18000":  false,
		"127.0.0.1":            false,
		"not an address:18000": false,
	} {
		err := xds.CheckPlaintextAddr(addr)
		if ok {
			require.NoError(t, err, addr)
		} else {
			require.Error(t, err, addr)
		}
	}
	err := xds.CheckPlaintextAddr("0.0.0.0:18000")
	require.ErrorContains(t, err, "--xds-tls-cert, --xds-tls-key and --xds-client-ca")
}

func TestNewAuthorizer(t *testing.T) {
	a, err := xds.NewAuthorizer([]xds.IdentityBinding{
		{Identity: egressID, Gateways: []string{"egress", "default/egress", "team-b/egress"}},
		{Identity: "VM-1.corp.example", Gateways: []string{"b"}},
	})
	require.NoError(t, err)
	require.Equal(t, []string{"egress", "team-b/egress"}, a.Gateways(egressID), "default/egress is egress, as in node.cluster")
	require.Equal(t, []string{"b"}, a.Gateways("vm-1.CORP.example"))
	require.Nil(t, a.Gateways("spiffe://corp.example/gateway/EGRESS"), "URIs are compared exactly")

	for _, tc := range []struct {
		bindings []xds.IdentityBinding
		want     string
	}{
		{[]xds.IdentityBinding{{Gateways: []string{"a"}}}, "xds-identities[0].identity: must be set"},
		{[]xds.IdentityBinding{{Identity: egressID}}, "xds-identities[0].gateways: must list the gateways"},
		{[]xds.IdentityBinding{{Identity: egressID, Gateways: []string{"*"}}}, `xds-identities[0].gateways[0]: "*": wildcards are not allowed`},
		{[]xds.IdentityBinding{{Identity: egressID, Gateways: []string{"team/*"}}}, "wildcards are not allowed"},
		{[]xds.IdentityBinding{{Identity: "spiffe://corp.example/*", Gateways: []string{"a"}}}, "at least one path segment before /*"},
		{[]xds.IdentityBinding{{Identity: "spiffe://corp.example/gateway/eg*", Gateways: []string{"a"}}}, `"*" is allowed only as the last path segment`},
		{[]xds.IdentityBinding{{Identity: "spiffe://corp.example/*/egress", Gateways: []string{"a"}}}, `"*" is allowed only as the last path segment`},
		{[]xds.IdentityBinding{{Identity: "spiffe://*.example/gateway/*", Gateways: []string{"a"}}}, `"*" is allowed only as the last path segment`},
		{[]xds.IdentityBinding{{Identity: "*.corp.example", Gateways: []string{"a"}}}, `"*" is allowed only as the last path segment`},
		{[]xds.IdentityBinding{{Identity: "spiffe://Corp/gateway/*", Gateways: []string{"a"}}}, "a pattern must be a SPIFFE ID followed by /*"},
		{[]xds.IdentityBinding{{Identity: "spiffe://corp/gw/*", Gateways: []string{"a"}}, {Identity: "spiffe://corp/gw/*", Gateways: []string{"b"}}}, "is listed twice"},
		{[]xds.IdentityBinding{{Identity: egressID, Gateways: []string{"Egress"}}}, `"Egress": want a gateway name`},
		{[]xds.IdentityBinding{{Identity: egressID, Gateways: []string{"a/b/c"}}}, `"a/b/c": want a gateway name`},
		{[]xds.IdentityBinding{{Identity: egressID, Gateways: []string{"a"}}, {Identity: egressID, Gateways: []string{"b"}}}, "xds-identities[1].identity: \"" + egressID + "\" is listed twice"},
	} {
		_, err := xds.NewAuthorizer(tc.bindings)
		require.ErrorContains(t, err, tc.want)
	}
}

func TestIdentities(t *testing.T) {
	ca := xdstest.NewCA(t, "ca")
	require.Equal(t, []string{egressID}, xds.Identities(ca.Client(t, []string{egressID}, []string{"vm-1.corp.example"}).Cert))
	require.Equal(t, []string{"vm-1.corp.example", "vm-1"}, xds.Identities(ca.Client(t, nil, []string{"VM-1.corp.example", "vm-1"}).Cert))
	require.Empty(t, xds.Identities(ca.Issue(t, xdstest.LeafOptions{CommonName: "vm-1.corp.example", Client: true}).Cert), "the common name is not an identity")
}

func TestAuthorizerPatterns(t *testing.T) {
	a, err := xds.NewAuthorizer([]xds.IdentityBinding{
		{Identity: "spiffe://corp.example/gateway/egress/*", Gateways: []string{"egress"}},
		{Identity: "spiffe://corp.example/gateway/*", Gateways: []string{"shared"}},
		{Identity: "spiffe://corp.example/gateway/egress/vm-7", Gateways: []string{"canary"}},
		{Identity: "spiffe://other.example/gateway/*", Gateways: []string{"other"}},
		{Identity: "vm-1.corp.example", Gateways: []string{"b"}},
	})
	require.NoError(t, err)
	for id, want := range map[string][]string{
		"spiffe://corp.example/gateway/egress/vm-1":      {"egress"},
		"spiffe://corp.example/gateway/egress/a/b":       {"egress"}, // deeper segments match too
		"spiffe://corp.example/gateway/egress/vm-7":      {"canary"}, // exact wins over a pattern
		"spiffe://corp.example/gateway/egress":           {"shared"}, // "/*" needs a segment below egress
		"spiffe://corp.example/gateway/egressive/vm-1":   {"shared"}, // segments, not string prefixes
		"spiffe://corp.example/gateway/x":                {"shared"}, // the longest matching pattern wins
		"spiffe://corp.example/gateway/":                 nil,        // an empty segment
		"spiffe://corp.example/workload/ns/a/sa/b":       nil,        // no pattern
		"spiffe://corp.example.evil/gateway/egress/vm-1": nil,        // another trust domain
		"spiffe://other.example/gateway/egress/vm-1":     {"other"},  // patterns per trust domain
		"spiffe://corp.example/gateway/egress/*":         nil,        // a certificate's "*" is no pattern
		"vm-1.corp.example":                              {"b"},
	} {
		require.Equal(t, want, a.Gateways(id), id)
	}
	var tds []string
	for _, td := range a.TrustDomains() {
		tds = append(tds, td.Name())
	}
	require.Equal(t, []string{"corp.example", "other.example"}, tds)
}
