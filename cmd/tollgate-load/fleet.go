package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/tollgate-dev/tollgate/xds/envoysim"
)

// fleet is N simulated Envoys and, for each, when it accepted each edit's
// route configuration.
type fleet struct {
	clients []*envoysim.Client
	delta   int
	// edited[i] says whether the edits change client i's gateway.
	edited []bool
	// got[i][k] is the time (Unix nanoseconds) client i accepted edit k;
	// 0 until then.
	got [][]atomic.Int64
	// remaining[k] counts the clients still without edit k; done[k] is
	// closed when it reaches 0.
	mu        sync.Mutex
	remaining []int
	done      []chan struct{}
	// first[i] is closed when client i holds the initial configuration.
	first []chan struct{}
	// failed is closed when a stream ends while the fleet runs.
	failed   chan struct{}
	failOnce sync.Once
	failErr  error
	closing  atomic.Bool
}

// newFleet prepares the record of a fleet of n clients and edits edits,
// which change the gateways of the clients edited says.
func newFleet(n, edits int, edited func(i int) bool) *fleet {
	f := &fleet{got: make([][]atomic.Int64, n), remaining: make([]int, edits+1), done: make([]chan struct{}, edits+1), failed: make(chan struct{})}
	f.first = make([]chan struct{}, n)
	f.edited = make([]bool, n)
	changed := 0
	for i := range f.got {
		f.got[i] = make([]atomic.Int64, edits+1)
		f.first[i] = make(chan struct{})
		if f.edited[i] = edited(i); f.edited[i] {
			changed++
		}
	}
	for k := range f.done {
		f.remaining[k] = changed
		if k == 0 {
			f.remaining[k] = n
		}
		f.done[k] = make(chan struct{})
		if f.remaining[k] == 0 {
			close(f.done[k])
		}
	}
	return f
}

// observe is each client's view of every resource it accepts (the
// envoysim Reject hook, called as a response is accepted and before it is
// ACKed): a route configuration that holds edit k records its arrival.
func (f *fleet) observe(i int) func(string, proto.Message) error {
	return func(typeURL string, m proto.Message) error {
		if typeURL != resource.RouteType {
			return nil
		}
		k := editOf(m.(*routev3.RouteConfiguration))
		if k < 0 || k >= len(f.done) {
			return nil
		}
		if f.got[i][k].CompareAndSwap(0, time.Now().UnixNano()) {
			if k == 0 {
				close(f.first[i])
			}
			f.mu.Lock()
			f.remaining[k]--
			if f.remaining[k] == 0 {
				close(f.done[k])
			}
			f.mu.Unlock()
		}
		return nil
	}
}

func (f *fleet) fail(err error) {
	f.failOnce.Do(func() {
		f.failErr = err
		close(f.failed)
	})
}

// connect opens the fleet's streams, parallel at a time, to addr: Envoys
// of gateways spread round-robin, a delta share of each gateway's on Delta
// ADS, interleaved (every other one for 0.5). It returns once every client
// holds the initial route configuration.
func (f *fleet) connect(ctx context.Context, addr string, o options) error {
	f.clients = make([]*envoysim.Client, len(f.got))
	// The streams live on ctx; the deadline bounds only the connecting.
	cctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	g, gctx := errgroup.WithContext(cctx)
	g.SetLimit(o.parallel)
	for i := range f.clients {
		// The share holds within each gateway: j numbers its Envoys.
		j := float64(i / o.gateways)
		delta := math.Floor((j+1)*o.delta) > math.Floor(j*o.delta)
		if delta {
			f.delta++
		}
		g.Go(func() error {
			c, err := envoysim.New(ctx, addr, envoysim.Options{
				NodeID:  fmt.Sprintf("load-%05d", i),
				Gateway: gatewayName(i % o.gateways),
				Delta:   delta,
				// The clients share the machine with the server: the deep
				// check of every response would measure them, not it.
				SkipValidation: true,
				Reject:         f.observe(i),
				Node:           envoysim.EnvoyBuild(1, 37, 0),
				DialOptions:    []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())},
			})
			if err != nil {
				return err
			}
			f.clients[i] = c
			go func() {
				<-c.Done()
				if !f.closing.Load() {
					f.fail(fmt.Errorf("envoy load-%05d: stream ended: %v", i, c.Err()))
				}
			}()
			// Connecting at most parallel at a time means waiting for
			// each to hold its configuration.
			select {
			case <-f.first[i]:
			case <-f.failed:
				return f.failErr
			case <-gctx.Done():
				return gctx.Err()
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			f.mu.Lock()
			left := f.remaining[0]
			f.mu.Unlock()
			return fmt.Errorf("%d of %d Envoys without their configuration after %v (--timeout)", left, len(f.clients), o.timeout)
		}
		return err
	}
	return nil
}

// wait blocks until every client holds edit k.
func (f *fleet) wait(ctx context.Context, k int, timeout time.Duration) error {
	select {
	case <-f.done[k]:
		return nil
	case <-f.failed:
		return f.failErr
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(timeout):
		f.mu.Lock()
		left := f.remaining[k]
		f.mu.Unlock()
		return fmt.Errorf("%d of the edited gateways' Envoys still without edit %d after %v", left, k, timeout)
	}
}

// editedCount is the number of clients whose gateway the edits change.
func (f *fleet) editedCount() int {
	n := 0
	for _, e := range f.edited {
		if e {
			n++
		}
	}
	return n
}

// latencies are, for edit k made at start, each edited client's time to
// it.
func (f *fleet) latencies(k int, start time.Time) []time.Duration {
	out := make([]time.Duration, 0, len(f.got))
	for i := range f.got {
		if f.edited[i] {
			out = append(out, time.Unix(0, f.got[i][k].Load()).Sub(start))
		}
	}
	return out
}

// versions are the xDS versions client i accepted, by type.
func (f *fleet) versions(i int) map[string]string {
	return f.clients[i].State().Versions
}

// responses counts, by short type name, the responses the clients whose
// gateway the edits change (edited) or the others (!edited) have received
// so far.
func (f *fleet) responses(edited bool) map[string]int {
	out := map[string]int{}
	for i, c := range f.clients {
		if f.edited[i] != edited {
			continue
		}
		for _, r := range c.History() {
			out[r.TypeURL[strings.LastIndex(r.TypeURL, ".")+1:]]++
		}
	}
	return out
}

func (f *fleet) close() {
	f.closing.Store(true)
	var wg sync.WaitGroup
	for _, c := range f.clients {
		if c == nil {
			continue
		}
		wg.Add(1)
		go func() { defer wg.Done(); c.Close() }()
	}
	wg.Wait()
}
