package translate_test

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/policies"
	"github.com/tollgate-dev/tollgate/store"
	"github.com/tollgate-dev/tollgate/translate"
	"github.com/tollgate-dev/tollgate/translate/translatetest"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/out and remove orphans")

// loadCase decodes, resolves and lowers one input file the way tollgate
// serve does, through the store (which also reads the files policies refer
// to, and answers reverse-DNS checks from goldenDNS). Violations name the
// file relative to testdata/in.
func loadCase(t testing.TB, file string) (*model.Config, model.Violations) {
	t.Helper()
	data, err := os.ReadFile(file)
	require.NoError(t, err)
	objs, errs := policies.NewScheme().Decode(file, data)
	st, err := store.New(store.Options{DNS: goldenVerifier(), Now: goldenNow})
	require.NoError(t, err)
	cfg, err := st.Replace("golden", objs, errs)
	if err != nil {
		vs, ok := model.AsViolations(err)
		require.True(t, ok, "%v", err)
		for i := range vs {
			vs[i].File = strings.TrimPrefix(vs[i].File, "testdata/in/")
			vs[i].Msg = strings.ReplaceAll(vs[i].Msg, "testdata/in/", "")
		}
		return nil, vs
	}
	return cfg, nil
}

// TestGolden translates every testdata/in/*.yaml and compares each resource
// kind with testdata/out/<case>.<kind>.yaml, and the status conditions with
// testdata/out/<case>.conditions.yaml, and what each gateway needs of a
// newer Envoy with testdata/out/<case>.requirements.yaml; inputs that must
// be rejected are compared with testdata/out/<case>.errors.txt instead.
func TestGolden(t *testing.T) {
	inputs, err := filepath.Glob("testdata/in/*.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, inputs)
	want := map[string]bool{}
	ran := 0 // cases that ran to the end
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".yaml")
		t.Run(name, func(t *testing.T) {
			defer func() {
				if !t.Failed() && !t.Skipped() {
					ran++
				}
			}()
			files := map[string][]byte{}
			cfg, errs := loadCase(t, in)
			if len(errs) > 0 {
				files[name+".errors.txt"] = []byte(errs.Error() + "\n")
			} else {
				out, err := translate.Translate(cfg)
				require.NoError(t, err)
				require.NoError(t, out.Validate(), "Envoy would reject the output")
				for kind, data := range render(t, out) {
					files[name+"."+kind+".yaml"] = data
				}
				if len(cfg.Conditions) > 0 {
					data, err := yaml.Marshal(cfg.Conditions)
					require.NoError(t, err)
					files[name+".conditions.yaml"] = data
				}
				reqs := map[string][]translate.Requirement{}
				for _, g := range out.Gateways {
					if len(g.Requirements) > 0 {
						reqs[g.Key] = g.Requirements
					}
				}
				if len(reqs) > 0 {
					data, err := yaml.Marshal(reqs)
					require.NoError(t, err)
					files[name+".requirements.yaml"] = data
				}
			}
			for f, got := range files {
				want[f] = true
				path := filepath.Join("testdata/out", f)
				if *update {
					require.NoError(t, os.WriteFile(path, got, 0o644))
					continue
				}
				exp, err := os.ReadFile(path)
				require.NoError(t, err, "missing golden file; run go test ./translate -update")
				require.Equal(t, string(exp), string(got), "%s differs; run go test ./translate -update and review the diff", path)
			}
		})
	}
	// Orphans are only judged when every case ran to the end: with a -run
	// that selects some cases, the outputs of the others are not orphans,
	// and a case that failed may not have listed all of its files. The
	// subtests that ran decide, not the flag: -run TestGolden runs them all.
	if ran != len(inputs) {
		if ran > 0 && !t.Failed() {
			t.Logf("orphaned goldens not checked: %d of %d cases ran", ran, len(inputs))
		}
		return
	}
	existing, err := filepath.Glob("testdata/out/*")
	require.NoError(t, err)
	for _, f := range existing {
		if want[filepath.Base(f)] {
			continue
		}
		if *update {
			require.NoError(t, os.Remove(f))
			continue
		}
		t.Errorf("orphaned golden file %s: run go test ./translate -update", f)
	}
}

// render turns the output into one YAML document per resource kind, each a
// map from gateway key to that gateway's resources.
func render(t testing.TB, out *translate.Output) map[string][]byte {
	t.Helper()
	kinds := map[string]map[string][]any{}
	add := func(kind, gw string, msgs ...proto.Message) {
		if len(msgs) == 0 {
			return
		}
		if kinds[kind] == nil {
			kinds[kind] = map[string][]any{}
		}
		for _, m := range msgs {
			kinds[kind][gw] = append(kinds[kind][gw], toPlain(t, translatetest.Redact(m)))
		}
	}
	for _, g := range out.Gateways {
		add("listeners", g.Key, asMessages(g.Listeners)...)
		add("routes", g.Key, asMessages(g.Routes)...)
		add("clusters", g.Key, asMessages(g.Clusters)...)
		add("endpoints", g.Key, asMessages(g.Endpoints)...)
		add("secrets", g.Key, asMessages(g.Secrets)...)
		if g.RateLimitConfig != nil {
			add("ratelimit", g.Key, g.RateLimitConfig)
		}
	}
	files := map[string][]byte{}
	for kind, byGW := range kinds {
		data, err := yaml.Marshal(byGW)
		require.NoError(t, err)
		files[kind] = data
	}
	return files
}

func asMessages[T proto.Message](in []T) []proto.Message {
	out := make([]proto.Message, len(in))
	for i, m := range in {
		out[i] = m
	}
	return out
}

func toPlain(t testing.TB, m proto.Message) any {
	t.Helper()
	js, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	require.NoError(t, err)
	var v any
	require.NoError(t, yaml.Unmarshal(js, &v))
	return v
}
