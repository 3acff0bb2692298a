package store_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/policies"
	"github.com/tollgate-dev/tollgate/store"
	"github.com/tollgate-dev/tollgate/xds"
)

// BenchmarkAPIWrite measures one write through the API source with n
// other API routes: decoding, validating and lowering everything,
// translating, checking and publishing (the xDS server's Apply), and the
// bbolt commit with its fsync. The fsync depends on the disk: compare the
// figures of one machine only.
func BenchmarkAPIWrite(b *testing.B) {
	for _, n := range benchRoutes {
		b.Run(fmt.Sprintf("routes=%d", n), func(b *testing.B) {
			dir := b.TempDir()
			write(b, filepath.Join(dir, "gw.yaml"), gateway+"---\n"+backend("openai"))
			srv := xds.NewServer(context.Background(), xds.Options{})
			st, err := store.New(store.Options{Accept: srv.Apply})
			if err != nil {
				b.Fatal(err)
			}
			bk, err := store.OpenBolt(filepath.Join(b.TempDir(), "tollgate.db"))
			if err != nil {
				b.Fatal(err)
			}
			defer bk.Close()
			scheme := policies.NewScheme()
			api := store.NewAPISource(bk, st, scheme, nil)
			if err := api.Load(context.Background()); err != nil {
				b.Fatal(err)
			}
			if err := store.NewFileSource(dir, scheme, nil).Start(st); err != nil {
				b.Fatal(err)
			}
			put := func(name, host string) {
				_, err := api.Write(context.Background(), store.WriteRequest{Verb: "apply", Who: "bench",
					Ref:  model.Ref{Kind: "HTTPRoute", Namespace: "default", Name: name},
					Body: []byte(routeYAML("default", name, "openai", host))})
				if err != nil {
					b.Fatal(err)
				}
			}
			for i := range n {
				put(fmt.Sprintf("r-%04d", i), fmt.Sprintf("r%d.llm.internal", i))
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				put("r-0000", fmt.Sprintf("v%d.llm.internal", i))
			}
		})
	}
}

// benchRoutes are the API route counts BenchmarkAPIWrite measures.
var benchRoutes = []int{10, 100, 300}
