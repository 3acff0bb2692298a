package main

import (
	"crypto/tls"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/stretchr/testify/require"

	"github.com/tollgate-dev/tollgate/store"
	"github.com/tollgate-dev/tollgate/xds"
	"github.com/tollgate-dev/tollgate/xds/xdstest"
)

// adminWrite PUTs an HTTPRoute of namespace ns through an HTTPS admin API
// with the client TLS configuration tc, and returns the status and body.
func adminWrite(t *testing.T, inst *instance, tc *tls.Config, ns string) (int, string) {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: tc}}
	defer client.CloseIdleConnections()
	body := "apiVersion: tollgate.dev/v1alpha1\nkind: HTTPRoute\nmetadata: {name: chat, namespace: " + ns + "}\n" +
		"spec:\n  parentRefs: [{name: egress, namespace: default}]\n  hostnames: [" + ns + ".llm.internal]\n  rules: [{backendRefs: [{name: openai, namespace: default}]}]\n"
	req, err := http.NewRequest("PUT", "https://"+inst.AdminAddr.String()+"/apis/tollgate.dev/v1alpha1/namespaces/"+ns+"/httproutes/chat", strings.NewReader(body))
	require.NoError(t, err)
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out)
}

// TestServeAdminAPIClientCertificates serves the admin API over HTTPS from
// files: a client certificate whose SPIFFE ID api-identities grants writes
// its namespace only; one of another CA, or without a grant, is refused;
// reads need no certificate.
func TestServeAdminAPIClientCertificates(t *testing.T) {
	ca, other := xdstest.NewCA(t, "admin-ca"), xdstest.NewCA(t, "other-ca")
	dir := t.TempDir()
	files := xdstest.WriteServerFiles(t, t.TempDir(), ca.Server(t, "tollgate"), ca)
	writePolicies(t, dir, map[string]string{"gateways.yaml": policyGateways, "backends.yaml": policyBackends})
	inst, _ := startTollgateWith(t, dir, func(c *serveConfig) {
		c.StateDir = t.TempDir()
		c.AdminTLSCert, c.AdminTLSKey, c.AdminClientCA = files.Cert, files.Key, files.ClientCA
		c.APIIdentities = []store.IdentityGrant{{Identity: "spiffe://corp.example/ci/*", Namespaces: []string{"team-a"}}}
	})
	ci := ca.Client(t, []string{"spiffe://corp.example/ci/deployer"}, nil)
	code, out := adminWrite(t, inst, xdstest.ClientTLS(ca, ci), "team-a")
	require.Equal(t, http.StatusCreated, code, out)
	code, out = adminWrite(t, inst, xdstest.ClientTLS(ca, ci), "team-b")
	require.Equal(t, http.StatusForbidden, code, out)
	require.Contains(t, out, `spiffe://corp.example/ci/deployer may not write namespace \"team-b\"`)
	code, out = adminWrite(t, inst, xdstest.ClientTLS(ca, ca.Client(t, []string{"spiffe://corp.example/web"}, nil)), "team-a")
	require.Equal(t, http.StatusUnauthorized, code, out)
	require.Contains(t, out, "not in api-identities")
	code, out = adminWrite(t, inst, xdstest.ClientTLS(ca, nil), "team-a")
	require.Equal(t, http.StatusUnauthorized, code, out)
	// A certificate of a CA the admin server does not trust fails the
	// handshake.
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: xdstest.ClientTLS(ca, other.Client(t, []string{"spiffe://corp.example/ci/deployer"}, nil))}}
	_, err := client.Get("https://" + inst.AdminAddr.String() + "/healthz")
	require.Error(t, err)
	// Reads need no certificate.
	resp, err := (&http.Client{Transport: &http.Transport{TLSClientConfig: xdstest.ClientTLS(ca, nil)}}).Get("https://" + inst.AdminAddr.String() + "/apis/tollgate.dev/v1alpha1/httproutes")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
}

// TestServeAdminAPIOverSPIFFE serves the admin API with tollgate's SVID
// from a real SPIRE agent (--admin-spiffe): a workload SVID that
// api-identities grants writes, another workload's SVID is refused.
func TestServeAdminAPIOverSPIFFE(t *testing.T) {
	spire, svids, bundles := spireForServe(t, 0)
	dir := t.TempDir()
	writePolicies(t, dir, map[string]string{"gateways.yaml": policyGateways, "backends.yaml": policyBackends})
	cfg := baseConfig(dir)
	cfg.SPIFFESocket, cfg.SPIFFEID, cfg.AdminSPIFFE, cfg.StateDir = spire.AgentSocket, tollgateID, true, t.TempDir()
	cfg.XDSIdentities = []xds.IdentityBinding{{Identity: "spiffe://tollgate.test/gateway/egress/*", Gateways: []string{"egress"}}}
	cfg.APIIdentities = []store.IdentityGrant{{Identity: workloadAID, Namespaces: []string{"team-a"}}}
	inst, _ := startWith(t, cfg)
	clientTLS := func(svid *x509svid.SVID) *tls.Config {
		return tlsconfig.MTLSClientConfig(svid, bundles, tlsconfig.AuthorizeID(spiffeid.RequireFromString(tollgateID)))
	}
	code, out := adminWrite(t, inst, clientTLS(svids[workloadAID]), "team-a")
	require.Equal(t, http.StatusCreated, code, out)
	code, out = adminWrite(t, inst, clientTLS(svids[workloadBID]), "team-a")
	require.Equal(t, http.StatusUnauthorized, code, out)
	require.Contains(t, out, workloadBID)
}
