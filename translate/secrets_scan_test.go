package translate_test

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/tollgate-dev/tollgate/policies"
	"github.com/tollgate-dev/tollgate/store"
	"github.com/tollgate-dev/tollgate/translate"
	"github.com/tollgate-dev/tollgate/translate/translatetest"
)

// goldenSecrets are the secret files the golden inputs read: API keys,
// client secrets, AWS keys and private keys, by absolute path.
func goldenSecrets(t *testing.T) map[string][]byte {
	t.Helper()
	files, err := filepath.Glob("testdata/in/secrets/*")
	require.NoError(t, err)
	keys, err := filepath.Glob("testdata/in/certs/*.key")
	require.NoError(t, err)
	require.NotEmpty(t, keys, "no private key among the golden inputs")
	out := map[string][]byte{}
	for _, f := range append(files, keys...) {
		data, err := os.ReadFile(f)
		require.NoError(t, err)
		abs, err := filepath.Abs(f)
		require.NoError(t, err)
		out[abs] = data
	}
	return out
}

// wire is everything a resource can reveal: its binary form (which holds
// the raw bytes of every field, also inside Anys) and its protojson form
// (which writes bytes fields as base64).
func wire(t *testing.T, m proto.Message) string {
	t.Helper()
	bin, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	require.NoError(t, err)
	js, err := protojson.Marshal(m)
	require.NoError(t, err)
	return string(bin) + "\n" + string(js)
}

// TestSecretsStayInTheirSDSResource translates every golden case,
// unredacted, and checks that each secret file a case reads is in the
// SDS resources of the output (so the scan can see it), and in nothing
// else: not in a listener, route, endpoint or — except the static AWS keys
// Envoy's SigV4 signer only takes inline — a cluster.
func TestSecretsStayInTheirSDSResource(t *testing.T) {
	secrets := goldenSecrets(t)
	inputs, err := filepath.Glob("testdata/in/*.yaml")
	require.NoError(t, err)
	delivered := map[string]bool{}
	for _, in := range inputs {
		data, err := os.ReadFile(in)
		require.NoError(t, err)
		objs, errs := policies.NewScheme().Decode(in, data)
		st, err := store.New(store.Options{DNS: goldenVerifier()})
		require.NoError(t, err)
		cfg, err := st.Replace("golden", objs, errs)
		if err != nil {
			continue // an error golden: nothing is served
		}
		out, err := translate.Translate(cfg)
		require.NoError(t, err, in)
		var sds, inline, elsewhere strings.Builder
		for _, g := range out.Gateways {
			for _, s := range g.Secrets {
				sds.WriteString(wire(t, s))
			}
			for _, c := range g.Clusters {
				if g.InlineSecrets {
					inline.WriteString(wire(t, c))
				} else {
					elsewhere.WriteString(wire(t, c))
				}
			}
			for _, m := range append(append(asMessages(g.Listeners), asMessages(g.Routes)...), asMessages(g.Endpoints)...) {
				elsewhere.WriteString(wire(t, m))
			}
		}
		for _, path := range st.MaterialFiles() {
			value, ok := secrets[path]
			if !ok {
				continue // a CA bundle or certificate: public
			}
			_, inSDS := translatetest.FindSecret(sds.String(), value)
			_, inCluster := translatetest.FindSecret(inline.String(), value)
			require.True(t, inSDS || inCluster, "%s reads %s but its output does not carry it where it belongs: the scans below would be vacuous", in, path)
			delivered[path] = true
			form, leaked := translatetest.FindSecret(elsewhere.String(), value)
			require.False(t, leaked, "%s: %s is in a listener, route, endpoint or cluster (%s)", in, path, form.Name)
		}
	}
	var names []string
	for p := range delivered {
		names = append(names, filepath.Base(p))
	}
	sort.Strings(names)
	t.Logf("secrets checked: %v", names)
	for _, want := range []string{"openai.key", "oauth-client.secret", "aws-secret-access-key", "client.key"} {
		require.Contains(t, names, want, "no accepted golden case delivers %s: the check lost its subject", want)
	}
}

// TestGoldensHoldNoSecret checks every golden output file for every secret
// file of the golden inputs (private keys included), in every encoding
// tollgate's outputs use (see translatetest.SecretForms). It first checks
// that the scan finds each secret in the unredacted output of a case that
// reads it, so that it cannot pass by looking for the wrong thing.
func TestGoldensHoldNoSecret(t *testing.T) {
	secrets := goldenSecrets(t)
	outputs, err := filepath.Glob("testdata/out/*")
	require.NoError(t, err)
	require.NotEmpty(t, outputs)

	// Non-vacuous: the unredacted rendering of each case holds each secret
	// it reads, as the goldens would without Redact.
	inputs, err := filepath.Glob("testdata/in/*.yaml")
	require.NoError(t, err)
	found := map[string]bool{}
	for _, in := range inputs {
		cfg, errs := loadCase(t, in)
		if len(errs) > 0 {
			continue
		}
		out, err := translate.Translate(cfg)
		require.NoError(t, err)
		var unredacted strings.Builder
		for _, g := range out.Gateways {
			for _, m := range g.All() {
				js, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
				require.NoError(t, err)
				unredacted.Write(js)
			}
		}
		for path, value := range secrets {
			if _, ok := translatetest.FindSecret(unredacted.String(), value); ok {
				found[path] = true
			}
		}
	}
	require.NotEmpty(t, found, "no secret is in any unredacted output: the scan looks for the wrong thing")

	checked := 0
	for _, o := range outputs {
		data, err := os.ReadFile(o)
		require.NoError(t, err)
		for path, value := range secrets {
			checked++
			form, ok := translatetest.FindSecret(string(data), value)
			require.False(t, ok, "%s reveals the content of %s (%s)", o, path, form.Name)
		}
	}
	t.Logf("%d golden files × %d secrets scanned; %d secrets seen in unredacted output", len(outputs), len(secrets), len(found))
	require.NotZero(t, checked)
}
