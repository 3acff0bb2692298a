package main

import (
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/stretchr/testify/require"

	"github.com/tollgate-dev/tollgate/model/modeltest"
	"github.com/tollgate-dev/tollgate/translate"
	"github.com/tollgate-dev/tollgate/xds/envoysim"
)

func allowPlaintextSecrets(c *serveConfig) { c.AllowPlaintextSecrets = true }

const rotationPolicies = modeltest.EgressToOpenAI + `---
apiVersion: tollgate.dev/v1alpha1
kind: CredentialInjector
metadata: {name: openai}
spec:
  targetRefs: [{kind: Backend, name: openai}]
  apiKey: {secret: {file: secrets/openai.key}}
`

func secretValue(s envoysim.State, name string) string {
	sec, ok := envoysim.Get[*tlsv3.Secret](s, name)
	if !ok {
		return ""
	}
	return string(sec.GetGenericSecret().GetSecret().GetInlineBytes())
}

// Rotating a credential file is an SDS update and nothing else: listeners,
// routes and clusters keep their versions, and the Envoy gets the new key.
func TestCredentialRotationOnlyChangesSDS(t *testing.T) {
	for _, delta := range []bool{false, true} {
		t.Run(map[bool]string{false: "sotw", true: "delta"}[delta], func(t *testing.T) {
			dir := t.TempDir()
			require.NoError(t, os.MkdirAll(filepath.Join(dir, "secrets"), 0o700))
			writePolicies(t, dir, map[string]string{"policies.yaml": rotationPolicies})
			key := filepath.Join(dir, "secrets", "openai.key")
			require.NoError(t, os.WriteFile(key, []byte("sk-FAKE-rotation-1\n"), 0o600))
			inst, logs := startTollgateWith(t, dir, allowPlaintextSecrets)

			env := connect(t, inst, "vm-1", "egress", delta, nil)
			before, err := env.WaitFor(waitCtx(t), func(s envoysim.State) bool {
				return secretValue(s, "credential/default/openai") == "sk-FAKE-rotation-1" && len(s.Names(resourcev3.RouteType)) == 1
			})
			require.NoError(t, err)
			served := inst.XDS.Versions("egress")

			// Rotate as a secret manager would: write aside, rename over.
			tmp := filepath.Join(dir, "secrets", ".openai.key.new")
			require.NoError(t, os.WriteFile(tmp, []byte("sk-FAKE-rotation-2\n"), 0o600))
			require.NoError(t, os.Rename(tmp, key))
			after, err := env.WaitFor(waitCtx(t), func(s envoysim.State) bool {
				return secretValue(s, "credential/default/openai") == "sk-FAKE-rotation-2"
			})
			require.NoError(t, err)

			now := inst.XDS.Versions("egress")
			require.NotEqual(t, served["secrets"], now["secrets"])
			for _, typ := range []string{"listeners", "routes", "clusters", "endpoints"} {
				require.Equal(t, served[typ], now[typ], "rotating a key must not change %s", typ)
			}
			for _, typ := range []string{resourcev3.ListenerType, resourcev3.RouteType, resourcev3.ClusterType} {
				require.Equal(t, before.Versions[typ], after.Versions[typ], "the Envoy got a new %s", typ)
			}
			for _, r := range env.History() {
				require.True(t, r.Acked, "%s", r)
			}
			require.NotContains(t, logs.String(), "sk-FAKE-rotation")
		})
	}
}

// secretValues collects every secret an example ships: API keys and
// private keys, by file.
func secretValues(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	require.NoError(t, filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		switch {
		case strings.Contains(path, string(filepath.Separator)+"secrets"+string(filepath.Separator)):
			if v := strings.TrimSpace(string(data)); v != "" {
				out[path] = v
			}
		case strings.Contains(string(data), "PRIVATE KEY-----"):
			// The key's base64 body, line by line: any line leaking is a leak.
			for _, line := range strings.Split(string(data), "\n") {
				if len(line) >= 40 && !strings.HasPrefix(line, "-----") {
					out[path+" (line)"] = line
				}
			}
		}
		return nil
	}))
	return out
}

// TestExamplesNeverRevealSecrets runs every example the way an operator
// would — validate, serve at debug log level, Envoys of every gateway
// connected, the admin API read, a broken edit rejected — and checks that
// no secret value appears in anything tollgate printed or served outside
// xDS.
func TestExamplesNeverRevealSecrets(t *testing.T) {
	dirs, err := filepath.Glob("../../examples/*")
	require.NoError(t, err)
	checked := 0
	for _, example := range dirs {
		secrets := secretValues(t, example)
		if len(secrets) == 0 {
			continue
		}
		checked++
		t.Run(filepath.Base(example), func(t *testing.T) {
			var seen strings.Builder
			_, out, errOut := cli(t, "validate", example)
			seen.WriteString(out + errOut)

			// Serve a copy, so that a broken edit can be made to it.
			dir := filepath.Join(t.TempDir(), filepath.Base(example))
			require.NoError(t, os.CopyFS(dir, os.DirFS(example)))
			inst, logs := startTollgateWith(t, dir, func(c *serveConfig) {
				c.AllowPlaintextSecrets = true
				c.LogLevel = "debug"
			})
			var delivered strings.Builder
			translated, err := translate.Translate(inst.Store.Config())
			require.NoError(t, err)
			for _, g := range translated.Gateways {
				env := connect(t, inst, "hygiene-"+g.Key, g.Key, false, nil)
				st, err := env.WaitFor(waitCtx(t), func(s envoysim.State) bool {
					if len(s.Names(resourcev3.ListenerType)) != len(g.Listeners) {
						return false
					}
					for _, sec := range g.Secrets {
						if _, ok := envoysim.Get[*tlsv3.Secret](s, sec.GetName()); !ok {
							return false
						}
					}
					return true
				})
				require.NoError(t, err)
				for _, name := range st.Names(resourcev3.SecretType) {
					sec, _ := envoysim.Get[*tlsv3.Secret](st, name)
					delivered.WriteString(sec.String())
				}
			}
			writePolicies(t, dir, map[string]string{"zz-broken.yaml": "apiVersion: tollgate.dev/v1alpha1\nkind: Backend\nmetadata: {name: broken}\nspec: {hostname: [}\n"})
			require.Eventually(t, func() bool { return !inst.Store.Status().Applied }, 10*time.Second, 10*time.Millisecond)
			for _, path := range []string{"/status/nodes", "/status/gateways", "/status/policies", "/healthz"} {
				resp, err := http.Get("http://" + inst.AdminAddr.String() + path)
				require.NoError(t, err)
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				seen.Write(body)
			}
			inst.stop()
			seen.WriteString(logs.String())

			for file, value := range secrets {
				require.NotContains(t, seen.String(), value, "tollgate revealed the content of %s", file)
			}
			// The check can fail: the API keys do reach the Envoys, over SDS.
			require.NotEmpty(t, delivered.String())
		})
	}
	require.NotZero(t, checked, "no example ships a secret; the hygiene test checks nothing")
}
