package main

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"math/big"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/bootstrap/internal_listener/v3" // in the bootstrap's Any
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3" // in the bootstrap's Any
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"

	bootstrap "github.com/tollgate-dev/tollgate/envoy-bootstrap"
	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/store"
	"github.com/tollgate-dev/tollgate/xds"
	"github.com/tollgate-dev/tollgate/xds/envoysim"
	"github.com/tollgate-dev/tollgate/xds/spiretest"
	"github.com/tollgate-dev/tollgate/xds/xdstest"
)

// SPIFFE IDs of the SPIRE tests; every process of a test runs as one uid,
// so each gets all of them from the Workload API and picks its own by ID.
const (
	spireTD        = "tollgate.test"
	tollgateID     = "spiffe://tollgate.test/tollgate"
	gatewayID      = "spiffe://tollgate.test/gateway/egress/vm-1"
	workloadAID    = "spiffe://tollgate.test/ns/team-a/sa/chat"
	workloadBID    = "spiffe://tollgate.test/ns/team-a/sa/search"
	missingPattern = "spiffe://tollgate.test/gateway/typo/*"
)

// policyConditions returns the conditions on /status/policies.
func policyConditions(t *testing.T, inst *instance) []model.Condition {
	t.Helper()
	var ps store.PolicyStatus
	getJSON(t, inst, "/status/policies", &ps)
	return ps.Conditions
}

func findCondition(cs []model.Condition, object, typ string) *model.Condition {
	i := slices.IndexFunc(cs, func(c model.Condition) bool { return c.Object == object && c.Type == typ })
	if i < 0 {
		return nil
	}
	return &cs[i]
}

// Identity patterns through the real serve wiring, with file-based mTLS:
// a pattern grants its gateway, an exact entry beats it, and a pattern
// that grants no current gateway is a condition.
func TestServeIdentityPatterns(t *testing.T) {
	p := newPKI(t)
	dir := t.TempDir()
	writePolicies(t, dir, map[string]string{"gateways.yaml": policyGateways, "backends.yaml": policyBackends, "routes.yaml": policyRoutes("60s")})
	cfg := p.mtlsConfig(dir)
	cfg.XDSIdentities = []xds.IdentityBinding{
		{Identity: "spiffe://corp.example/gateway/egress/*", Gateways: []string{"egress"}},
		{Identity: "spiffe://corp.example/gateway/egress/vm-7", Gateways: []string{"other"}},
		{Identity: "spiffe://corp.example/gateway/typo/*", Gateways: []string{"egres"}},
	}
	inst, _ := startWith(t, cfg)

	vm5 := connectTLS(t, inst, xdstest.ClientTLS(p.ca, p.ca.Client(t, []string{"spiffe://corp.example/gateway/egress/vm-5"}, nil)), "vm-5", "egress", false)
	_, err := vm5.WaitFor(waitCtx(t), complete("backend/default/openai", "backend/default/vllm"))
	require.NoError(t, err)

	vm7 := connectTLS(t, inst, xdstest.ClientTLS(p.ca, p.ca.Client(t, []string{"spiffe://corp.example/gateway/egress/vm-7"}, nil)), "vm-7", "egress", false)
	err = streamEnd(t, vm7)
	require.Equal(t, codes.PermissionDenied, status.Code(err), "the exact entry wins over the pattern: %v", err)
	require.Contains(t, status.Convert(err).Message(), `may serve only ["other"]`)

	cs := policyConditions(t, inst)
	c := findCondition(cs, "xds-identities/spiffe://corp.example/gateway/typo/*", xds.ConditionIdentityBound)
	require.NotNil(t, c, "%+v", cs)
	require.False(t, c.Status)
	require.Equal(t, xds.ReasonNoSuchGateway, c.Reason)
	require.Contains(t, c.Message, `may serve ["egres"], but no such gateway is in the current configuration`)
	require.Nil(t, findCondition(cs, "xds-identities/spiffe://corp.example/gateway/egress/*", xds.ConditionIdentityBound))
}

func TestServeSPIFFEConfigErrors(t *testing.T) {
	dir := t.TempDir()
	ids := []xds.IdentityBinding{{Identity: gatewayID, Gateways: []string{"egress"}}}
	for _, tc := range []struct {
		mod  func(*serveConfig)
		want string
	}{
		{func(c *serveConfig) { c.SPIFFESocket, c.XDSTLSCert = "/run/agent.sock", "/c" }, "--spiffe-socket and --xds-tls-cert/--xds-tls-key/--xds-client-ca are mutually exclusive"},
		{func(c *serveConfig) { c.SPIFFEID = tollgateID }, "--spiffe-id needs --spiffe-socket"},
		{func(c *serveConfig) { c.SPIFFESocket, c.XDSIdentities = "/run/agent.sock", nil }, "xds-identities is empty"},
		{func(c *serveConfig) {
			c.SPIFFESocket, c.XDSIdentities = "/run/agent.sock", []xds.IdentityBinding{{Identity: "spiffe://td/a*", Gateways: []string{"egress"}}}
		}, `"*" is allowed only as the last path segment`},
	} {
		cfg := baseConfig(dir)
		cfg.XDSIdentities = ids
		tc.mod(&cfg)
		_, _, err := cfg.xdsOptions(context.Background(), nil)
		require.ErrorContains(t, err, tc.want)
	}
}

// spireForServe runs SPIRE with entries for tollgate (short-lived, to
// rotate within the test), the egress gateway's Envoy and two workloads.
func spireForServe(t *testing.T, tollgateTTL time.Duration) (*spiretest.SPIRE, map[string]*x509svid.SVID, *x509bundle.Set) {
	t.Helper()
	s := spiretest.Start(t, spiretest.Options{TrustDomain: spireTD})
	s.CreateEntry(spiretest.Entry{SPIFFEID: tollgateID, X509SVIDTTL: tollgateTTL})
	for _, id := range []string{gatewayID, workloadAID, workloadBID} {
		s.CreateEntry(spiretest.Entry{SPIFFEID: id})
	}
	svids, bundles := s.WaitForSVIDs(tollgateID, gatewayID, workloadAID, workloadBID)
	return s, svids, bundles
}

// serialRecorder is an Envoy-like client's TLS with an SVID, accepting
// only tollgate's SPIFFE ID and recording the serial of each server
// certificate it sees.
type serialRecorder struct {
	mu      sync.Mutex
	serials []*big.Int
}

func (r *serialRecorder) tls(svid *x509svid.SVID, bundles x509bundle.Source) *tls.Config {
	c := tlsconfig.MTLSClientConfig(svid, bundles, tlsconfig.AuthorizeID(spiffeid.RequireFromString(tollgateID)))
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.serials = append(r.serials, cs.PeerCertificates[0].SerialNumber)
		return nil
	}
	return c
}

func (r *serialRecorder) last() *big.Int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.serials[len(r.serials)-1]
}

// The real thing: tollgate takes its SVID from a SPIRE agent and serves
// xDS over mTLS; the gateway Envoy's SVID (matched by a pattern) gets its
// gateway, a workload's SVID is refused, and tollgate's SVID rotates
// under a connected stream, which keeps being served.
func TestServeSPIFFE(t *testing.T) {
	// 30s: SPIRE rotates at about half-life, and the agent syncs every 5s.
	spire, svids, bundles := spireForServe(t, 30*time.Second)
	dir := t.TempDir()
	writePolicies(t, dir, map[string]string{"gateways.yaml": policyGateways, "backends.yaml": policyBackends, "routes.yaml": policyRoutes("60s")})
	cfg := baseConfig(dir)
	cfg.SPIFFESocket, cfg.SPIFFEID = spire.AgentSocket, tollgateID
	cfg.XDSIdentities = []xds.IdentityBinding{
		{Identity: "spiffe://tollgate.test/gateway/egress/*", Gateways: []string{"egress"}},
		{Identity: missingPattern, Gateways: []string{"typo"}},
	}
	inst, logs := startWith(t, cfg)
	require.Contains(t, logs.String(), "xDS TLS identity from the SPIFFE Workload API")

	rec := &serialRecorder{}
	egress := connectTLS(t, inst, rec.tls(svids[gatewayID], bundles), "vm-1", "egress", false)
	_, err := egress.WaitFor(waitCtx(t), complete("backend/default/openai", "backend/default/vllm"))
	require.NoError(t, err)
	first := rec.last()
	require.Equal(t, 0, first.Cmp(svids[tollgateID].Certificates[0].SerialNumber), "tollgate presents its own SVID")
	require.Equal(t, gatewayID, statusNodes(t, inst).Nodes[0].Identity)

	// A workload's SVID, from the same agent and trust domain, is refused.
	wl := connectTLS(t, inst, (&serialRecorder{}).tls(svids[workloadAID], bundles), "vm-x", "egress", false)
	err = streamEnd(t, wl)
	require.Equal(t, codes.PermissionDenied, status.Code(err), "%v", err)
	require.Contains(t, status.Convert(err).Message(), `certificate identity "`+workloadAID+`"`)
	require.Empty(t, wl.History())

	// Status: tollgate's SVID is ready; the typo pattern grants nothing.
	cs := policyConditions(t, inst)
	svidCond := findCondition(cs, xds.SVIDObject, xds.ConditionSVIDReady)
	require.NotNil(t, svidCond, "%+v", cs)
	require.True(t, svidCond.Status, "%+v", svidCond)
	require.Contains(t, svidCond.Message, tollgateID)
	require.NotNil(t, findCondition(cs, "xds-identities/"+missingPattern, xds.ConditionIdentityBound))

	// Rotation: wait until the agent has issued tollgate a new SVID.
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	for {
		now, _ := spire.WaitForSVIDs(tollgateID)
		if now[tollgateID].Certificates[0].SerialNumber.Cmp(first) != 0 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("tollgate's SVID was not rotated within 90s")
		case <-time.After(500 * time.Millisecond): // poll interval
		}
	}
	// A new handshake sees the new SVID (tollgate may need a moment to
	// receive the push: poll with new connections).
	require.Eventually(t, func() bool {
		c, err := dialTLS(t, inst, rec.tls(svids[gatewayID], bundles), "vm-2", "egress", false)
		if err != nil {
			return false
		}
		_, err = c.WaitFor(waitCtx(t), complete("backend/default/openai", "backend/default/vllm"))
		c.Close()
		return err == nil && rec.last().Cmp(first) != 0
	}, 30*time.Second, 200*time.Millisecond)
	require.Eventually(t, func() bool {
		return strings.Contains(logs.String(), "xDS SVID rotated; new connections use it")
	}, 10*time.Second, 10*time.Millisecond)

	// The first stream survived the rotation and still gets updates.
	require.NoError(t, egress.Err())
	before := lastVersion(egress, resourcev3.RouteType)
	writePolicies(t, dir, map[string]string{"routes.yaml": policyRoutes("30s")})
	_, err = egress.WaitForResponse(waitCtx(t), func(r envoysim.Response) bool {
		return r.TypeURL == resourcev3.RouteType && r.Version != before && r.Acked
	})
	require.NoError(t, err)
	require.NoError(t, egress.Err())
}

// The SDS names the rendered bootstrap asks the SPIRE agent for are the
// names the agent answers to: the Envoy's SVID by its SPIFFE ID, the
// trust bundle by its trust domain's ID.
func TestSPIREAnswersBootstrapSDSNames(t *testing.T) {
	spire, svids, _ := spireForServe(t, 0)
	data, err := bootstrap.Render(bootstrap.Options{Gateway: "egress", NodeID: "vm-1", XDSAddr: "127.0.0.1:18000",
		SPIFFESocket: spire.AgentSocket, SPIFFEID: gatewayID, XDSSPIFFEID: tollgateID})
	require.NoError(t, err)
	js, err := yaml.YAMLToJSON(data)
	require.NoError(t, err)
	b := &bootstrapv3.Bootstrap{}
	require.NoError(t, protojson.Unmarshal(js, b))

	// The names and the socket, as Envoy would read them.
	var agentPath, certName, bundleName string
	for _, c := range b.GetStaticResources().GetClusters() {
		switch c.GetName() {
		case bootstrap.SpireAgentCluster:
			agentPath = c.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetPipe().GetPath()
		case "xds_cluster":
			up := &tlsv3.UpstreamTlsContext{}
			require.NoError(t, c.GetTransportSocket().GetTypedConfig().UnmarshalTo(up))
			certName = up.GetCommonTlsContext().GetTlsCertificateSdsSecretConfigs()[0].GetName()
			bundleName = up.GetCommonTlsContext().GetCombinedValidationContext().GetValidationContextSdsSecretConfig().GetName()
		}
	}
	require.Equal(t, spire.AgentSocket, agentPath)

	conn, err := grpc.NewClient("unix://"+agentPath, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	// Envoy subscribes to each secret on its own, and the agent refuses a
	// whole request if one name is unknown: one request per name.
	sds := secretv3.NewSecretDiscoveryServiceClient(conn)
	fetch := func(name string) *tlsv3.Secret {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		resp, err := sds.FetchSecrets(ctx, &discoveryv3.DiscoveryRequest{
			Node:          &corev3.Node{Id: "vm-1", Cluster: "egress"},
			ResourceNames: []string{name},
			TypeUrl:       resourcev3.SecretType,
		})
		require.NoError(t, err, "SDS name %q", name)
		require.Len(t, resp.GetResources(), 1, "SDS name %q", name)
		sec := &tlsv3.Secret{}
		require.NoError(t, resp.GetResources()[0].UnmarshalTo(sec))
		require.Equal(t, name, sec.GetName())
		return sec
	}
	require.Equal(t, gatewayID, certName)
	cert := fetch(certName).GetTlsCertificate()
	require.NotNil(t, cert, "the SVID is served under the Envoy's SPIFFE ID")
	require.Contains(t, string(cert.GetCertificateChain().GetInlineBytes()), "BEGIN CERTIFICATE")
	require.NotEmpty(t, cert.GetPrivateKey().GetInlineBytes())
	leaf := svids[gatewayID].Certificates[0]
	require.Contains(t, string(cert.GetCertificateChain().GetInlineBytes()), string(pemCert(leaf.Raw)), "the same SVID as over the Workload API")

	require.Equal(t, "spiffe://"+spireTD, bundleName)
	vc := fetch(bundleName).GetValidationContext()
	require.NotNil(t, vc, "the bundle is served under the trust domain's ID")
	// For Envoy 1.18 and later the agent answers with Envoy's SPIFFE
	// certificate validator, one bundle per trust domain.
	require.Equal(t, "envoy.tls.cert_validator.spiffe", vc.GetCustomValidatorConfig().GetName())
	spv := &tlsv3.SPIFFECertValidatorConfig{}
	require.NoError(t, vc.GetCustomValidatorConfig().GetTypedConfig().UnmarshalTo(spv))
	require.Len(t, spv.GetTrustDomains(), 1)
	require.Equal(t, spireTD, spv.GetTrustDomains()[0].GetName())
	require.Contains(t, string(spv.GetTrustDomains()[0].GetTrustBundle().GetInlineBytes()), "BEGIN CERTIFICATE")

	// The agent's default names, which listener SDS uses: the first SVID,
	// the own trust domain's bundle, all bundles.
	require.NotNil(t, fetch("default").GetTlsCertificate())
	require.NotNil(t, fetch("ROOTCA").GetValidationContext())
	require.NotNil(t, fetch("ALL").GetValidationContext())

	// A name the workload has no entry for is refused.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = sds.FetchSecrets(ctx, &discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: "vm-1"},
		ResourceNames: []string{"spiffe://tollgate.test/gateway/other"}, TypeUrl: resourcev3.SecretType})
	require.Equal(t, codes.InvalidArgument, status.Code(err), "%v", err)
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// lastVersion is the version of the last response of typeURL c received.
func lastVersion(c *envoysim.Client, typeURL string) string {
	h := c.History()
	for i := len(h) - 1; i >= 0; i-- {
		if h[i].TypeURL == typeURL {
			return h[i].Version
		}
	}
	return ""
}
