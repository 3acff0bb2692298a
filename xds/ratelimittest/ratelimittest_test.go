package ratelimittest_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	ratelimitv3common "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	rlconfv3 "github.com/envoyproxy/go-control-plane/ratelimit/config/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/tollgate-dev/tollgate/xds/ratelimittest"
	"github.com/tollgate-dev/tollgate/xds/xdstest"
)

// xdsServer is a go-control-plane ADS server over a snapshot cache keyed
// by node id, recording every request it receives.
type xdsServer struct {
	Addr  string
	cache cachev3.SnapshotCache
	creds credentials.TransportCredentials

	mu       sync.Mutex
	gs       *grpc.Server
	requests []*discoveryv3.DiscoveryRequest
	peers    []*peer.Peer
}

func startXDS(t *testing.T, creds credentials.TransportCredentials) *xdsServer {
	t.Helper()
	x := &xdsServer{cache: cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil), creds: creds}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	x.Addr = lis.Addr().String()
	x.serve(lis)
	t.Cleanup(x.stop)
	return x
}

func (x *xdsServer) serve(lis net.Listener) {
	ctx := context.Background()
	srv := serverv3.NewServer(ctx, x.cache, serverv3.CallbackFuncs{
		StreamOpenFunc: func(ctx context.Context, _ int64, _ string) error {
			if p, ok := peer.FromContext(ctx); ok {
				x.mu.Lock()
				x.peers = append(x.peers, p)
				x.mu.Unlock()
			}
			return nil
		},
		StreamRequestFunc: func(_ int64, req *discoveryv3.DiscoveryRequest) error {
			x.mu.Lock()
			x.requests = append(x.requests, proto.Clone(req).(*discoveryv3.DiscoveryRequest))
			x.mu.Unlock()
			return nil
		},
	})
	var opts []grpc.ServerOption
	if x.creds != nil {
		opts = append(opts, grpc.Creds(x.creds))
	}
	gs := grpc.NewServer(opts...)
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(gs, srv)
	go func() { _ = gs.Serve(lis) }()
	x.mu.Lock()
	x.gs = gs
	x.mu.Unlock()
}

func (x *xdsServer) stop() {
	x.mu.Lock()
	gs := x.gs
	x.mu.Unlock()
	gs.Stop()
}

// restart stops the gRPC server and serves the same cache on the same
// address again.
func (x *xdsServer) restart(t *testing.T) {
	t.Helper()
	x.stop()
	lis, err := net.Listen("tcp", x.Addr)
	if err != nil {
		t.Fatal(err)
	}
	x.serve(lis)
}

// publish sets node's snapshot to the given configurations and returns
// the time it did.
func (x *xdsServer) publish(t *testing.T, node, version string, cfgs ...*rlconfv3.RateLimitConfig) time.Time {
	t.Helper()
	res := make([]types.Resource, len(cfgs))
	for i, c := range cfgs {
		res[i] = c
	}
	snap, err := cachev3.NewSnapshot(version, map[resourcev3.Type][]types.Resource{resourcev3.RateLimitConfigType: res})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if err := x.cache.SetSnapshot(context.Background(), node, snap); err != nil {
		t.Fatal(err)
	}
	return now
}

// waitRequest waits (10s at most) for a request matching ok, and returns it.
func (x *xdsServer) waitRequest(t *testing.T, what string, ok func(*discoveryv3.DiscoveryRequest) bool) *discoveryv3.DiscoveryRequest {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		x.mu.Lock()
		for _, r := range x.requests {
			if ok(r) {
				x.mu.Unlock()
				return r
			}
		}
		x.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("xDS server: no %s within 10s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func isACK(version string) func(*discoveryv3.DiscoveryRequest) bool {
	return func(r *discoveryv3.DiscoveryRequest) bool {
		return r.GetVersionInfo() == version && r.GetResponseNonce() != "" && r.GetErrorDetail() == nil
	}
}

// config is a RateLimitConfig of domain with one descriptor per key=value
// and its limit per unit.
func config(name, domain string, unit rlconfv3.RateLimitUnit, limits map[string]uint32) *rlconfv3.RateLimitConfig {
	c := &rlconfv3.RateLimitConfig{Name: name, Domain: domain}
	keys := make([]string, 0, len(limits))
	for kv := range limits {
		keys = append(keys, kv)
	}
	slices.Sort(keys)
	for _, kv := range keys {
		k, v, _ := strings.Cut(kv, "=")
		c.Descriptors = append(c.Descriptors, &rlconfv3.RateLimitDescriptor{
			Key: k, Value: v,
			RateLimit: &rlconfv3.RateLimitPolicy{Unit: unit, RequestsPerUnit: limits[kv]},
		})
	}
	return c
}

// clearOfWindowEdge sleeps past the end of the current minute if less
// than 3s of it are left, so that a short sequence of hits counts in one
// window.
func clearOfWindowEdge() {
	now := time.Now()
	if left := now.Truncate(time.Minute).Add(time.Minute).Sub(now); left < 3*time.Second {
		time.Sleep(left + 50*time.Millisecond)
	}
}

func hits(n uint64) *wrapperspb.UInt64Value { return wrapperspb.UInt64(n) }

// counter is the value of the one Redis key of descriptor key_value in
// domain.
func counter(t *testing.T, redis, domain, kv string) int {
	t.Helper()
	keys := ratelimittest.Keys(t, redis, domain+"_"+kv+"_*")
	if len(keys) != 1 {
		t.Fatalf("redis keys %s_%s_*: %q, want one", domain, kv, keys)
	}
	v, _ := ratelimittest.Get(t, redis, keys[0])
	n, err := strconv.Atoi(v)
	if err != nil {
		t.Fatalf("redis %s = %q: %v", keys[0], v, err)
	}
	return n
}

// waitLimit polls (hits_addend 0, 15s at most) until ratelimit answers
// for test's key=v with requests_per_unit want, and returns the time
// since published.
func waitLimit(t *testing.T, rl *ratelimittest.Ratelimit, key string, want uint32, published time.Time) time.Duration {
	t.Helper()
	probe := ratelimittest.Descriptor(key, map[string]string{"k": "v", "bench": "b"}[key])
	probe.HitsAddend = hits(0)
	deadline := published.Add(15 * time.Second)
	for status0(t, rl.ShouldRateLimit(t, "test", probe)).GetCurrentLimit().GetRequestsPerUnit() != want {
		if time.Now().After(deadline) {
			t.Fatalf("ratelimit does not enforce %s's new limit %d 15s after the snapshot", key, want)
		}
		time.Sleep(time.Millisecond)
	}
	return time.Since(published)
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func status0(t *testing.T, resp *rlsv3.RateLimitResponse) *rlsv3.RateLimitResponse_DescriptorStatus {
	t.Helper()
	if len(resp.GetStatuses()) != 1 {
		t.Fatalf("response %v: want one status", resp)
	}
	return resp.GetStatuses()[0]
}

// TestRatelimitOverXDS: the limit ratelimit enforces is the one the xDS
// server publishes, and changes when a new snapshot is published.
func TestRatelimitOverXDS(t *testing.T) {
	x := startXDS(t, nil)
	x.publish(t, "node-1", "v1", config("rls", "test", rlconfv3.RateLimitUnit_MINUTE, map[string]uint32{"k=v": 3, "bench=b": 1_000_000}))
	start := time.Now()
	rl := ratelimittest.StartRatelimit(t, ratelimittest.Options{
		XDSAddr: x.Addr, NodeID: "node-1",
		NodeMetadata: map[string]string{"role": "ratelimit", "zone": "a"},
	})
	t.Logf("ratelimit serving %s after %s", rl.GRPCAddr, time.Since(start).Round(time.Millisecond))

	// The node it sends: id and metadata, nothing else.
	first := x.waitRequest(t, "request", func(*discoveryv3.DiscoveryRequest) bool { return true })
	node := first.GetNode()
	if node.GetId() != "node-1" || node.GetCluster() != "" {
		t.Errorf("node id %q cluster %q, want node-1 and none", node.GetId(), node.GetCluster())
	}
	if md := node.GetMetadata().GetFields(); md["role"].GetStringValue() != "ratelimit" || md["zone"].GetStringValue() != "a" || len(md) != 2 {
		t.Errorf("node metadata %v", node.GetMetadata())
	}
	if first.GetTypeUrl() != resourcev3.RateLimitConfigType || len(first.GetResourceNames()) != 0 {
		t.Errorf("first request: type %q names %q, want a wildcard RateLimitConfig subscription", first.GetTypeUrl(), first.GetResourceNames())
	}
	t.Logf("node: %v; user agent %q %v", node, node.GetUserAgentName(), node.GetUserAgentVersionType())
	x.waitRequest(t, "ACK of v1", isACK("v1"))

	if got := rl.WaitConfig(t, "test", nil)["test.k_v"]; got != (ratelimittest.Limit{Unit: "MINUTE", RequestsPerUnit: 3}) {
		t.Fatalf("/rlconfig test.k_v = %+v", got)
	}
	if !rl.Healthy(t) {
		t.Error("/healthcheck not OK")
	}

	clearOfWindowEdge()
	kv := ratelimittest.Descriptor("k", "v")
	for i := range 4 {
		resp := rl.ShouldRateLimit(t, "test", kv)
		want, remaining := rlsv3.RateLimitResponse_OK, uint32(2-i)
		if i == 3 {
			want, remaining = rlsv3.RateLimitResponse_OVER_LIMIT, 0
		}
		st := status0(t, resp)
		if resp.GetOverallCode() != want || st.GetLimitRemaining() != remaining || st.GetCurrentLimit().GetRequestsPerUnit() != 3 {
			t.Fatalf("call %d: %v, want %v with %d remaining of 3", i+1, resp, want, remaining)
		}
	}
	if n := counter(t, rl.RedisAddr, "test", "k_v"); n != 4 {
		t.Errorf("redis counter %d after 4 calls, want 4 (over-limit calls count too)", n)
	}

	// Round trip of a call that reaches Redis.
	bench := ratelimittest.Descriptor("bench", "b")
	rl.ShouldRateLimit(t, "test", bench)
	rtts := make([]time.Duration, 50)
	for i := range rtts {
		t0 := time.Now()
		if resp := rl.ShouldRateLimit(t, "test", bench); resp.GetOverallCode() != rlsv3.RateLimitResponse_OK {
			t.Fatalf("bench call: %v", resp)
		}
		rtts[i] = time.Since(t0)
	}
	t.Logf("ShouldRateLimit round trip (gRPC to ratelimit, INCRBY in Redis): median %s, min %s, max %s of %d",
		median(rtts), slices.Min(rtts), slices.Max(rtts), len(rtts))

	// New limits: publish, then check without counting (hits_addend 0)
	// until ratelimit answers with the new limit.
	var propagation []time.Duration
	for i := range 5 {
		version, benchLimit := "v"+strconv.Itoa(2+i), uint32(1_000_001+i)
		published := x.publish(t, "node-1", version, config("rls", "test", rlconfv3.RateLimitUnit_MINUTE, map[string]uint32{"k=v": 5, "bench=b": benchLimit}))
		key, want := "bench", benchLimit
		if i == 0 {
			key, want = "k", 5
		}
		propagation = append(propagation, waitLimit(t, rl, key, want, published))
		x.waitRequest(t, "ACK of "+version, isACK(version))
	}
	t.Logf("config propagation (SetSnapshot to ratelimit answering with the new limit): first %s; of %d: median %s, max %s",
		propagation[0].Round(10*time.Microsecond), len(propagation), median(propagation).Round(10*time.Microsecond), slices.Max(propagation).Round(10*time.Microsecond))
	if got := rl.WaitConfig(t, "test", map[string]ratelimittest.Limit{"test.k_v": {Unit: "MINUTE", RequestsPerUnit: 5}}); len(got) != 2 {
		t.Errorf("/rlconfig %v, want 2 limits", got)
	}

	// 5 allowed now.
	clearOfWindowEdge()
	ratelimittest.FlushAll(t, rl.RedisAddr)
	for i := range 6 {
		want := rlsv3.RateLimitResponse_OK
		if i == 5 {
			want = rlsv3.RateLimitResponse_OVER_LIMIT
		}
		if resp := rl.ShouldRateLimit(t, "test", kv); resp.GetOverallCode() != want {
			t.Fatalf("after the change, call %d: %v, want %v", i+1, resp, want)
		}
	}

	// An unknown domain or descriptor is not limited, not an error.
	resp := rl.ShouldRateLimit(t, "other", kv)
	if resp.GetOverallCode() != rlsv3.RateLimitResponse_OK || status0(t, resp).GetCurrentLimit() != nil {
		t.Errorf("unknown domain: %v", resp)
	}
}

// TestRatelimitHitsAddend: a descriptor's hits_addend counts that many
// hits, in the response and in Redis.
func TestRatelimitHitsAddend(t *testing.T) {
	x := startXDS(t, nil)
	x.publish(t, "node-1", "v1", config("rls", "test", rlconfv3.RateLimitUnit_MINUTE, map[string]uint32{"k=v": 10}))
	rl := ratelimittest.StartRatelimit(t, ratelimittest.Options{XDSAddr: x.Addr, NodeID: "node-1"})

	clearOfWindowEdge()
	d := ratelimittest.Descriptor("k", "v")
	d.HitsAddend = hits(2)
	for i, want := range []uint32{8, 6} {
		if st := status0(t, rl.ShouldRateLimit(t, "test", d)); st.GetCode() != rlsv3.RateLimitResponse_OK || st.GetLimitRemaining() != want {
			t.Fatalf("call %d with hits_addend 2: %v, want OK with %d remaining", i+1, st, want)
		}
		if n := counter(t, rl.RedisAddr, "test", "k_v"); n != 2*(i+1) {
			t.Fatalf("redis counter %d after call %d, want %d", n, i+1, 2*(i+1))
		}
	}
	d.HitsAddend = hits(0)
	if st := status0(t, rl.ShouldRateLimit(t, "test", d)); st.GetLimitRemaining() != 6 || counter(t, rl.RedisAddr, "test", "k_v") != 4 {
		t.Fatalf("hits_addend 0: %v, want a check that counts nothing", st)
	}
}

// TestRatelimitIgnoresNegativeHits: RateLimitDescriptor.is_negative_hits
// (field 4, envoy protos >= 1.38) postdates the protos this ratelimit is
// built with (envoy v1.32.4): it is an unknown field, dropped, and the
// hits_addend counts up. Envoy's "negative hits" (returning tokens) does
// not work against this ratelimit.
func TestRatelimitIgnoresNegativeHits(t *testing.T) {
	x := startXDS(t, nil)
	x.publish(t, "node-1", "v1", config("rls", "test", rlconfv3.RateLimitUnit_MINUTE, map[string]uint32{"k=v": 10}))
	rl := ratelimittest.StartRatelimit(t, ratelimittest.Options{XDSAddr: x.Addr, NodeID: "node-1"})

	clearOfWindowEdge()
	d := ratelimittest.Descriptor("k", "v")
	d.HitsAddend = hits(2)
	rl.ShouldRateLimit(t, "test", d)
	d.IsNegativeHits = true
	st := status0(t, rl.ShouldRateLimit(t, "test", d))
	n := counter(t, rl.RedisAddr, "test", "k_v")
	t.Logf("after +2 and then 2 with is_negative_hits: counter %d, %d remaining of 10", n, st.GetLimitRemaining())
	if n != 4 || st.GetLimitRemaining() != 6 {
		t.Fatalf("counter %d, %d remaining: want 4 and 6 (is_negative_hits ignored, +2 counted); 0 and 10 would mean this ratelimit honours it", n, st.GetLimitRemaining())
	}
}

// TestRatelimitNACKKeepsConfig: a configuration ratelimit cannot load is
// NACKed with the loader's message, and the previous one stays in force.
func TestRatelimitNACKKeepsConfig(t *testing.T) {
	x := startXDS(t, nil)
	x.publish(t, "node-1", "v1", config("a", "test", rlconfv3.RateLimitUnit_MINUTE, map[string]uint32{"k=v": 3}))
	rl := ratelimittest.StartRatelimit(t, ratelimittest.Options{XDSAddr: x.Addr, NodeID: "node-1"})
	x.waitRequest(t, "ACK of v1", isACK("v1"))

	// Two resources for one domain: "duplicate domain" without MERGE_DOMAIN_CONFIG.
	x.publish(t, "node-1", "v2",
		config("a", "test", rlconfv3.RateLimitUnit_MINUTE, map[string]uint32{"k=v": 5}),
		config("b", "test", rlconfv3.RateLimitUnit_MINUTE, map[string]uint32{"k=w": 5}))
	nack := x.waitRequest(t, "NACK of v2", func(r *discoveryv3.DiscoveryRequest) bool { return r.GetErrorDetail() != nil })
	t.Logf("NACK: version_info %q, error_detail %v", nack.GetVersionInfo(), nack.GetErrorDetail())
	if nack.GetVersionInfo() != "v1" || !strings.Contains(nack.GetErrorDetail().GetMessage(), "duplicate domain") {
		t.Errorf("NACK version_info %q message %q, want v1 and duplicate domain", nack.GetVersionInfo(), nack.GetErrorDetail().GetMessage())
	}
	if got := rl.Limits(t); len(got) != 1 || got["test.k_v"].RequestsPerUnit != 3 {
		t.Errorf("after the NACK: %v, want v1's test.k_v 3/min only", got)
	}

	// A valid one after it is loaded and ACKed.
	x.publish(t, "node-1", "v3", config("a", "test", rlconfv3.RateLimitUnit_HOUR, map[string]uint32{"k=v": 7}))
	x.waitRequest(t, "ACK of v3", isACK("v3"))
	rl.WaitConfig(t, "test", map[string]ratelimittest.Limit{"test.k_v": {Unit: "HOUR", RequestsPerUnit: 7}})
}

// TestRatelimitStartsAfterFirstConfig: ratelimit connects to xDS at once
// but opens its ports only once it has a configuration, unless ForceStart.
func TestRatelimitStartsAfterFirstConfig(t *testing.T) {
	t.Run("wait", func(t *testing.T) {
		x := startXDS(t, nil)
		publishedAt := make(chan time.Time, 1)
		go func() {
			// Wait for its request, then leave it waiting a little.
			deadline := time.Now().Add(10 * time.Second)
			for time.Now().Before(deadline) {
				x.mu.Lock()
				n := len(x.requests)
				x.mu.Unlock()
				if n > 0 {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			time.Sleep(500 * time.Millisecond)
			snap, _ := cachev3.NewSnapshot("v1", map[resourcev3.Type][]types.Resource{resourcev3.RateLimitConfigType: {
				config("rls", "test", rlconfv3.RateLimitUnit_MINUTE, map[string]uint32{"k=v": 3}),
			}})
			publishedAt <- time.Now()
			_ = x.cache.SetSnapshot(context.Background(), "node-1", snap)
		}()
		rl := ratelimittest.StartRatelimit(t, ratelimittest.Options{XDSAddr: x.Addr, NodeID: "node-1"})
		ready := time.Now()
		var published time.Time
		select {
		case published = <-publishedAt:
		default:
			t.Fatal("StartRatelimit returned before any snapshot was published")
		}
		logs := rl.Logs()
		waiting := strings.Index(logs, "Waiting for initial ratelimit config update event")
		loaded := strings.Index(logs, "Successfully loaded the initial ratelimit configs")
		listening := strings.Index(logs, "Listening for gRPC on")
		if waiting < 0 || loaded < waiting || listening < loaded {
			t.Errorf("log order: waiting at %d, loaded at %d, gRPC listening at %d", waiting, loaded, listening)
		}
		t.Logf("ports open %s after the first snapshot", ready.Sub(published).Round(time.Millisecond))
	})
	t.Run("ForceStart", func(t *testing.T) {
		x := startXDS(t, nil)
		rl := ratelimittest.StartRatelimit(t, ratelimittest.Options{XDSAddr: x.Addr, NodeID: "node-1", ForceStart: true})
		_, err := rl.Client(t).ShouldRateLimit(context.Background(), &rlsv3.RateLimitRequest{
			Domain: "test", Descriptors: []*ratelimitv3common.RateLimitDescriptor{ratelimittest.Descriptor("k", "v")},
		})
		if s, _ := status.FromError(err); err == nil || !strings.Contains(s.Message(), "no rate limit configuration loaded") {
			t.Fatalf("ShouldRateLimit without a config: %v, want no rate limit configuration loaded", err)
		}
		if !rl.Healthy(t) {
			t.Error("/healthcheck not OK without a config")
		}
		x.publish(t, "node-1", "v1", config("rls", "test", rlconfv3.RateLimitUnit_MINUTE, map[string]uint32{"k=v": 3}))
		rl.WaitConfig(t, "test", nil)
		if st := status0(t, rl.ShouldRateLimit(t, "test", ratelimittest.Descriptor("k", "v"))); st.GetCurrentLimit().GetRequestsPerUnit() != 3 {
			t.Errorf("after the config: %v", st)
		}
	})
}

// TestRatelimitReconnects: when the xDS server goes away and comes back,
// ratelimit keeps its configuration meanwhile and takes the new one.
func TestRatelimitReconnects(t *testing.T) {
	x := startXDS(t, nil)
	x.publish(t, "node-1", "v1", config("rls", "test", rlconfv3.RateLimitUnit_MINUTE, map[string]uint32{"k=v": 3}))
	rl := ratelimittest.StartRatelimit(t, ratelimittest.Options{XDSAddr: x.Addr, NodeID: "node-1"})
	x.waitRequest(t, "ACK of v1", isACK("v1"))

	x.stop()
	time.Sleep(300 * time.Millisecond)
	if got := rl.Limits(t)["test.k_v"].RequestsPerUnit; got != 3 {
		t.Errorf("with the xDS server down: test.k_v %d, want 3", got)
	}
	x.publish(t, "node-1", "v2", config("rls", "test", rlconfv3.RateLimitUnit_MINUTE, map[string]uint32{"k=v": 4}))
	restarted := time.Now()
	x.restart(t)
	rl.WaitConfig(t, "test", map[string]ratelimittest.Limit{"test.k_v": {Unit: "MINUTE", RequestsPerUnit: 4}})
	t.Logf("new config loaded %s after the xDS server came back", time.Since(restarted).Round(time.Millisecond))
	x.waitRequest(t, "ACK of v2", isACK("v2"))
}

// TestRatelimitXDSMutualTLS: the TLS settings make ratelimit verify the
// xDS server's certificate (for the SAN given) and present its own.
func TestRatelimitXDSMutualTLS(t *testing.T) {
	ca := xdstest.NewCA(t, "test CA")
	server := ca.Issue(t, xdstest.LeafOptions{CommonName: "xds", DNSNames: []string{"xds.tollgate.test"}, Server: true})
	client := ca.Client(t, []string{"spiffe://tollgate.test/ratelimit"}, nil)
	dir := t.TempDir()
	files := ratelimittest.TLSFiles{
		Cert: xdstest.WriteFile(t, dir, "client.crt", client.CertPEM),
		Key:  xdstest.WriteFile(t, dir, "client.key", client.KeyPEM),
		CA:   xdstest.WriteFile(t, dir, "ca.crt", ca.PEM),
		SAN:  "xds.tollgate.test",
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	x := startXDS(t, credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{server.TLS},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		MinVersion:   tls.VersionTLS12,
	}))
	x.publish(t, "node-1", "v1", config("rls", "test", rlconfv3.RateLimitUnit_MINUTE, map[string]uint32{"k=v": 3}))
	rl := ratelimittest.StartRatelimit(t, ratelimittest.Options{XDSAddr: x.Addr, NodeID: "node-1", TLS: &files})
	if st := status0(t, rl.ShouldRateLimit(t, "test", ratelimittest.Descriptor("k", "v"))); st.GetCurrentLimit().GetRequestsPerUnit() != 3 {
		t.Fatalf("over mTLS xDS: %v", st)
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if len(x.peers) == 0 {
		t.Fatal("no stream")
	}
	info, ok := x.peers[0].AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 {
		t.Fatalf("stream auth info %v, want a client certificate", x.peers[0].AuthInfo)
	}
	if uris := info.State.PeerCertificates[0].URIs; len(uris) != 1 || uris[0].String() != "spiffe://tollgate.test/ratelimit" {
		t.Errorf("client certificate URIs %v", uris)
	}
}
