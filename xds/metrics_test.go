package xds_test

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/tollgate-dev/tollgate/xds"
	"github.com/tollgate-dev/tollgate/xds/envoysim"
)

// gathered is the value of a counter, or a histogram's sample count, of
// the series with exactly these labels; 0 if it does not exist.
func gathered(t *testing.T, m *xds.Metrics, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := m.Registry().Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	next:
		for _, s := range f.GetMetric() {
			if len(s.GetLabel()) != len(labels) {
				continue
			}
			for _, l := range s.GetLabel() {
				if labels[l.GetName()] != l.GetValue() {
					continue next
				}
			}
			if s.Histogram != nil {
				return float64(s.GetHistogram().GetSampleCount())
			}
			return s.GetCounter().GetValue()
		}
	}
	return 0
}

func firstTimeout(m proto.Message) time.Duration {
	rc, _ := m.(*routev3.RouteConfiguration)
	return rc.GetVirtualHosts()[0].GetRoutes()[0].GetRoute().GetTimeout().AsDuration()
}

// TestConvergenceMetrics holds one Envoy's ACK to show that convergence
// waits for every node connected at publication, drops one that
// disconnects, and counts a wait a newer publication cut short.
func TestConvergenceMetrics(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	m := xds.NewMetrics()
	s := xds.NewServer(ctx, xds.Options{Metrics: m})
	require.NoError(t, s.Apply(configWithTimeout(t, 2, "600s")))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(ctx, lis) }()
	t.Cleanup(func() { cancel(); <-done })

	// holder makes an Envoy stop, before answering, at the route
	// configuration of timeout at, once armed, until release is closed.
	type holder struct {
		armed   atomic.Bool
		held    chan struct{}
		release chan struct{}
	}
	newHolder := func(at time.Duration) (*holder, func(string, proto.Message) error) {
		h := &holder{held: make(chan struct{}, 1), release: make(chan struct{})}
		return h, func(typeURL string, msg proto.Message) error {
			if typeURL == resourcev3.RouteType && h.armed.Load() && firstTimeout(msg) == at {
				h.held <- struct{}{}
				<-h.release
			}
			return nil
		}
	}
	client := func(node string, reject func(string, proto.Message) error) *envoysim.Client {
		c, err := envoysim.New(ctx, lis.Addr().String(), envoysim.Options{
			NodeID: node, Gateway: "egress", Reject: reject,
			DialOptions: []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())},
		})
		require.NoError(t, err)
		t.Cleanup(c.Close)
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		defer wcancel()
		_, err = c.WaitFor(wctx, func(s envoysim.State) bool { return len(s.Names(resourcev3.RouteType)) == 1 })
		require.NoError(t, err)
		return c
	}
	waitFor := func(c *envoysim.Client, timeout time.Duration) {
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		defer wcancel()
		_, err := c.WaitFor(wctx, func(s envoysim.State) bool {
			rc, ok := s.Resources[resourcev3.RouteType]["route/http"]
			return ok && firstTimeout(rc) == timeout
		})
		require.NoError(t, err)
	}
	waitHeld := func(h *holder) {
		select {
		case <-h.held:
		case <-time.After(10 * time.Second):
			t.Fatal("the held Envoy never got the change")
		}
	}
	converged := map[string]string{"gateway": "egress"}

	a := client("a", nil)
	hb, hold := newHolder(601 * time.Second)
	b := client("b", hold)

	// b holds its ACK: a's alone does not converge the gateway.
	hb.armed.Store(true)
	require.NoError(t, s.Apply(configWithTimeout(t, 2, "601s")))
	waitFor(a, 601*time.Second)
	waitHeld(hb)
	require.Zero(t, gathered(t, m, "tollgate_convergence_seconds", converged))

	// b disconnects: it leaves the wait, which ends.
	go b.Close()
	require.Eventually(t, func() bool { return gathered(t, m, "tollgate_convergence_seconds", converged) == 1 }, 10*time.Second, 5*time.Millisecond)
	close(hb.release)

	// c holds 602s while 603s is published: its wait for 602s is cut
	// short (a's too, if it had not ACKed yet); 603s then converges.
	hc, hold := newHolder(602 * time.Second)
	c := client("c", hold)
	hc.armed.Store(true)
	require.NoError(t, s.Apply(configWithTimeout(t, 2, "602s")))
	waitHeld(hc)
	require.NoError(t, s.Apply(configWithTimeout(t, 2, "603s")))
	require.GreaterOrEqual(t, gathered(t, m, "tollgate_convergence_incomplete_total", map[string]string{"gateway": "egress", "reason": "superseded"}), 1.0)
	close(hc.release)
	waitFor(a, 603*time.Second)
	waitFor(c, 603*time.Second)
	require.Eventually(t, func() bool { return gathered(t, m, "tollgate_convergence_seconds", converged) == 2 }, 10*time.Second, 5*time.Millisecond)
}
