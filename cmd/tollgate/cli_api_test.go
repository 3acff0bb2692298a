package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/tollgate-dev/tollgate/xds"
)

// TestCLIParseDocuments checks how apply cuts a file into documents: each
// keeps its text, its line and its namespace, and a document without
// kind or name is an error naming file and line.
func TestCLIParseDocuments(t *testing.T) {
	data := "# leading comment\n" +
		"apiVersion: tollgate.dev/v1alpha1\nkind: Gateway\nmetadata: {name: egress}\n" +
		"---\n# only a comment\n" +
		"--- # route\n" +
		"apiVersion: tollgate.dev/v1alpha1\nkind: HTTPRoute\nmetadata:\n  name: chat\n  namespace: team-a\n" +
		"---\n" +
		"kind: Backend\nmetadata: {namespace: x}\n" +
		"...\n" +
		"---\n" +
		"metadata: {name: y}\n" +
		"---\n" +
		"kind: [\n"
	docs, problems := parseDocuments("p.yaml", []byte(data), "")
	require.Len(t, docs, 2)
	require.Equal(t, "Gateway/egress", docs[0].ref())
	require.Equal(t, 2, docs[0].Line)
	require.Equal(t, "HTTPRoute/team-a/chat", docs[1].ref())
	require.Equal(t, 8, docs[1].Line)
	require.Equal(t, 7, docs[1].Start)
	require.Contains(t, string(docs[1].Text), "kind: HTTPRoute")
	var msgs []string
	for _, p := range problems {
		msgs = append(msgs, p.Error())
	}
	require.Equal(t, []string{
		"p.yaml:14: metadata.name: is required: Backend documents name their object (metadata: {name: ...})",
		"p.yaml:18: kind: is required: every document names its kind (kind: HTTPRoute, ...)",
		"p.yaml:20: invalid YAML: did not find expected node content",
	}, msgs)

	_, problems = parseDocuments("q.yaml", []byte("kind: Gateway\nmetadata: {name: g, namespace: a}\n"), "b")
	require.Len(t, problems, 1)
	require.Equal(t, `q.yaml:1: metadata.namespace: is "a" but -n says "b": drop -n, or make them agree`, problems[0].Error())
}

// The file policies of the API tests: a gateway and a backend that the
// API objects cannot change (they are read-only through the API).
const cliFileGateway = `apiVersion: tollgate.dev/v1alpha1
kind: Gateway
metadata: {name: egress}
spec:
  listeners: [{name: http, port: 10080, protocol: HTTP}]
`

// cliTeamA is a directory's worth of API objects in namespace team-a.
const cliTeamA = `apiVersion: tollgate.dev/v1alpha1
kind: Gateway
metadata: {name: gw, namespace: team-a}
spec:
  listeners: [{name: http, port: 10081, protocol: HTTP}]
---
# the provider
apiVersion: tollgate.dev/v1alpha1
kind: Backend
metadata: {name: openai, namespace: team-a}
spec: {provider: openai}
`

// cliRoute is an HTTPRoute of team-a; it leaves its namespace to -n.
func cliRoute(timeout string) string {
	return `apiVersion: tollgate.dev/v1alpha1
kind: HTTPRoute
metadata:
  name: chat
spec:
  parentRefs: [{name: gw}]
  rules:
  - backendRefs: [{name: openai}]
    timeouts: {request: ` + timeout + `}
`
}

// apiServer starts tollgate with its API store and a token that may
// write every namespace, and returns the flags that reach it.
func apiServer(t *testing.T) (inst *instance, flags []string) {
	t.Helper()
	policies := t.TempDir()
	writePolicies(t, policies, map[string]string{"gateway.yaml": cliFileGateway})
	const token = "s3cret-token"
	sum := sha256.Sum256([]byte(token))
	tokenFile := filepath.Join(t.TempDir(), "tokens.yaml")
	require.NoError(t, os.WriteFile(tokenFile, []byte(`tokens: [{name: ci, sha256: "`+hex.EncodeToString(sum[:])+`", namespaces: ["*"]}]`+"\n"), 0o600))
	inst, _ = startTollgateWith(t, policies, func(c *serveConfig) {
		c.StateDir = t.TempDir()
		c.APITokens = tokenFile
	})
	return inst, []string{"--server", "http://" + inst.AdminAddr.String(), "--token", token}
}

// writeFiles writes files below dir, making their directories.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		path := filepath.Join(dir, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
		require.NoError(t, os.WriteFile(path, []byte(content), 0o644))
	}
}

// convergedNode matches a node line of status that says converged.
var convergedNode = regexp.MustCompile(`(?m)^\S+\s+gateway .*\sconverged$`)

// cliOK runs the CLI, requires exit code 0 and returns standard output.
func cliOK(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errOut := cli(t, args...)
	require.Equal(t, 0, code, "tollgate %s\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), out, errOut)
	return out
}

// TestCLIApply applies a directory (recursively, skipping hidden files),
// applies it again unchanged, changes one object, and checks that a dry
// run stores nothing and that an invalid object is refused with its
// violation located in the local file, without stopping the others.
func TestCLIApply(t *testing.T) {
	_, srv := apiServer(t)
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"team-a.yaml":        cliTeamA,
		"routes/chat.yaml":   cliRoute("30s"),
		"routes/.draft.yaml": "not: [valid",
		"routes/.git/x.yaml": "not: [valid",
		"README.md":          "not yaml",
	})
	out := cliOK(t, append([]string{"apply", "-f", dir, "-n", "team-a"}, srv...)...)
	t.Logf("apply:\n%s", out)
	require.Equal(t, "Gateway/team-a/gw created\nBackend/team-a/openai created\nHTTPRoute/team-a/chat created\n", out)

	out = cliOK(t, append([]string{"apply", "-f", dir, "-n", "team-a"}, srv...)...)
	require.Equal(t, "Gateway/team-a/gw unchanged\nBackend/team-a/openai unchanged\nHTTPRoute/team-a/chat unchanged\n", out)
	out = cliOK(t, append([]string{"apply", "-f", dir, "-n", "team-a", "-o", "json"}, srv...)...)
	var applied objectList
	require.NoError(t, json.Unmarshal([]byte(out), &applied))
	require.Len(t, applied.Items, 3)

	writeFiles(t, dir, map[string]string{"routes/chat.yaml": cliRoute("45s")})
	out = cliOK(t, append([]string{"apply", "-f", filepath.Join(dir, "routes", "chat.yaml"), "-n", "team-a", "--dry-run"}, srv...)...)
	require.Equal(t, "HTTPRoute/team-a/chat configured (dry run)\n", out)
	out = cliOK(t, append([]string{"get", "httproute", "chat", "-n", "team-a", "-o", "yaml"}, srv...)...)
	require.Contains(t, out, "request: 30s", "a dry run stored the change")
	out = cliOK(t, append([]string{"apply", "-f", filepath.Join(dir, "routes", "chat.yaml"), "-n", "team-a"}, srv...)...)
	require.Equal(t, "HTTPRoute/team-a/chat configured\n", out)

	// A new object in a dry run: reported as created, not stored.
	extra := filepath.Join(t.TempDir(), "extra.yaml")
	require.NoError(t, os.WriteFile(extra, []byte("apiVersion: tollgate.dev/v1alpha1\nkind: Backend\nmetadata: {name: spare, namespace: team-a}\nspec: {provider: anthropic}\n"), 0o644))
	out = cliOK(t, append([]string{"apply", "-f", extra, "--dry-run"}, srv...)...)
	require.Equal(t, "Backend/team-a/spare created (dry run)\n", out)
	code, _, errOut := cli(t, append([]string{"get", "backend", "spare", "-n", "team-a"}, srv...)...)
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "Backend/team-a/spare not found")

	// A refused document among valid ones: the violation names the local
	// file and line, the others are applied, the exit code is 1.
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte("apiVersion: tollgate.dev/v1alpha1\nkind: Backend\nmetadata: {name: spare, namespace: team-a}\nspec: {provider: anthropic}\n"+
		"---\napiVersion: tollgate.dev/v1alpha1\nkind: Gateway\nmetadata: {name: bad, namespace: team-a}\nspec:\n  listeners:\n  - {name: h, port: 80, protocol: HTTP, tsl: true}\n"+
		"---\nmetadata: {name: nokind}\n"), 0o644))
	code, out, errOut = cli(t, append([]string{"apply", "-f", bad}, srv...)...)
	t.Logf("apply bad.yaml:\nstdout:\n%s\nstderr:\n%s", out, errOut)
	require.Equal(t, 1, code)
	require.Equal(t, "Backend/team-a/spare created\n", out)
	require.Contains(t, errOut, bad+":6: Gateway/team-a/bad: Invalid: ")
	require.Contains(t, errOut, "\n"+bad+`:11: Gateway/team-a/bad: spec.listeners[0].tsl: unknown field "tsl"`)
	require.Contains(t, errOut, bad+":13: kind: is required")
	require.Contains(t, errOut, "2 of 3 object(s) not applied")

	// Writes need the token.
	code, _, errOut = cli(t, "apply", "-f", extra, "--server", srv[1])
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "Unauthorized")
}

// TestCLIGetDeleteStatus reads objects as a table and as JSON, shows the
// status of objects and of a connected Envoy, and deletes.
func TestCLIGetDeleteStatus(t *testing.T) {
	inst, srv := apiServer(t)
	dir := t.TempDir()
	writePolicies(t, dir, map[string]string{"team-a.yaml": cliTeamA + "---\n" + cliRoute("30s")})
	cliOK(t, append([]string{"apply", "-f", dir, "-n", "team-a"}, srv...)...)

	out := cliOK(t, append([]string{"get", "httproutes", "-n", "team-a"}, srv...)...)
	t.Logf("get httproutes:\n%s", out)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 2)
	require.Equal(t, []string{"NAMESPACE", "NAME", "SOURCE", "GENERATION", "ACCEPTED", "PROGRAMMED", "AGE"}, strings.Fields(lines[0]))
	row := strings.Fields(lines[1])
	// No Envoy of team-a/gw has it yet.
	require.Equal(t, []string{"team-a", "chat", "api", "1", "True", "False"}, row[:6])
	require.Regexp(t, `^\d+s$`, row[6])

	out = cliOK(t, append([]string{"get", "gateways", "-A"}, srv...)...)
	t.Logf("get gateways -A:\n%s", out)
	require.Regexp(t, `(?m)^default\s+egress\s+\S+gateway\.yaml:1\s+1\s+True\s+False\s+-$`, out)
	require.Regexp(t, `(?m)^team-a\s+gw\s+api\s+1\s+True\s+False\s+\d+s$`, out)

	out = cliOK(t, append([]string{"get", "all", "-n", "team-a"}, srv...)...)
	require.Contains(t, out, "HTTPRoute/chat")
	require.Contains(t, out, "Backend/openai")

	out = cliOK(t, append([]string{"get", "httproute", "chat", "-n", "team-a", "-o", "json"}, srv...)...)
	var obj apiObject
	require.NoError(t, json.Unmarshal([]byte(out), &obj))
	require.Equal(t, "HTTPRoute", obj.Kind)
	require.Equal(t, "api", obj.Status.Source)
	require.Equal(t, "True", condition(obj.Status.Conditions, "Accepted"))
	require.NotEmpty(t, obj.Metadata.ResourceVersion)

	out = cliOK(t, append([]string{"get", "httproutes", "-A", "-o", "json"}, srv...)...)
	var list objectList
	require.NoError(t, json.Unmarshal([]byte(out), &list))
	require.Len(t, list.Items, 1)

	// Before any Envoy connects, nothing is programmed, and status says
	// why.
	status := cliOK(t, append([]string{"status", "-n", "team-a"}, srv...)...)
	t.Logf("status before any Envoy:\n%s", status)
	require.Regexp(t, `(?m)^HTTPRoute/team-a/chat\s+api\s+generation 1\s+Accepted ResolvedRefs$`, status)
	require.Regexp(t, `(?m)^    Programmed=False NoEnvoyConnected: `, status)
	require.Contains(t, status, "ENVOY NODES: none connected")

	// vm-1 takes everything; vm-2 refuses anthropic's cluster, as an Envoy
	// lacking an extension would. A route to anthropic is then NACKed by
	// vm-2: status names the node, the type, the message and the objects.
	connect(t, inst, "vm-1", "team-a/gw", false, nil)
	connect(t, inst, "vm-2", "team-a/gw", true, func(_ string, m proto.Message) error {
		if c, ok := m.(*clusterv3.Cluster); ok && strings.Contains(c.GetName(), "anthropic") {
			return fmt.Errorf("cluster %s: unsupported by this Envoy", c.GetName())
		}
		return nil
	})
	require.Eventually(t, func() bool {
		status = cliOK(t, append([]string{"status", "-n", "team-a"}, srv...)...)
		return len(convergedNode.FindAllString(status, -1)) == 2 && !strings.Contains(status, "=False")
	}, 5*time.Second, 20*time.Millisecond)
	t.Logf("status, converged:\n%s", status)
	require.Regexp(t, `(?m)^HTTPRoute/team-a/chat\s+api\s+generation 1\s+Accepted ResolvedRefs Programmed$`, status)
	require.Regexp(t, `(?m)^vm-1\s+gateway team-a/gw\s+\S+\s+envoy \S+\s+converged$`, status)
	require.NotContains(t, status, "Gateway/egress", "-n team-a shows team-a's objects only")

	claude := filepath.Join(t.TempDir(), "claude.yaml")
	require.NoError(t, os.WriteFile(claude, []byte("apiVersion: tollgate.dev/v1alpha1\nkind: HTTPRoute\nmetadata: {name: claude, namespace: team-a}\n"+
		"spec:\n  parentRefs: [{name: gw}]\n  hostnames: [api.anthropic.com]\n  rules:\n  - backendRefs: [{name: anthropic}]\n"+
		"---\napiVersion: tollgate.dev/v1alpha1\nkind: Backend\nmetadata: {name: anthropic, namespace: team-a}\nspec: {provider: anthropic}\n"), 0o644))
	out = cliOK(t, append([]string{"apply", "-f", claude}, srv...)...)
	require.Equal(t, "Backend/team-a/anthropic created\nHTTPRoute/team-a/claude created\n", out)
	require.Eventually(t, func() bool {
		status = cliOK(t, append([]string{"status", "-n", "team-a"}, srv...)...)
		return strings.Contains(status, "last NACK") && strings.Contains(status, "RejectedByEnvoy")
	}, 5*time.Second, 20*time.Millisecond)
	t.Logf("status, NACKed:\n%s", status)
	require.Regexp(t, `(?m)^    Programmed=False RejectedByEnvoy: .*vm-2`, status)
	require.Regexp(t, `(?m)^vm-2\s+gateway team-a/gw\s+\S+\s+envoy \S+\s+lagging: clusters \(sent \S+, acked \S+\)$`, status)
	require.Regexp(t, `(?m)^    last NACK \(\d+s ago\): clusters version \S+: .*unsupported by this Envoy`, status)
	require.Regexp(t, `(?m)^      objects: .*Backend/team-a/anthropic`, status)

	out = cliOK(t, append([]string{"status", "-o", "json"}, srv...)...)
	var js struct {
		Objects  []statusObject    `json:"objects"`
		Nodes    []json.RawMessage `json:"nodes"`
		LastNack *xds.NackRecord   `json:"last_nack"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &js))
	require.Len(t, js.Nodes, 2)
	require.Len(t, js.Objects, 6) // the file gateway and five API objects
	require.NotNil(t, js.LastNack)
	require.Equal(t, "vm-2", js.LastNack.NodeID)

	// Deleting: a dry run keeps the object, a real one removes it, and a
	// second one finds nothing; a file object is read-only.
	out = cliOK(t, append([]string{"delete", "httproute", "claude", "-n", "team-a", "--dry-run"}, srv...)...)
	require.Equal(t, "HTTPRoute/team-a/claude deleted (dry run)\n", out)
	cliOK(t, append([]string{"get", "httproute", "claude", "-n", "team-a"}, srv...)...)
	out = cliOK(t, append([]string{"delete", "-f", claude}, srv...)...)
	require.Equal(t, "HTTPRoute/team-a/claude deleted\nBackend/team-a/anthropic deleted\n", out)
	code, _, errOut := cli(t, append([]string{"delete", "httproutes", "claude", "-n", "team-a"}, srv...)...)
	t.Logf("delete again: %s", errOut)
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "HTTPRoute/team-a/claude not found")
	cliOK(t, append([]string{"delete", "httproutes", "claude", "-n", "team-a", "--ignore-not-found"}, srv...)...)
	code, _, errOut = cli(t, append([]string{"delete", "gateway", "egress"}, srv...)...)
	t.Logf("delete a file object: %s", errOut)
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "ReadOnly")
	require.Contains(t, errOut, "gateway.yaml:1")
}

// TestCLIUsageErrors checks the mistakes caught before talking to a
// server.
func TestCLIUsageErrors(t *testing.T) {
	code, _, errOut := cli(t, "apply")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "apply needs -f")
	code, _, errOut = cli(t, "delete", "httproute")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "delete needs KIND NAME")
	code, _, errOut = cli(t, "get", "httproute", "x", "-A")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "-A lists every namespace")
	code, _, errOut = cli(t, "status", "-o", "xml")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "use text, json or yaml")
}
