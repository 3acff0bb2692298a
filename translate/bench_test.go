package translate_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/model/modeltest"
	"github.com/tollgate-dev/tollgate/policies"
	"github.com/tollgate-dev/tollgate/store"
	"github.com/tollgate-dev/tollgate/translate"
	"github.com/tollgate-dev/tollgate/translate/translatetest"
)

var benchSizes = []int{100, 1000, 10000}

func benchConfig(b *testing.B, routes int) *model.Config {
	b.Helper()
	objs := translatetest.DecodeFiles(b, modeltest.GenerateFiles(routes))
	cfg, errs := model.BuildConfig(objs, model.Settings{})
	require.Empty(b, errs)
	return cfg
}

// BenchmarkTranslate measures model.Config → Envoy resources.
func BenchmarkTranslate(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("routes=%d", n), func(b *testing.B) {
			cfg := benchConfig(b, n)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := translate.Translate(cfg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkValidate measures the deep check of Envoy's constraints that
// tollgate runs on every output before serving it.
func BenchmarkValidate(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("routes=%d", n), func(b *testing.B) {
			out, err := translate.Translate(benchConfig(b, n))
			require.NoError(b, err)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if err := out.Validate(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecodeAndResolve measures YAML → validated, resolved Config.
func BenchmarkDecodeAndResolve(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("routes=%d", n), func(b *testing.B) {
			files := modeltest.GenerateFiles(n)
			scheme := policies.NewScheme()
			var size int64
			for _, f := range files {
				size += int64(len(f.Data))
			}
			b.SetBytes(size)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				var objs []model.Object
				for _, f := range files {
					o, errs := scheme.Decode(f.Name, f.Data)
					if len(errs) > 0 {
						b.Fatal(errs)
					}
					objs = append(objs, o...)
				}
				if _, errs := model.BuildConfig(objs, model.Settings{}); len(errs) > 0 {
					b.Fatal(errs)
				}
			}
		})
	}
}

// TestGeneratedPolicyIsValid keeps the benchmark input honest: it must
// translate into configuration Envoy accepts.
func TestGeneratedPolicyIsValid(t *testing.T) {
	objs, errs := policies.NewScheme().Decode("bench.yaml", modeltest.GenerateYAML(20))
	require.Empty(t, errs)
	cfg, errs := model.BuildConfig(objs, model.Settings{})
	require.Empty(t, errs)
	out, err := translate.Translate(cfg)
	require.NoError(t, err)
	require.NoError(t, out.Validate())
	g := out.Gateway("egress")
	require.Len(t, g.Clusters, 20)
	require.Len(t, g.Endpoints, 2)
}

// guardRailsDoc is a gateway-wide GuardRailsPolicy with every content
// field: on every route it adds refusal routes before the route, and the
// body filters to the listener.
const guardRailsDoc = `apiVersion: tollgate.dev/v1alpha1
kind: GuardRailsPolicy
metadata: {name: org}
spec:
  targetRefs: [{kind: Gateway, name: egress}]
  models:
    deny: [{value: gpt-4-32k}, {type: Prefix, value: claude-3-opus}]
  prompts: {deny: ['(?i)ignore previous instructions', 'sk-[a-z]{8}']}
  maxOutputTokens: {limit: 16384}
  maxRequestBodySize: 8Mi
`

// BenchmarkTranslateGuardRails is BenchmarkTranslate with content guard
// rails on every route: what the refusal routes cost.
func BenchmarkTranslateGuardRails(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("routes=%d", n), func(b *testing.B) {
			objs := translatetest.DecodeFiles(b, modeltest.GenerateFiles(n))
			extra, errs := policies.NewScheme().Decode("guardrails.yaml", []byte(guardRailsDoc))
			require.Empty(b, errs)
			st, err := store.New(store.Options{}) // lowers the policies, as serve does
			require.NoError(b, err)
			cfg, err := st.Replace("bench", append(objs, extra...), nil)
			require.NoError(b, err)
			require.NotNil(b, cfg.Gateways[0].GuardRails)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := translate.Translate(cfg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
