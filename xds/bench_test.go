package xds_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/model/modeltest"
	"github.com/tollgate-dev/tollgate/policies"
	"github.com/tollgate-dev/tollgate/xds"
)

// BenchmarkApply measures what every accepted policy change costs before
// Envoys are told: translate, the deep check of Envoy's constraints, content
// hashing and setting the snapshot.
func BenchmarkApply(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprintf("routes=%d", n), func(b *testing.B) {
			objs, errs := policies.NewScheme().Decode("bench.yaml", modeltest.GenerateYAML(n))
			require.Empty(b, errs)
			cfg, errs := model.BuildConfig(objs, model.Settings{})
			require.Empty(b, errs)
			s := xds.NewServer(context.Background(), xds.Options{})
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if err := s.Apply(cfg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
