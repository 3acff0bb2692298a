package xds_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/model/modeltest"
	"github.com/tollgate-dev/tollgate/translate/translatetest"
	"github.com/tollgate-dev/tollgate/xds"
)

func benchConfig(b *testing.B, n int) *model.Config {
	b.Helper()
	objs := translatetest.DecodeFiles(b, modeltest.GenerateFiles(n))
	cfg, errs := model.BuildConfig(objs, model.Settings{})
	require.Empty(b, errs)
	return cfg
}

// BenchmarkApply measures a first publication: translate, the deep check
// of Envoy's constraints on every resource, content hashing and setting the
// snapshot.
func BenchmarkApply(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprintf("routes=%d", n), func(b *testing.B) {
			cfg := benchConfig(b, n)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				s := xds.NewServer(context.Background(), xds.Options{})
				if err := s.Apply(cfg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkReapply measures what a policy change costs once tollgate runs:
// resources that passed the deep check before are not checked again.
func BenchmarkReapply(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprintf("routes=%d", n), func(b *testing.B) {
			cfg := benchConfig(b, n)
			s := xds.NewServer(context.Background(), xds.Options{})
			require.NoError(b, s.Apply(cfg))
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
