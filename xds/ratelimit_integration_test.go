package xds_test

import (
	"context"
	"net"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	ratelimitv3common "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	rlsconfv3 "github.com/envoyproxy/go-control-plane/ratelimit/config/ratelimit/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/policies"
	"github.com/tollgate-dev/tollgate/store"
	"github.com/tollgate-dev/tollgate/translate"
	"github.com/tollgate-dev/tollgate/translate/translatetest"
	"github.com/tollgate-dev/tollgate/xds"
	"github.com/tollgate-dev/tollgate/xds/ratelimittest"
)

const rateLimitPolicies = `apiVersion: tollgate.dev/v1alpha1
kind: Gateway
metadata: {name: egress}
spec:
  listeners:
  - name: mtls
    port: 10443
    protocol: HTTPS
    tls:
      spiffe: {}
      clientValidation:
        spiffe: {trustDomains: [corp.example]}
---
apiVersion: tollgate.dev/v1alpha1
kind: Backend
metadata: {name: openai}
spec: {provider: openai}
---
apiVersion: tollgate.dev/v1alpha1
kind: Backend
metadata: {name: ratelimit}
spec: {hostname: ratelimit.internal, port: 8081, tls: false, protocol: HTTP/2}
---
apiVersion: tollgate.dev/v1alpha1
kind: HTTPRoute
metadata: {name: chat, namespace: ml}
spec:
  parentRefs: [{name: egress, namespace: default}]
  rules:
  - matches: [{path: {value: /v1/chat/completions}}]
    backendRefs: [{name: openai, namespace: default}]
---
apiVersion: tollgate.dev/v1alpha1
kind: RateLimitPolicy
metadata: {name: budgets}
spec:
  targetRefs: [{kind: Gateway, name: egress}]
  service: {backendRef: {name: ratelimit}}
  limits:
  - name: team-requests
    requests: REQUESTS
    per: Minute
    by: [Namespace]
  - name: team-tokens
    tokens: {input: 1000, output: 1000}
    per: Minute
    by: [Namespace, Model]
`

// rlRequest is what one request looks like to the rate limit filters: the
// dynamic metadata the listener's filters wrote (tollgate namespace),
// before and after the response.
type rlRequest map[string]string

// descriptors evaluates the route's RateLimitPerRoute actions the way
// Envoy's RateLimitPolicy::populateDescriptors does, for one request:
// generic_key gives its value, metadata its key's value or the default,
// destination_cluster the route's cluster; a hits_addend format reads the
// metadata, and a descriptor whose addend is missing is dropped. Only the
// stream-done rules when onStreamDone.
func descriptors(t *testing.T, route *routev3.Route, filter string, req rlRequest, onStreamDone bool) []*ratelimitv3common.RateLimitDescriptor {
	t.Helper()
	cfg := route.GetTypedPerFilterConfig()[filter]
	if cfg == nil {
		return nil
	}
	per := &ratelimitv3.RateLimitPerRoute{}
	require.NoError(t, cfg.UnmarshalTo(per))
	var out []*ratelimitv3common.RateLimitDescriptor
	for _, rl := range per.GetRateLimits() {
		if rl.GetApplyOnStreamDone() != onStreamDone {
			continue
		}
		d := &ratelimitv3common.RateLimitDescriptor{}
		for _, a := range rl.GetActions() {
			var k, v string
			switch {
			case a.GetGenericKey() != nil:
				k, v = a.GetGenericKey().GetDescriptorKey(), a.GetGenericKey().GetDescriptorValue()
			case a.GetMetadata() != nil:
				m := a.GetMetadata()
				require.Equal(t, translate.MetadataNamespace, m.GetMetadataKey().GetKey())
				k, v = m.GetDescriptorKey(), req[m.GetMetadataKey().GetPath()[0].GetKey()]
				if v == "" {
					v = m.GetDefaultValue()
				}
			case a.GetDestinationCluster() != nil:
				k, v = "destination_cluster", route.GetRoute().GetCluster()
			default:
				t.Fatalf("action %v has no evaluation in this test", a)
			}
			d.Entries = append(d.Entries, &ratelimitv3common.RateLimitDescriptor_Entry{Key: k, Value: v})
		}
		if h := rl.GetHitsAddend(); h != nil {
			if h.GetNumber() != nil {
				d.HitsAddend = wrapperspb.UInt64(h.GetNumber().GetValue())
			} else {
				key := strings.TrimSuffix(strings.TrimPrefix(h.GetFormat(), "%DYNAMIC_METADATA("+translate.MetadataNamespace+":"), ")%")
				n, err := strconv.ParseUint(req[key], 10, 64)
				if err != nil {
					continue // Envoy drops a descriptor without a numeric addend
				}
				d.HitsAddend = wrapperspb.UInt64(n)
			}
		}
		out = append(out, d)
	}
	return out
}

func loadPolicies(t *testing.T, st *store.Store, src string) (*model.Config, error) {
	t.Helper()
	objs, errs := policies.NewScheme().Decode("policies.yaml", []byte(src))
	return st.Replace("policies", objs, errs)
}

func chatRoute(t *testing.T, cfg *model.Config) *routev3.Route {
	t.Helper()
	out, err := translate.Translate(cfg)
	require.NoError(t, err)
	for _, rc := range out.Gateway("egress").Routes {
		for _, vh := range rc.GetVirtualHosts() {
			for _, r := range vh.GetRoutes() {
				if strings.Contains(r.GetName(), "chat") {
					return r
				}
			}
		}
	}
	t.Fatal("no chat route")
	return nil
}

func TestRateLimitServiceCountsWhatEnvoySends(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server and envoyproxy/ratelimit")
	}
	// The limits count per minute: keep the whole test in one.
	if left := time.Until(time.Now().Truncate(time.Minute).Add(time.Minute)); left < 15*time.Second {
		time.Sleep(left + 100*time.Millisecond)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := store.New(store.Options{})
	require.NoError(t, err)
	cfg, err := loadPolicies(t, st, strings.ReplaceAll(rateLimitPolicies, "REQUESTS", "3"))
	require.NoError(t, err)

	s := xds.NewServer(ctx, xds.Options{})
	require.NoError(t, s.Apply(cfg))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = s.Serve(ctx, lis) }()

	redis := ratelimittest.StartRedis(t)
	rl := ratelimittest.StartRatelimit(t, ratelimittest.Options{
		XDSAddr: lis.Addr().String(), NodeID: "rl-1", RedisAddr: redis,
		NodeMetadata: map[string]string{xds.RateLimitGatewayKey: "egress"},
	})
	domain := translate.RateLimitDomain(cfg.Gateways[0])
	rl.WaitConfig(t, domain, nil)

	// The instance shows in /status/nodes under its gateway's key.
	require.Eventually(t, func() bool {
		for _, n := range s.Status().Nodes {
			if n.NodeID == "rl-1" && n.Gateway == xds.RateLimitSnapshotKey("egress") && n.KnownGateway {
				return true
			}
		}
		return false
	}, 5*time.Second, 20*time.Millisecond)

	route := chatRoute(t, cfg)
	ask := func(req rlRequest, filter string, onStreamDone bool) *rlsv3.RateLimitResponse {
		ds := descriptors(t, route, filter, req, onStreamDone)
		require.NotEmpty(t, ds)
		return rl.ShouldRateLimit(t, domain, ds...)
	}
	const reqFilter, tokFilter = "tollgate.ratelimit.requests", "tollgate.ratelimit.tokens"

	// Requests: 3 a minute per client namespace, each namespace its own.
	ml := rlRequest{translate.MetaNamespace: "ml", translate.MetaRequestModel: "gpt-4o"}
	for i := 0; i < 3; i++ {
		require.Equal(t, rlsv3.RateLimitResponse_OK, ask(ml, reqFilter, false).GetOverallCode(), "request %d", i+1)
	}
	require.Equal(t, rlsv3.RateLimitResponse_OVER_LIMIT, ask(ml, reqFilter, false).GetOverallCode())
	other := rlRequest{translate.MetaNamespace: "search", translate.MetaRequestModel: "gpt-4o"}
	require.Equal(t, rlsv3.RateLimitResponse_OK, ask(other, reqFilter, false).GetOverallCode(), "another namespace shares no counter")
	anonymous := rlRequest{}
	require.Equal(t, rlsv3.RateLimitResponse_OK, ask(anonymous, reqFilter, false).GetOverallCode())

	// Output tokens: each request reserves its max_tokens at admission.
	withMax := func(r rlRequest, max int) rlRequest {
		c := rlRequest{}
		for k, v := range r {
			c[k] = v
		}
		c[translate.MetaMaxOutputTokens] = strconv.Itoa(max)
		return c
	}
	resp := ask(withMax(ml, 400), tokFilter, false)
	require.Equal(t, rlsv3.RateLimitResponse_OK, resp.GetOverallCode())
	remaining := func(resp *rlsv3.RateLimitResponse) []uint32 {
		var out []uint32
		for _, st := range resp.GetStatuses() {
			out = append(out, st.GetLimitRemaining())
		}
		sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
		return out
	}
	// input: checked with 0 hits (1000 left); output: 1000-400.
	require.Equal(t, []uint32{600, 1000}, remaining(resp))
	require.Equal(t, rlsv3.RateLimitResponse_OK, ask(withMax(ml, 400), tokFilter, false).GetOverallCode())
	require.Equal(t, rlsv3.RateLimitResponse_OVER_LIMIT, ask(withMax(ml, 400), tokFilter, false).GetOverallCode(), "a third 400-token reservation passes the 1000-token output budget")
	// Another model of the same namespace has budgets of its own.
	claude := withMax(ml, 400)
	claude[translate.MetaRequestModel] = "claude-sonnet"
	require.Equal(t, rlsv3.RateLimitResponse_OK, ask(claude, tokFilter, false).GetOverallCode())

	// Input tokens: charged at stream end with the reported usage; the
	// admission check refuses once the counter is over.
	settled := withMax(other, 10)
	settled[translate.MetaInputTokens] = "900"
	ask(settled, tokFilter, true)
	require.Equal(t, rlsv3.RateLimitResponse_OK, ask(withMax(other, 10), tokFilter, false).GetOverallCode())
	settled[translate.MetaInputTokens] = "200"
	ask(settled, tokFilter, true)
	require.Equal(t, rlsv3.RateLimitResponse_OVER_LIMIT, ask(withMax(other, 10), tokFilter, false).GetOverallCode(), "1100 reported input tokens pass the 1000-token input budget")
	// A stream that reported no usage sends no input descriptor.
	require.Len(t, descriptors(t, route, tokFilter, withMax(other, 10), true), 0)

	// Round trip of one check, as a gateway sees it.
	var took []time.Duration
	for i := 0; i < 50; i++ {
		start := time.Now()
		ask(other, reqFilter, false)
		took = append(took, time.Since(start))
	}
	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	t.Logf("ShouldRateLimit round trip over loopback: median %s, p90 %s", took[25], took[45])

	// A policy edit reaches ratelimit without a restart.
	key := domain + ".limit_default/budgets/team-requests.namespace"
	before := rl.Limits(t)[key]
	require.EqualValues(t, 3, before.RequestsPerUnit)
	versions := s.Versions(xds.RateLimitSnapshotKey("egress"))
	cfg, err = loadPolicies(t, st, strings.ReplaceAll(rateLimitPolicies, "REQUESTS", "5"))
	require.NoError(t, err)
	start := time.Now()
	require.NoError(t, s.Apply(cfg))
	rl.WaitLimits(t, "the edited limit", func(m map[string]ratelimittest.Limit) bool { return m[key].RequestsPerUnit == 5 })
	t.Logf("RLS config convergence (Apply to ratelimit serving the new limit, polled every 50ms): %s", time.Since(start))
	require.NotEqual(t, versions, s.Versions(xds.RateLimitSnapshotKey("egress")))
	// 4 counted of 5: the refused fourth request counted too (the
	// service increments before it compares), so one more is admitted.
	require.Equal(t, rlsv3.RateLimitResponse_OK, ask(ml, reqFilter, false).GetOverallCode())
	require.Equal(t, rlsv3.RateLimitResponse_OVER_LIMIT, ask(ml, reqFilter, false).GetOverallCode())

	// An invalid policy is refused before it reaches anything: ratelimit
	// keeps the last good configuration and its version.
	versions = s.Versions(xds.RateLimitSnapshotKey("egress"))
	_, err = loadPolicies(t, st, strings.ReplaceAll(rateLimitPolicies, "REQUESTS", "0"))
	require.Error(t, err)
	require.Contains(t, err.Error(), "spec.limits[0].requests")
	time.Sleep(300 * time.Millisecond)
	require.Equal(t, versions, s.Versions(xds.RateLimitSnapshotKey("egress")))
	require.EqualValues(t, 5, rl.Limits(t)[key].RequestsPerUnit)
}

// TestRatelimitLoadsTheExamples serves each example with a rate limit
// service to a real ratelimit, which must load (and ACK) its domain.
func TestRatelimitLoadsTheExamples(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server and envoyproxy/ratelimit")
	}
	dirs, err := translatetest.ExampleDirs("../examples")
	require.NoError(t, err)
	checked := 0
	for _, dir := range dirs {
		st, err := store.New(store.Options{})
		require.NoError(t, err)
		src := store.NewFileSource(dir, policies.NewScheme(), nil)
		objs, errs, err := src.Load()
		require.NoError(t, err)
		cfg, err := st.Replace(src.Name(), objs, errs)
		require.NoError(t, err, dir)
		out, err := translate.Translate(cfg)
		require.NoError(t, err)
		for _, g := range out.Gateways {
			if g.RateLimitConfig == nil {
				continue
			}
			checked++
			t.Run(filepath.Base(dir)+"/"+g.Key, func(t *testing.T) {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				s := xds.NewServer(ctx, xds.Options{AllowPlaintextSecrets: true})
				require.NoError(t, s.Apply(cfg))
				lis, err := net.Listen("tcp", "127.0.0.1:0")
				require.NoError(t, err)
				go func() { _ = s.Serve(ctx, lis) }()
				rl := ratelimittest.StartRatelimit(t, ratelimittest.Options{
					XDSAddr: lis.Addr().String(), NodeID: "rl-example", RedisAddr: ratelimittest.StartRedis(t),
					NodeMetadata: map[string]string{xds.RateLimitGatewayKey: g.Key},
				})
				want := 0
				for _, d := range g.RateLimitConfig.GetDescriptors() {
					for ; d != nil; d = first(d.GetDescriptors()) {
						if d.GetRateLimit() != nil {
							want++
						}
					}
				}
				loaded := rl.WaitLimits(t, "the example's limits", func(m map[string]ratelimittest.Limit) bool { return len(m) == want })
				require.Len(t, loaded, want)
				require.Eventually(t, func() bool {
					for _, n := range s.Status().Nodes {
						if n.NodeID == "rl-example" && n.LastNack == nil && len(n.Acked) > 0 {
							return true
						}
					}
					return false
				}, 5*time.Second, 20*time.Millisecond, "ratelimit ACKs the example's configuration")
			})
		}
	}
	require.NotZero(t, checked, "no example has a rate limit service")
}

func first(ds []*rlsconfv3.RateLimitDescriptor) *rlsconfv3.RateLimitDescriptor {
	if len(ds) == 0 {
		return nil
	}
	return ds[0]
}
