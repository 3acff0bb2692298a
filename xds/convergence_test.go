package xds_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/model/modeltest"
	"github.com/tollgate-dev/tollgate/policies"
	"github.com/tollgate-dev/tollgate/xds"
	"github.com/tollgate-dev/tollgate/xds/envoysim"
)

// fleet is a real xDS server on loopback with n Envoy-like clients of one
// gateway connected and holding the full configuration.
type fleet struct {
	server  *xds.Server
	clients []*envoysim.Client
}

func configWithTimeout(tb testing.TB, routes int, timeout string) *model.Config {
	tb.Helper()
	src := strings.ReplaceAll(string(modeltest.GenerateYAML(routes)), "timeouts: {request: 600s}", "timeouts: {request: "+timeout+"}")
	objs, errs := policies.NewScheme().Decode("fleet.yaml", []byte(src))
	require.Empty(tb, errs)
	cfg, errs := model.BuildConfig(objs, model.Settings{})
	require.Empty(tb, errs)
	return cfg
}

func startFleet(tb testing.TB, n, routes int, skipValidation bool) *fleet {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := xds.NewServer(ctx, xds.Options{})
	require.NoError(tb, s.Apply(configWithTimeout(tb, routes, "600s")))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(tb, err)
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(ctx, lis) }()
	f := &fleet{server: s}
	tb.Cleanup(func() {
		for _, c := range f.clients {
			c.Close()
		}
		cancel()
		<-done
	})
	var mu sync.Mutex
	var wg sync.WaitGroup
	errc := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := envoysim.New(ctx, lis.Addr().String(), envoysim.Options{
				NodeID: fmt.Sprintf("envoy-%d", i), Gateway: "egress", Delta: i%2 == 1, SkipValidation: skipValidation,
				DialOptions: []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())},
			})
			if err != nil {
				errc <- err
				return
			}
			mu.Lock()
			f.clients = append(f.clients, c)
			mu.Unlock()
			wctx, wcancel := context.WithTimeout(ctx, 2*time.Minute)
			defer wcancel()
			_, err = c.WaitFor(wctx, func(s envoysim.State) bool { return len(s.Names(resourcev3.RouteType)) == 1 })
			errc <- err
		}()
	}
	wg.Wait()
	for range n {
		require.NoError(tb, <-errc)
	}
	return f
}

// converge applies cfg and waits until every client holds a route
// configuration whose first route has the timeout.
func (f *fleet) converge(tb testing.TB, cfg *model.Config, timeout time.Duration) {
	tb.Helper()
	require.NoError(tb, f.server.Apply(cfg))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, len(f.clients))
	for _, c := range f.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.WaitFor(ctx, func(s envoysim.State) bool {
				rc, ok := envoysim.Get[*routev3.RouteConfiguration](s, "route/http")
				return ok && rc.GetVirtualHosts()[0].GetRoutes()[0].GetRoute().GetTimeout().AsDuration() == timeout
			})
			errc <- err
		}()
	}
	wg.Wait()
	for range f.clients {
		require.NoError(tb, <-errc)
	}
}

// BenchmarkConvergence measures, for a fleet of Envoy-like clients of one
// gateway (half SotW, half Delta) on loopback, the time from a policy change
// being applied to every client holding it. The clients run in the same
// process on the same cores; they skip the deep check of each response so
// that their CPU does not swamp tollgate's (translation, validation and
// delivery are all in the figure).
func BenchmarkConvergence(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("envoys=%d/routes=100", n), func(b *testing.B) {
			f := startFleet(b, n, 100, true)
			cfgs := []*model.Config{configWithTimeout(b, 100, "601s"), configWithTimeout(b, 100, "602s")}
			b.ResetTimer()
			for i := range b.N {
				f.converge(b, cfgs[i%2], time.Duration(601+i%2)*time.Second)
			}
		})
	}
}

// TestFleetConverges is the small, always-run version: 20 clients of both
// protocols receive a change.
func TestFleetConverges(t *testing.T) {
	if testing.Short() {
		t.Skip("a load test (a fleet of 20 clients); skipped with -short")
	}
	f := startFleet(t, 20, 20, false)
	f.converge(t, configWithTimeout(t, 20, "601s"), 601*time.Second)
}
