package main

import (
	"fmt"
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
	"github.com/tollgate-dev/tollgate/translate/translatetest"
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

// secretFiles collects every secret an example ships, by path relative to
// the example: API keys (and any file under secrets/) and private keys.
func secretFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	require.NoError(t, filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		if strings.Contains(path, string(filepath.Separator)+"secrets"+string(filepath.Separator)) || strings.Contains(string(data), "PRIVATE KEY-----") {
			if strings.TrimSpace(string(data)) != "" {
				out[rel] = data
			}
		}
		return nil
	}))
	return out
}

// TestExamplesNeverRevealSecrets runs every example the way an operator
// would — validate, serve at debug log level in each log format, Envoys of
// every gateway connected, the admin API read, a broken edit rejected —
// and checks, in every encoding a secret can take
// (translatetest.SecretForms), that no secret value appears in anything
// tollgate printed or served outside xDS. It first checks that each secret
// the policies read IS delivered, in the SDS resources (or, for static AWS
// keys, the clusters) of exactly the gateways whose backends use it: a
// scan that cannot find the secret where it belongs proves nothing.
func TestExamplesNeverRevealSecrets(t *testing.T) {
	dirs, err := translatetest.ExampleDirs("../../examples")
	require.NoError(t, err)
	checked, delivered := 0, 0
	for _, example := range dirs {
		secrets := secretFiles(t, example)
		if len(secrets) == 0 {
			continue
		}
		checked++
		for _, format := range []string{"text", "json"} {
			t.Run(filepath.Base(example)+"/"+format, func(t *testing.T) {
				var seen strings.Builder
				_, out, errOut := cli(t, "validate", example)
				seen.WriteString(out + errOut)

				// Serve a copy, so that a broken edit can be made to it.
				dir := filepath.Join(t.TempDir(), filepath.Base(example))
				require.NoError(t, os.CopyFS(dir, os.DirFS(example)))
				inst, logs := startTollgateWith(t, dir, func(c *serveConfig) {
					c.AllowPlaintextSecrets = true
					c.LogLevel = "debug"
					c.LogFormat = format
				})
				read := map[string]bool{}
				for _, p := range inst.Store.MaterialFiles() {
					rel, err := filepath.Rel(dir, p)
					require.NoError(t, err)
					read[rel] = true
				}
				translated, err := translate.Translate(inst.Store.Config())
				require.NoError(t, err)
				// Where each secret the policies read belongs: the gateways
				// whose output carries it in SDS (or inline, for AWS keys).
				owners := map[string]map[string]bool{}
				for _, g := range translated.Gateways {
					var own strings.Builder
					for _, sec := range g.Secrets {
						own.WriteString(sec.String())
					}
					if g.InlineSecrets {
						for _, c := range g.Clusters {
							own.WriteString(c.String())
						}
					}
					for file, value := range secrets {
						if _, ok := translatetest.FindSecret(own.String(), value); ok {
							if owners[file] == nil {
								owners[file] = map[string]bool{}
							}
							owners[file][g.Key] = true
						}
					}
				}
				for file := range secrets {
					if read[file] {
						require.NotEmpty(t, owners[file], "the policies read %s but no gateway's output carries it", file)
					}
				}
				for _, g := range translated.Gateways {
					env := connect(t, inst, "hygiene-"+g.Key, g.Key, false, nil)
					st, err := env.WaitFor(waitCtx(t), func(s envoysim.State) bool {
						if len(s.Names(resourcev3.ListenerType)) != len(g.Listeners) || len(s.Names(resourcev3.ClusterType)) != len(g.Clusters) {
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
					var got strings.Builder
					for _, name := range st.Names(resourcev3.SecretType) {
						got.WriteString(st.Resources[resourcev3.SecretType][name].(fmt.Stringer).String())
					}
					if g.InlineSecrets {
						for _, name := range st.Names(resourcev3.ClusterType) {
							got.WriteString(st.Resources[resourcev3.ClusterType][name].(fmt.Stringer).String())
						}
					}
					for file, value := range secrets {
						_, ok := translatetest.FindSecret(got.String(), value)
						require.Equal(t, owners[file][g.Key], ok, "gateway %s: %s delivered over xDS = %v, want %v", g.Key, file, ok, owners[file][g.Key])
						if ok {
							delivered++
						}
					}
				}
				writePolicies(t, dir, map[string]string{"zz-broken.yaml": "apiVersion: tollgate.dev/v1alpha1\nkind: Backend\nmetadata: {name: broken}\nspec: {hostname: [}\n"})
				require.Eventually(t, func() bool { return !inst.Store.Status().Applied }, 10*time.Second, 10*time.Millisecond)
				for _, path := range []string{"/status/nodes", "/status/gateways", "/status/policies", "/healthz"} {
					resp, err := http.Get("http://" + inst.AdminAddr.String() + path)
					require.NoError(t, err)
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					require.NotEmpty(t, body, path)
					seen.Write(body)
				}
				inst.stop()
				require.Contains(t, logs.String(), map[string]string{"text": "level=DEBUG", "json": `"level":"DEBUG"`}[format], "the logs are not at debug level in %s format", format)
				seen.WriteString(logs.String())

				for file, value := range secrets {
					form, ok := translatetest.FindSecret(seen.String(), value)
					require.False(t, ok, "tollgate revealed the content of %s (%s) outside xDS", file, form.Name)
				}
			})
		}
	}
	require.NotZero(t, checked, "no example ships a secret; the hygiene test checks nothing")
	require.NotZero(t, delivered, "no secret was delivered: the positive check checked nothing")
}
