package translate_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/model/modeltest"
	"github.com/tollgate-dev/tollgate/policies"
	"github.com/tollgate-dev/tollgate/store"
	"github.com/tollgate-dev/tollgate/translate"
	"github.com/tollgate-dev/tollgate/translate/translatetest"
)

// requireSameOutput checks that two outputs hold equal resources.
func requireSameOutput(t *testing.T, want, got *translate.Output, what string) {
	t.Helper()
	require.Len(t, got.Gateways, len(want.Gateways), what)
	for i, w := range want.Gateways {
		g := got.Gateways[i]
		require.Equal(t, w.Key, g.Key, what)
		wa, ga := w.All(), g.All()
		require.Len(t, ga, len(wa), "%s: gateway %s", what, w.Key)
		for j := range wa {
			require.True(t, proto.Equal(wa[j], ga[j]), "%s: gateway %s: resource %d differs", what, w.Key, j)
		}
		require.Equal(t, w.Requirements, g.Requirements, what)
		require.True(t, proto.Equal(w.RateLimitConfig, g.RateLimitConfig), what)
	}
}

// TestTranslateIncrementalIsTranslate: reusing the previous output gives
// exactly what a full translation gives, on every golden input and
// example (built twice, so no object is shared), and on a policy set where
// one gateway of three changed, whose other two are reused as they were.
func TestTranslateIncrementalIsTranslate(t *testing.T) {
	checked := 0
	for _, dir := range goldenAndExampleConfigs(t) {
		prevCfg, cfg := dir.build(t), dir.build(t)
		prev, err := translate.Translate(prevCfg)
		require.NoError(t, err)
		full, err := translate.Translate(cfg)
		require.NoError(t, err)
		inc, err := translate.TranslateIncremental(cfg, prevCfg, prev)
		require.NoError(t, err)
		requireSameOutput(t, full, inc, dir.name)
		checked++
	}
	require.NotZero(t, checked)

	before := modeltest.GenerateGateways(3, 5, "600s")
	after := append([]modeltest.File(nil), before...)
	after[1] = modeltest.GatewayFile(1, 5, "601s")
	prevCfg, cfg := translatetest.BuildFiles(t, before), translatetest.BuildFiles(t, after)
	// Unchanged files share their objects, as the store's file cache does.
	prev, err := translate.Translate(prevCfg)
	require.NoError(t, err)
	inc, err := translate.TranslateIncremental(cfg, prevCfg, prev)
	require.NoError(t, err)
	full, err := translate.Translate(cfg)
	require.NoError(t, err)
	requireSameOutput(t, full, inc, "one gateway changed")
	require.False(t, proto.Equal(prev.Gateways[1].Routes[0], inc.Gateways[1].Routes[0]), "the changed gateway is translated again")
	// The unchanged gateways' resources are the very same messages.
	require.Same(t, prev.Gateways[0].Routes[0], inc.Gateways[0].Routes[0])
	require.Same(t, prev.Gateways[2].Clusters[0], inc.Gateways[2].Clusters[0])
}

// namedConfig builds one golden input or example.
type namedConfig struct {
	name  string
	build func(t *testing.T) *model.Config
}

// goldenAndExampleConfigs are every valid golden input and every example.
func goldenAndExampleConfigs(t *testing.T) []namedConfig {
	var out []namedConfig
	inputs, err := filepath.Glob("testdata/in/*.yaml")
	require.NoError(t, err)
	for _, in := range inputs {
		if _, errs := loadCase(t, in); len(errs) > 0 {
			continue
		}
		out = append(out, namedConfig{in, func(t *testing.T) *model.Config {
			cfg, errs := loadCase(t, in)
			require.Empty(t, errs)
			return cfg
		}})
	}
	examples, err := translatetest.ExampleDirs("../examples")
	require.NoError(t, err)
	for _, dir := range examples {
		out = append(out, namedConfig{dir, func(t *testing.T) *model.Config {
			var cfg *model.Config
			st, err := store.New(store.Options{Accept: func(c *model.Config) error { cfg = c; return nil }})
			require.NoError(t, err)
			require.NoError(t, store.NewFileSource(dir, policies.NewScheme(), nil).Sync(st), dir)
			return cfg
		}})
	}
	return out
}

// TestReusedGatewayKeepsItsRequirements: a reused gateway keeps the
// version requirements of its last translation, which name the policy that
// asked; renaming the gateway's DNSPolicy (same settings) changes the
// gateway's resolved configuration, so it is translated again and its
// requirements name the new policy, as a full translation does.
func TestReusedGatewayKeepsItsRequirements(t *testing.T) {
	in, err := os.ReadFile("testdata/in/dns-min-refresh-rate.yaml")
	require.NoError(t, err)
	build := func(data []byte) *model.Config {
		objs, errs := policies.NewScheme().Decode("dns.yaml", data)
		require.Empty(t, errs)
		cfg, err := store.New(store.Options{})
		require.NoError(t, err)
		c, err := cfg.Replace("test", objs, nil)
		require.NoError(t, err)
		return c
	}
	names := func(out *translate.Output, key string) []string {
		for _, g := range out.Gateways {
			if g.Key == key {
				var objects []string
				for _, r := range g.Requirements {
					objects = append(objects, r.Object)
				}
				return objects
			}
		}
		t.Fatalf("no gateway %s", key)
		return nil
	}
	prevCfg := build(in)
	prev, err := translate.Translate(prevCfg)
	require.NoError(t, err)
	require.Contains(t, names(prev, "egress"), "DNSPolicy/egress-defaults")

	same, err := translate.TranslateIncremental(build(in), prevCfg, prev)
	require.NoError(t, err)
	for i := range prev.Gateways {
		require.Same(t, prev.Gateways[i].Routes[0], same.Gateways[i].Routes[0], "%s is reused", prev.Gateways[i].Key)
		require.Equal(t, prev.Gateways[i].Requirements, same.Gateways[i].Requirements)
	}

	renamed := build(bytes.ReplaceAll(in, []byte("name: egress-defaults"), []byte("name: egress-dns")))
	inc, err := translate.TranslateIncremental(renamed, prevCfg, prev)
	require.NoError(t, err)
	full, err := translate.Translate(renamed)
	require.NoError(t, err)
	requireSameOutput(t, full, inc, "DNSPolicy renamed")
	require.Contains(t, names(inc, "egress"), "DNSPolicy/egress-dns")
	require.NotContains(t, names(inc, "egress"), "DNSPolicy/egress-defaults")
}
