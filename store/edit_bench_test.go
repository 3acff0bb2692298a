package store_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/tollgate-dev/tollgate/model/modeltest"
	"github.com/tollgate-dev/tollgate/policies"
	"github.com/tollgate-dev/tollgate/store"
	"github.com/tollgate-dev/tollgate/xds"
)

// BenchmarkEdit is one edit of one gateway's policy file, end to end as
// tollgate serve runs it (without the file watch): the changed file
// decoded, everything resolved and lowered, translated, checked against
// Envoy's constraints and published. Every gateway has 100 routes in a
// file of its own; the edit changes one route timeout of gateway 0. With
// 100 gateways (10,000 routes), an edit should cost close to what it costs
// with one.
func BenchmarkEdit(b *testing.B) {
	const routes = 100
	for _, gateways := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("gateways=%d/routes=%d", gateways, gateways*routes), func(b *testing.B) {
			dir := b.TempDir()
			for _, f := range modeltest.GenerateGateways(gateways, routes, "600s") {
				write(b, filepath.Join(dir, f.Name), string(f.Data))
			}
			srv := xds.NewServer(context.Background(), xds.Options{})
			st, err := store.New(store.Options{Accept: srv.Apply})
			if err != nil {
				b.Fatal(err)
			}
			src := store.NewFileSource(dir, policies.NewScheme(), nil)
			if err := src.Start(st); err != nil {
				b.Fatal(err)
			}
			timeouts := []string{"601s", "602s"}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				f := modeltest.GatewayFile(0, routes, timeouts[i%2])
				if err := os.WriteFile(filepath.Join(dir, f.Name), f.Data, 0o644); err != nil {
					b.Fatal(err)
				}
				if err := src.Sync(st); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
