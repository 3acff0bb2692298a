package translate_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/model/modeltest"
	"github.com/tollgate-dev/tollgate/policies"
	"github.com/tollgate-dev/tollgate/translate"
)

var benchSizes = []int{100, 1000, 10000}

func benchConfig(b *testing.B, routes int) *model.Config {
	b.Helper()
	objs, errs := policies.NewScheme().Decode("bench.yaml", modeltest.GenerateYAML(routes))
	require.Empty(b, errs)
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
			data := modeltest.GenerateYAML(n)
			scheme := policies.NewScheme()
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				objs, errs := scheme.Decode("bench.yaml", data)
				if len(errs) > 0 {
					b.Fatal(errs)
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
