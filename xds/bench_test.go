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

func benchConfig(b *testing.B, n int) *model.Config {
	b.Helper()
	objs := decodeGenerated(b, n)
	cfg, errs := model.BuildConfig(objs, model.Settings{})
	require.Empty(b, errs)
	return cfg
}

// decodeGenerated decodes a generated policy set of n routes, kept in
// files of at most 1 MiB as policy files must be.
func decodeGenerated(b *testing.B, n int) []model.Object {
	b.Helper()
	scheme := policies.NewScheme()
	var objs []model.Object
	for _, f := range modeltest.GenerateFiles(n) {
		o, errs := scheme.Decode(f.Name, f.Data)
		require.Empty(b, errs)
		objs = append(objs, o...)
	}
	return objs
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
