package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/spf13/viper"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/tollgate-dev/tollgate/xds"
	"github.com/tollgate-dev/tollgate/xds/envoysim"
	"github.com/tollgate-dev/tollgate/xds/xdstest"
)

const (
	egressSPIFFE = "spiffe://corp.example/gateway/egress"
	otherDNS     = "vm-9.corp.example"
)

// pki is a CA with tollgate's server certificate files written to a
// directory.
type pki struct {
	ca    *xdstest.CA
	dir   string
	files xdstest.Files
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	ca := xdstest.NewCA(t, "tollgate test CA")
	dir := t.TempDir()
	return &pki{ca: ca, dir: dir, files: xdstest.WriteServerFiles(t, dir, ca.Server(t, "tollgate-1"), ca)}
}

// baseConfig is serve's configuration for tests: loopback ports chosen by
// the kernel, quick reloads.
func baseConfig(dir string) serveConfig {
	return serveConfig{
		Policies: dir, XDSAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
		SystemCABundle: "/etc/ssl/certs/ca-certificates.crt",
		Debounce:       10 * time.Millisecond, LogLevel: "info", LogFormat: "text",
	}
}

// mtlsConfig serves dir over mutual TLS with p's files: the SPIFFE ID
// egressSPIFFE may serve egress, the DNS name otherDNS may serve other.
func (p *pki) mtlsConfig(dir string) serveConfig {
	cfg := baseConfig(dir)
	cfg.XDSTLSCert, cfg.XDSTLSKey, cfg.XDSClientCA = p.files.Cert, p.files.Key, p.files.ClientCA
	cfg.XDSIdentities = []xds.IdentityBinding{
		{Identity: egressSPIFFE, Gateways: []string{"egress"}},
		{Identity: otherDNS, Gateways: []string{"other"}},
	}
	return cfg
}

// startWith runs the real serve wiring with cfg until the test ends.
func startWith(t *testing.T, cfg serveConfig) (*instance, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("tollgate logs:\n%s", logs.String())
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	inst, err := start(ctx, cfg, logs)
	if err != nil {
		cancel()
	}
	require.NoError(t, err)
	t.Cleanup(func() {
		cancel()
		require.NoError(t, inst.wait())
	})
	return inst, logs
}

// dialTLS opens an Envoy-like ADS stream over TLS with tlsCfg.
func dialTLS(t *testing.T, inst *instance, tlsCfg *tls.Config, node, gateway string, delta bool) (*envoysim.Client, error) {
	t.Helper()
	c, err := envoysim.New(context.Background(), inst.XDSAddr.String(), envoysim.Options{
		NodeID: node, Gateway: gateway, Delta: delta,
		DialOptions: []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg))},
		Logf:        t.Logf,
	})
	if err == nil {
		t.Cleanup(c.Close)
	}
	return c, err
}

func connectTLS(t *testing.T, inst *instance, tlsCfg *tls.Config, node, gateway string, delta bool) *envoysim.Client {
	t.Helper()
	c, err := dialTLS(t, inst, tlsCfg, node, gateway, delta)
	require.NoError(t, err)
	return c
}

// streamEnd waits for the end of c's stream and returns why it ended.
func streamEnd(t *testing.T, c *envoysim.Client) error {
	t.Helper()
	select {
	case <-c.Done():
		return c.Err()
	case <-waitCtx(t).Done():
		t.Fatal("the stream did not end")
		return nil
	}
}

func statusNodes(t *testing.T, inst *instance) xds.Status {
	t.Helper()
	resp, err := http.Get("http://" + inst.AdminAddr.String() + "/status/nodes")
	require.NoError(t, err)
	defer resp.Body.Close()
	var st xds.Status
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&st))
	return st
}

func TestServeMTLS(t *testing.T) {
	for _, delta := range []bool{false, true} {
		t.Run(map[bool]string{false: "sotw", true: "delta"}[delta], func(t *testing.T) {
			p := newPKI(t)
			dir := t.TempDir()
			writePolicies(t, dir, map[string]string{"gateways.yaml": policyGateways, "backends.yaml": policyBackends, "routes.yaml": policyRoutes("60s")})
			inst, logs := startWith(t, p.mtlsConfig(dir))

			// The SPIFFE identity bound to egress gets egress.
			egress := connectTLS(t, inst, xdstest.ClientTLS(p.ca, p.ca.Client(t, []string{egressSPIFFE}, nil)), "vm-1", "egress", delta)
			_, err := egress.WaitFor(waitCtx(t), complete("backend/default/openai", "backend/default/vllm"))
			require.NoError(t, err)

			// A certificate with DNS SANs only is identified by them.
			other := connectTLS(t, inst, xdstest.ClientTLS(p.ca, p.ca.Client(t, nil, []string{otherDNS})), "vm-9", "other", delta)
			_, err = other.WaitFor(waitCtx(t), complete("backend/default/anthropic"))
			require.NoError(t, err)

			st := statusNodes(t, inst)
			require.Len(t, st.Nodes, 2)
			require.Equal(t, "vm-1", st.Nodes[0].NodeID)
			require.Equal(t, egressSPIFFE, st.Nodes[0].Identity)
			require.Equal(t, "vm-9", st.Nodes[1].NodeID)
			require.Equal(t, otherDNS, st.Nodes[1].Identity)

			// egress's identity asking for other is refused, and told why
			// and how to fix it.
			wrong := connectTLS(t, inst, xdstest.ClientTLS(p.ca, p.ca.Client(t, []string{egressSPIFFE}, nil)), "vm-2", "other", delta)
			err = streamEnd(t, wrong)
			require.Equal(t, codes.PermissionDenied, status.Code(err), "%v", err)
			msg := status.Convert(err).Message()
			require.Contains(t, msg, `certificate identity "`+egressSPIFFE+`" (node "vm-2") asked for gateway "other", but may serve only ["egress"]`)
			require.Contains(t, msg, "fix node.cluster in this Envoy's bootstrap (tollgate bootstrap --gateway)")
			require.Contains(t, msg, `or add "other" to the gateways of "`+egressSPIFFE+`" in xds-identities in tollgate's config`)
			require.Empty(t, wrong.History(), "a refused Envoy gets nothing")
			require.Eventually(t, func() bool { return strings.Contains(logs.String(), "xDS stream refused") }, 10*time.Second, 10*time.Millisecond)
			require.Equal(t, 1, strings.Count(logs.String(), "xDS stream refused"), "logged once")
			require.Contains(t, logs.String(), `node=vm-2 gateway=other identity=`+egressSPIFFE)

			// An identity without a binding.
			rogue := connectTLS(t, inst, xdstest.ClientTLS(p.ca, p.ca.Client(t, []string{"spiffe://corp.example/gateway/rogue"}, nil)), "vm-3", "egress", delta)
			err = streamEnd(t, rogue)
			require.Equal(t, codes.PermissionDenied, status.Code(err), "%v", err)
			require.Contains(t, status.Convert(err).Message(), `add {identity: "spiffe://corp.example/gateway/rogue", gateways: ["egress"]} to xds-identities`)

			// The authorized streams are unaffected.
			require.NoError(t, egress.Err())
			require.NoError(t, other.Err())
			require.Len(t, statusNodes(t, inst).Nodes, 2)
		})
	}
}

// refusedHandshake checks that a client with tlsCfg gets no stream and that
// tollgate logs why its handshake was refused.
func refusedHandshake(t *testing.T, inst *instance, logs *syncBuffer, tlsCfg *tls.Config, want string) {
	t.Helper()
	c, err := dialTLS(t, inst, tlsCfg, "vm-x", "egress", false)
	if err == nil {
		// With TLS 1.3 the client finishes its side of the handshake
		// before the server rejects its certificate.
		err = streamEnd(t, c)
		require.Empty(t, c.History())
	}
	require.Equal(t, codes.Unavailable, status.Code(err), "%v", err)
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), want) }, 10*time.Second, 10*time.Millisecond, want)
}

func TestServeMTLSHandshakeRefusals(t *testing.T) {
	p := newPKI(t)
	dir := t.TempDir()
	writePolicies(t, dir, map[string]string{"gateways.yaml": policyGateways, "backends.yaml": policyBackends, "routes.yaml": policyRoutes("60s")})
	inst, logs := startWith(t, p.mtlsConfig(dir))

	refusedHandshake(t, inst, logs, xdstest.ClientTLS(p.ca, nil), `xDS TLS handshake refused`)
	require.Contains(t, logs.String(), "client didn't provide a certificate")

	untrusted := xdstest.NewCA(t, "untrusted CA")
	refusedHandshake(t, inst, logs, xdstest.ClientTLS(p.ca, untrusted.Client(t, []string{egressSPIFFE}, nil)), "certificate signed by unknown authority")
	require.Empty(t, statusNodes(t, inst).Nodes)
	require.NotContains(t, logs.String(), "envoy connected")
}

func TestServeMTLSServerCertificateRotation(t *testing.T) {
	p := newPKI(t)
	dir := t.TempDir()
	writePolicies(t, dir, map[string]string{"gateways.yaml": policyGateways, "backends.yaml": policyBackends, "routes.yaml": policyRoutes("60s")})
	inst, logs := startWith(t, p.mtlsConfig(dir))
	client := p.ca.Client(t, []string{egressSPIFFE}, nil)

	// seen records the server certificate of each connection.
	var mu sync.Mutex
	var seen []string
	tlsCfg := func() *tls.Config {
		c := xdstest.ClientTLS(p.ca, client)
		c.VerifyConnection = func(cs tls.ConnectionState) error {
			mu.Lock()
			defer mu.Unlock()
			seen = append(seen, cs.PeerCertificates[0].Subject.CommonName)
			return nil
		}
		return c
	}
	first := connectTLS(t, inst, tlsCfg(), "vm-1", "egress", false)
	_, err := first.WaitFor(waitCtx(t), complete("backend/default/openai", "backend/default/vllm"))
	require.NoError(t, err)

	next := p.ca.Server(t, "tollgate-2")
	xdstest.WriteFile(t, p.dir, "server.crt", next.CertPEM)
	xdstest.WriteFile(t, p.dir, "server.key", next.KeyPEM)

	second := connectTLS(t, inst, tlsCfg(), "vm-2", "egress", false)
	_, err = second.WaitFor(waitCtx(t), complete("backend/default/openai", "backend/default/vllm"))
	require.NoError(t, err)
	mu.Lock()
	require.Equal(t, []string{"tollgate-1", "tollgate-2"}, seen)
	mu.Unlock()
	require.Contains(t, logs.String(), "xDS TLS files changed; new connections use them")
	require.NoError(t, first.Err(), "the existing connection is not disturbed")
}

const credentialPolicy = `apiVersion: tollgate.dev/v1alpha1
kind: CredentialInjector
metadata: {name: openai-key}
spec:
  targetRefs: [{kind: Backend, name: openai}]
  apiKey:
    secret: {file: openai.key}
`

func writeSecretPolicies(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	writePolicies(t, dir, map[string]string{"gateways.yaml": policyGateways, "backends.yaml": policyBackends, "routes.yaml": policyRoutes("60s"), "credentials.yaml": credentialPolicy})
	require.NoError(t, os.WriteFile(filepath.Join(dir, "openai.key"), []byte("sk-test-not-real\n"), 0o600))
	return dir
}

func TestServeSecretsOverPlaintext(t *testing.T) {
	dir := writeSecretPolicies(t)

	// Refused at start-up...
	var logs syncBuffer
	_, err := start(t.Context(), baseConfig(dir), &logs)
	require.ErrorIs(t, err, xds.ErrPlaintextSecrets)
	require.NotContains(t, err.Error(), "not valid", "the policies are fine; the xDS transport is not")
	require.ErrorContains(t, err, `gateway egress: 1 secret(s) ["credential/default/openai"]`)
	require.ErrorContains(t, err, "--allow-plaintext-secrets")

	// ...and as a change: the last good configuration stays.
	plain := t.TempDir()
	writePolicies(t, plain, map[string]string{"gateways.yaml": policyGateways, "backends.yaml": policyBackends, "routes.yaml": policyRoutes("60s")})
	inst, instLogs := startWith(t, baseConfig(plain))
	env, err := envoysim.New(context.Background(), inst.XDSAddr.String(), envoysim.Options{
		NodeID: "vm-1", Gateway: "egress",
		DialOptions: []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())},
	})
	require.NoError(t, err)
	t.Cleanup(env.Close)
	_, err = env.WaitFor(waitCtx(t), complete("backend/default/openai", "backend/default/vllm"))
	require.NoError(t, err)
	before, envBefore := inst.XDS.Versions("egress"), len(env.History())
	require.NoError(t, os.WriteFile(filepath.Join(plain, "openai.key"), []byte("sk-test-not-real\n"), 0o600))
	writePolicies(t, plain, map[string]string{"credentials.yaml": credentialPolicy})
	require.Eventually(t, func() bool {
		return strings.Contains(instLogs.String(), "refusing to serve secrets over plaintext xDS")
	}, 10*time.Second, 10*time.Millisecond)
	require.False(t, inst.Store.Status().Applied)
	require.Equal(t, before, inst.XDS.Versions("egress"))
	// Nor does it arrive late: without the credential, a marker change of
	// the route's timeout is the next thing the Envoy gets, and it never
	// got a secret.
	require.NoError(t, os.Remove(filepath.Join(plain, "credentials.yaml")))
	writePolicies(t, plain, map[string]string{"routes.yaml": policyRoutes("91s")})
	st, err := env.WaitFor(waitCtx(t), func(s envoysim.State) bool { return routeTimeout(s) == 91*time.Second })
	require.NoError(t, err)
	onlyTheMarker(t, env, envBefore, st, resourcev3.RouteType)
	require.Empty(t, st.Names(resourcev3.SecretType))

	// With explicit consent, it serves them and says loudly what that
	// means.
	cfg := baseConfig(dir)
	cfg.AllowPlaintextSecrets = true
	allowed, allowedLogs := startWith(t, cfg)
	require.Contains(t, allowedLogs.String(), "level=WARN msg=\"SECRETS OVER PLAINTEXT")
	require.NotEmpty(t, allowed.XDS.Versions("egress")["secrets"])
}

// TestServeMTLSServesSecrets: over mutual TLS, the identity bound to a
// gateway gets that gateway's secret, with its value; an identity bound to
// another gateway is refused the gateway, and on its own gateway's stream
// asking for the secret by name gets nothing.
func TestServeMTLSServesSecrets(t *testing.T) {
	p := newPKI(t)
	dir := writeSecretPolicies(t)
	inst, _ := startWith(t, p.mtlsConfig(dir))
	c := connectTLS(t, inst, xdstest.ClientTLS(p.ca, p.ca.Client(t, []string{egressSPIFFE}, nil)), "vm-1", "egress", true)
	c.Subscribe(resourcev3.SecretType, "credential/default/openai")
	_, err := c.WaitFor(waitCtx(t), func(s envoysim.State) bool {
		return secretValue(s, "credential/default/openai") == "sk-test-not-real"
	})
	require.NoError(t, err, "the egress identity did not get the key's value")

	// The identity of gateway "other" may not pose as egress...
	wrong, err := dialTLS(t, inst, xdstest.ClientTLS(p.ca, p.ca.Client(t, nil, []string{otherDNS})), "vm-9", "egress", true)
	require.NoError(t, err)
	err = streamEnd(t, wrong)
	require.Equal(t, codes.PermissionDenied, status.Code(err), "%v", err)
	require.Empty(t, wrong.History())

	// ...and on its own stream, naming egress's secret gets it nothing:
	// after a marker change of its own gateway arrives, it still holds no
	// secret and was sent none.
	other := connectTLS(t, inst, xdstest.ClientTLS(p.ca, p.ca.Client(t, nil, []string{otherDNS})), "vm-9", "other", true)
	_, err = other.WaitFor(waitCtx(t), complete("backend/default/anthropic"))
	require.NoError(t, err)
	other.Subscribe(resourcev3.SecretType, "credential/default/openai")
	writePolicies(t, dir, map[string]string{"routes.yaml": strings.Replace(policyRoutes("60s"), "  - backendRefs: [{name: anthropic}]\n", "  - backendRefs: [{name: anthropic}]\n    timeouts: {request: 77s}\n", 1)})
	ost, err := other.WaitFor(waitCtx(t), func(s envoysim.State) bool { return routeTimeout(s) == 77*time.Second })
	require.NoError(t, err)
	require.Empty(t, ost.Names(resourcev3.SecretType))
	for _, r := range other.History() {
		require.NotEqual(t, resourcev3.SecretType, r.TypeURL, "gateway other was sent a secret: %s", r)
	}
}

func TestServeRefusesPlaintextOffLoopback(t *testing.T) {
	dir := t.TempDir()
	writePolicies(t, dir, map[string]string{"gateways.yaml": policyGateways})
	for _, addr := range []string{"0.0.0.0:0", ":0", "[::]:0", "192.0.2.10:18000", "tollgate.internal:18000"} {
		cfg := baseConfig(dir)
		cfg.XDSAddr = addr
		_, err := start(t.Context(), cfg, &syncBuffer{})
		require.ErrorContains(t, err, "is not a loopback address", addr)
		require.ErrorContains(t, err, "--xds-tls-cert, --xds-tls-key and --xds-client-ca", addr)
	}
	code, _, errOut := cli(t, "serve", "--policies", dir, "--xds-addr", "0.0.0.0:18000", "--admin-addr", "127.0.0.1:0")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, `xDS address "0.0.0.0:18000" is not a loopback address`)
}

func TestServeXDSSecurityConfigErrors(t *testing.T) {
	p := newPKI(t)
	dir := t.TempDir()
	writePolicies(t, dir, map[string]string{"gateways.yaml": policyGateways})
	missing := filepath.Join(p.dir, "missing.crt")
	for name, tc := range map[string]struct {
		edit func(*serveConfig)
		want string
	}{
		"cert without key": {func(c *serveConfig) { c.XDSTLSKey = "" }, "--xds-tls-cert, --xds-tls-key and --xds-client-ca go together"},
		"no client CA":     {func(c *serveConfig) { c.XDSClientCA = "" }, "go together"},
		"no identities":    {func(c *serveConfig) { c.XDSIdentities = nil }, "xds-identities is empty, so every Envoy would be refused"},
		"identities without TLS": {func(c *serveConfig) { c.XDSTLSCert, c.XDSTLSKey, c.XDSClientCA = "", "", "" },
			"xds-identities is set but xDS is plaintext"},
		"wildcard":     {func(c *serveConfig) { c.XDSIdentities[0].Gateways = []string{"*"} }, `xds-identities[0].gateways[0]: "*": wildcards are not allowed`},
		"missing cert": {func(c *serveConfig) { c.XDSTLSCert = missing }, "xDS server certificate: open " + missing + ": no such file or directory"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := p.mtlsConfig(dir)
			tc.edit(&cfg)
			_, err := start(t.Context(), cfg, &syncBuffer{})
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestServeXDSIdentitiesConfig(t *testing.T) {
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "tollgate.yaml")
	require.NoError(t, os.WriteFile(cfgFile, []byte(`policies: /etc/tollgate/policies
xds-addr: 0.0.0.0:18000
xds-tls-cert: /etc/tollgate/xds.crt
xds-tls-key: /etc/tollgate/xds.key
xds-client-ca: /etc/tollgate/envoy-ca.crt
xds-identities:
- identity: spiffe://corp.example/gateway/egress
  gateways: [egress, team-b/egress]
- identity: vm-9.corp.example
  gateways: [other]
`), 0o644))
	load := func(args ...string) (serveConfig, error) {
		v := viper.New()
		cmd := newServeCmdWith(v)
		require.NoError(t, cmd.ParseFlags(append([]string{"--config", cfgFile}, args...)))
		return loadServeConfig(v)
	}
	cfg, err := load("--xds-client-ca", "/other/ca.crt")
	require.NoError(t, err)
	require.Equal(t, "/etc/tollgate/xds.crt", cfg.XDSTLSCert)
	require.Equal(t, "/etc/tollgate/xds.key", cfg.XDSTLSKey)
	require.Equal(t, "/other/ca.crt", cfg.XDSClientCA)
	require.False(t, cfg.AllowPlaintextSecrets)
	require.Equal(t, []xds.IdentityBinding{
		{Identity: "spiffe://corp.example/gateway/egress", Gateways: []string{"egress", "team-b/egress"}},
		{Identity: "vm-9.corp.example", Gateways: []string{"other"}},
	}, cfg.XDSIdentities)

	// The environment beats the file, as JSON.
	t.Setenv("TOLLGATE_XDS_IDENTITIES", `[{"identity": "spiffe://corp.example/x", "gateways": ["x"]}]`)
	t.Setenv("TOLLGATE_ALLOW_PLAINTEXT_SECRETS", "true")
	cfg, err = load()
	require.NoError(t, err)
	require.Equal(t, []xds.IdentityBinding{{Identity: "spiffe://corp.example/x", Gateways: []string{"x"}}}, cfg.XDSIdentities)
	require.True(t, cfg.AllowPlaintextSecrets)

	t.Setenv("TOLLGATE_XDS_IDENTITIES", `[{"identity": "spiffe://corp.example/x", "gateway": ["x"]}]`)
	_, err = load()
	require.ErrorContains(t, err, `TOLLGATE_XDS_IDENTITIES: want a JSON list`)
	require.ErrorContains(t, err, `unknown field "gateway"`)

	// A misspelt key in the file is an error, not a silent empty binding.
	os.Unsetenv("TOLLGATE_XDS_IDENTITIES")
	require.NoError(t, os.WriteFile(cfgFile, []byte("policies: /p\nxds-identities:\n- identity: spiffe://corp.example/x\n  gateway: [x]\n"), 0o644))
	_, err = load()
	require.ErrorContains(t, err, "xds-identities in the config file")
	require.ErrorContains(t, err, "gateway")
}

func TestBootstrapMTLSFlags(t *testing.T) {
	code, out, errOut := cli(t, "bootstrap", "--gateway", "egress", "--node-id", "vm-1", "--xds-addr", "tollgate.internal:18000",
		"--xds-ca-file", "/etc/envoy/xds-ca.crt", "--xds-cert-file", "/etc/envoy/xds.crt", "--xds-key-file", "/etc/envoy/xds.key")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext")
	require.Contains(t, out, `sni: "tollgate.internal"`)
	require.Contains(t, out, `certificate_chain: {filename: "/etc/envoy/xds.crt"}`)

	code, _, errOut = cli(t, "bootstrap", "--gateway", "egress", "--node-id", "vm-1", "--xds-cert-file", "/etc/envoy/xds.crt")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "go together")
}

// TestExampleXDSMTLS checks examples/xds-mtls as its README uses it: the
// config file parses, and, where openssl is installed, the certificates
// gen-certs.sh makes work with that config.
func TestExampleXDSMTLS(t *testing.T) {
	example, err := filepath.Abs("../../examples/xds-mtls")
	require.NoError(t, err)
	load := func(cfgFile string) serveConfig {
		v := viper.New()
		cmd := newServeCmdWith(v)
		require.NoError(t, cmd.ParseFlags([]string{"--config", cfgFile}))
		cfg, err := loadServeConfig(v)
		require.NoError(t, err)
		return cfg
	}
	cfg := load(filepath.Join(example, "tollgate.toml"))
	require.Equal(t, []xds.IdentityBinding{
		{Identity: "spiffe://corp.example/gateway/egress", Gateways: []string{"egress"}},
		{Identity: "vm-7.corp.example", Gateways: []string{"egress", "team-b/egress"}},
	}, cfg.XDSIdentities)
	_, err = xds.NewAuthorizer(cfg.XDSIdentities)
	require.NoError(t, err)

	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed: gen-certs.sh not tried")
	}
	// Run from a copy of the example, so that its relative paths hold
	// and the repository gets no keys.
	work := t.TempDir()
	policies, err := os.ReadFile(filepath.Join(example, "policies", "policies.yaml"))
	require.NoError(t, err)
	require.NoError(t, os.Mkdir(filepath.Join(work, "policies"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(work, "policies", "policies.yaml"), policies, 0o644))
	out, err := exec.Command("sh", filepath.Join(example, "gen-certs.sh"), filepath.Join(work, "certs")).CombinedOutput()
	require.NoError(t, err, "%s", out)
	t.Chdir(work)
	cfg = load(filepath.Join(example, "tollgate.toml"))
	cfg.XDSAddr, cfg.AdminAddr = "127.0.0.1:0", "127.0.0.1:0"
	inst, logs := startWith(t, cfg)

	caPEM, err := os.ReadFile("certs/ca.crt")
	require.NoError(t, err)
	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM(caPEM))
	client := func(name string) *tls.Config {
		pair, err := tls.LoadX509KeyPair("certs/"+name+".crt", "certs/"+name+".key")
		require.NoError(t, err)
		return &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	}
	for _, name := range []string{"envoy-egress", "envoy-vm-7"} {
		c := connectTLS(t, inst, client(name), name, "egress", false)
		_, err := c.WaitFor(waitCtx(t), func(s envoysim.State) bool { return len(s.Names(resourcev3.ListenerType)) == 1 })
		require.NoError(t, err, name)
	}
	rogue := connectTLS(t, inst, client("envoy-rogue"), "envoy-rogue", "egress", false)
	err = streamEnd(t, rogue)
	require.Equal(t, codes.PermissionDenied, status.Code(err), "%v", err)
	require.Contains(t, logs.String(), "xDS stream refused")
}
