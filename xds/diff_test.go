package xds_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/policies"
	"github.com/tollgate-dev/tollgate/store"
	"github.com/tollgate-dev/tollgate/xds"
	"github.com/tollgate-dev/tollgate/xds/xdstest"
)

// diffPolicies is a gateway with an API key on openai, static AWS keys on
// bedrock and mutual TLS to a partner; RULES and EXTRA add what the new
// version adds.
const diffPolicies = `apiVersion: tollgate.dev/v1alpha1
kind: Gateway
metadata: {name: egress}
spec: {listeners: [{name: http, port: 10080, protocol: HTTP}]}
---
apiVersion: tollgate.dev/v1alpha1
kind: Backend
metadata: {name: openai}
spec: {provider: openai}
---
apiVersion: tollgate.dev/v1alpha1
kind: Backend
metadata: {name: bedrock}
spec: {provider: bedrock, region: eu-west-1}
---
apiVersion: tollgate.dev/v1alpha1
kind: Backend
metadata: {name: partner}
spec: {hostname: inference.partner.example}
---
apiVersion: tollgate.dev/v1alpha1
kind: CredentialInjector
metadata: {name: openai-key}
spec:
  targetRefs: [{kind: Backend, name: openai}]
  apiKey: {secret: {file: secrets/openai.key}}
---
apiVersion: tollgate.dev/v1alpha1
kind: CredentialInjector
metadata: {name: bedrock-static}
spec:
  targetRefs: [{kind: Backend, name: bedrock}]
  awsSigV4:
    credentials:
      accessKeyID: {file: secrets/aws-access-key-id}
      secretAccessKey: {file: secrets/aws-secret-access-key}
---
apiVersion: tollgate.dev/v1alpha1
kind: BackendTLSPolicy
metadata: {name: partner-mtls}
spec:
  targetRefs: [{kind: Backend, name: partner}]
  caCertificates: {file: certs/ca.pem}
  clientCertificate:
    certificate: {file: certs/client.pem}
    privateKey: {file: certs/client.key}
---
apiVersion: tollgate.dev/v1alpha1
kind: HTTPRoute
metadata: {name: chat}
spec:
  parentRefs: [{name: egress}]
  rules:
  - matches: [{path: {value: /bedrock}}]
    backendRefs: [{name: bedrock}]
  - matches: [{path: {value: /partner}}]
    backendRefs: [{name: partner}]
RULES  - backendRefs: [{name: openai}]
    timeouts: {request: TIMEOUT}
EXTRA`

// diffSecrets are the secret values of one version of the policies.
type diffSecrets struct {
	apiKey, awsID, awsSecret string
	client                   *xdstest.Leaf
}

// diffDir writes one version of the policies and its secret files, and
// returns what the store serves for it.
func diffDir(t *testing.T, policy string, s diffSecrets, ca *xdstest.CA) *model.Config {
	t.Helper()
	dir := t.TempDir()
	for name, data := range map[string][]byte{
		"policies.yaml":                 []byte(policy),
		"secrets/openai.key":            []byte(s.apiKey),
		"secrets/aws-access-key-id":     []byte(s.awsID),
		"secrets/aws-secret-access-key": []byte(s.awsSecret),
		"certs/ca.pem":                  ca.PEM,
		"certs/client.pem":              s.client.CertPEM,
		"certs/client.key":              s.client.KeyPEM,
	} {
		require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), data, 0o600))
	}
	st, err := store.New(store.Options{})
	require.NoError(t, err)
	require.NoError(t, store.NewFileSource(dir, policies.NewScheme(), nil).Start(st))
	return st.Config()
}

// names lists "type name" of each resource diff.
func names(rs []xds.ResourceDiff) []string {
	out := []string{}
	for _, r := range rs {
		out = append(out, r.Type+" "+r.Name)
	}
	return out
}

// TestDiffNamesWhatChangesAndHidesSecrets changes a route timeout, adds a
// backend and rotates every secret: the diff names exactly the route, the
// new cluster and the rotated secrets, shows the timeout lines, and no
// secret value in any encoding.
func TestDiffNamesWhatChangesAndHidesSecrets(t *testing.T) {
	ca := xdstest.NewCA(t, "diff test CA")
	before := diffSecrets{apiKey: "sk-before-4f1d9a7c2e", awsID: "AKIABEFORE0000000001", awsSecret: "before/secret/access/key/0123456789abcd", client: ca.Client(t, nil, []string{"before.example"})}
	after := diffSecrets{apiKey: "sk-after-8b3e6c0d5f", awsID: "AKIAAFTER00000000002", awsSecret: "after/secret/access/key/9876543210dcba", client: ca.Client(t, nil, []string{"after.example"})}
	oldPolicy := strings.NewReplacer("RULES", "", "TIMEOUT", "60s", "EXTRA", "").Replace(diffPolicies)
	newPolicy := strings.NewReplacer("RULES", `  - matches: [{path: {value: /anthropic}}]
    backendRefs: [{name: anthropic}]
`, "TIMEOUT", "90s", "EXTRA", `---
apiVersion: tollgate.dev/v1alpha1
kind: Backend
metadata: {name: anthropic}
spec: {provider: anthropic, schema: openai}
`).Replace(diffPolicies)
	current := diffDir(t, oldPolicy, before, ca)
	next := diffDir(t, newPolicy, after, ca)

	d, err := xds.Diff(current, next)
	require.NoError(t, err)
	require.Len(t, d.Gateways, 1)
	g := d.Gateways[0]
	require.Equal(t, "egress", g.Gateway)
	require.Equal(t, []string{"clusters backend/default/anthropic"}, names(g.Added))
	require.Empty(t, g.Removed)
	require.Equal(t, []string{
		"routes route/http",
		// The static AWS keys travel inline in bedrock's cluster.
		"clusters backend/default/bedrock",
		"secrets credential/default/openai",
		"secrets tls-client/default/partner",
	}, names(g.Changed))
	require.Positive(t, g.Unchanged)
	require.Equal(t, len(g.Added)+len(g.Changed), d.Changes())

	route := g.Changed[0]
	require.True(t, strings.HasPrefix(route.Diff, "--- a/routes/route/http\n+++ b/routes/route/http\n@@ "), route.Diff)
	require.Contains(t, route.Diff, "\n-      timeout: 60s\n", route.Diff)
	require.Contains(t, route.Diff, "\n+      timeout: 90s\n", route.Diff)
	require.Contains(t, route.Diff, "\n+      cluster: backend/default/anthropic\n", "the new rule")
	require.Empty(t, route.Note)
	require.True(t, strings.HasPrefix(g.Added[0].Diff, "--- /dev/null\n+++ b/clusters/backend/default/anthropic\n@@ -0,0 +1,"), g.Added[0].Diff)

	for _, r := range g.Changed[1:] {
		require.Equal(t, xds.NoteValueChanged, r.Note, r.Name)
	}
	apiKey := g.Changed[2].Diff
	require.Contains(t, apiKey, "\n type: generic secret\n")
	require.Contains(t, apiKey, "\n value: hidden\n")
	require.Regexp(t, `\n-sha256: [0-9a-f]{64}\n\+sha256: [0-9a-f]{64}\n`, apiKey)
	// The client certificate, public, is listed; its key is not.
	require.Contains(t, g.Changed[3].Diff, `CN=after.example`)

	js, err := json.Marshal(d)
	require.NoError(t, err)
	out := string(js)
	for _, s := range []diffSecrets{before, after} {
		for _, v := range []string{s.apiKey, s.awsID, s.awsSecret, string(s.client.KeyPEM), keyBody(s.client.KeyPEM)} {
			for _, form := range []string{v, base64.StdEncoding.EncodeToString([]byte(v)), fmt.Sprintf("%q", v)} {
				require.NotContains(t, out, form)
			}
		}
	}

	// Deterministic: the same inputs give the same bytes.
	again, err := xds.Diff(current, next)
	require.NoError(t, err)
	js2, err := json.Marshal(again)
	require.NoError(t, err)
	require.Equal(t, out, string(js2))
}

// keyBody is the base64 body of a PEM key, without its armour.
func keyBody(p []byte) string {
	lines := strings.Split(strings.TrimSpace(string(p)), "\n")
	return strings.Join(lines[1:len(lines)-1], "")
}

// TestDiffTrustBundleIsSummarised shows a changed CA bundle certificate by
// certificate, not as PEM.
func TestDiffTrustBundleIsSummarised(t *testing.T) {
	caA, caB := xdstest.NewCA(t, "bundle A"), xdstest.NewCA(t, "bundle B")
	s := diffSecrets{apiKey: "k", awsID: "AKIA", awsSecret: "s", client: caA.Client(t, nil, []string{"c.example"})}
	policy := strings.NewReplacer("RULES", "", "TIMEOUT", "60s", "EXTRA", "").Replace(diffPolicies)
	d, err := xds.Diff(diffDir(t, policy, s, caA), diffDir(t, policy, s, caB))
	require.NoError(t, err)
	g := d.Gateways[0]
	require.Equal(t, []string{"secrets tls-validation/default/partner"}, names(g.Changed))
	diff := g.Changed[0].Diff
	require.Empty(t, g.Changed[0].Note, "a trust bundle is public")
	require.Contains(t, diff, "\n type: validation context\n")
	require.Regexp(t, `\n-\s+certificate "CN=bundle A,O=tollgate tests", not after [0-9TZ:-]+, sha256 [0-9a-f]{64}\n`, diff)
	require.Regexp(t, `\n\+\s+certificate "CN=bundle B,O=tollgate tests", not after [0-9TZ:-]+, sha256 [0-9a-f]{64}\n`, diff)
	require.NotContains(t, diff, "BEGIN CERTIFICATE")
}

// TestDiffFromNothingAndToItself: nothing served yet is every resource
// added; the same configuration is no change at all.
func TestDiffFromNothingAndToItself(t *testing.T) {
	cfg := config(t, strings.ReplaceAll(twoGateways, "TIMEOUT", "60s"))
	d, err := xds.Diff(nil, cfg)
	require.NoError(t, err)
	require.Equal(t, []string{"a", "team/b"}, []string{d.Gateways[0].Gateway, d.Gateways[1].Gateway})
	for _, g := range d.Gateways {
		require.NotEmpty(t, g.Added, g.Gateway)
		require.Zero(t, g.Unchanged)
	}
	require.Equal(t, "listeners", d.Gateways[0].Added[0].Type, "listeners come first")

	d, err = xds.Diff(cfg, config(t, strings.ReplaceAll(twoGateways, "TIMEOUT", "60s")))
	require.NoError(t, err)
	require.Zero(t, d.Changes())
	require.Positive(t, d.Gateways[0].Unchanged)

	// A gateway that goes away loses every resource.
	d, err = xds.Diff(cfg, config(t, `apiVersion: tollgate.dev/v1alpha1
kind: Gateway
metadata: {name: b, namespace: team}
spec: {listeners: [{name: http, port: 10080, protocol: HTTP}]}
`))
	require.NoError(t, err)
	require.Equal(t, "a", d.Gateways[0].Gateway)
	require.NotEmpty(t, d.Gateways[0].Removed)
	require.True(t, strings.HasSuffix(strings.SplitN(d.Gateways[0].Removed[0].Diff, "\n", 3)[1], "/dev/null"))
	require.Zero(t, len(d.Gateways[1].Added)+len(d.Gateways[1].Removed)+len(d.Gateways[1].Changed))
}

// TestDiffRateLimitConfig shows a changed limit as a change of the
// gateway's rate limit configuration.
func TestDiffRateLimitConfig(t *testing.T) {
	st, err := store.New(store.Options{})
	require.NoError(t, err)
	current, err := loadPolicies(t, st, strings.ReplaceAll(rateLimitPolicies, "REQUESTS", "3"))
	require.NoError(t, err)
	next, err := loadPolicies(t, st, strings.ReplaceAll(rateLimitPolicies, "REQUESTS", "5"))
	require.NoError(t, err)
	d, err := xds.Diff(current, next)
	require.NoError(t, err)
	require.Equal(t, []string{"ratelimit tollgate/egress"}, names(d.Gateways[0].Changed))
	require.Contains(t, d.Gateways[0].Changed[0].Diff, "\n-      requests_per_unit: 3\n+      requests_per_unit: 5\n")
}
