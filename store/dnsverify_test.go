package store

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/policies"
)

// rdnsPolicies is a gateway with two backends whose DNSPolicy sends
// tollgate's lookups to the test server: good.example.test's PTR is under
// provider.test, bad.example.test's is not.
func rdnsPolicies(resolver string) string {
	return fmt.Sprintf(`apiVersion: tollgate.dev/v1alpha1
kind: Gateway
metadata: {name: egress}
spec:
  listeners: [{name: http, port: 10080, protocol: HTTP}]
---
apiVersion: tollgate.dev/v1alpha1
kind: Backend
metadata: {name: good}
spec: {hostname: good.example.test}
---
apiVersion: tollgate.dev/v1alpha1
kind: Backend
metadata: {name: bad}
spec: {hostname: bad.example.test}
---
apiVersion: tollgate.dev/v1alpha1
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{name: egress}]
  rules: [{backendRefs: [{name: good}, {name: bad}]}]
---
apiVersion: tollgate.dev/v1alpha1
kind: DNSPolicy
metadata: {name: rdns}
spec:
  targetRefs: [{kind: Backend, name: good}, {kind: Backend, name: bad}]
  resolvers: [%q]
  addressFamily: IPv4
  reverseDNS: {allowedSuffixes: [.provider.test]}
`, resolver)
}

func decode(t *testing.T, src string) []model.Object {
	t.Helper()
	objs, errs := policies.NewScheme().Decode("/policies/p.yaml", []byte(src))
	require.Empty(t, errs)
	return objs
}

func backendOf(t *testing.T, cfg *model.Config, name string) *model.BackendConfig {
	t.Helper()
	for _, b := range cfg.Backends {
		if b.Ref.Name == name {
			return b
		}
	}
	t.Fatalf("no backend %s", name)
	return nil
}

func conditionOf(t *testing.T, cfg *model.Config, object string) model.Condition {
	t.Helper()
	for _, c := range cfg.Conditions {
		if c.Object == object && c.Type == "Programmed" {
			return c
		}
	}
	t.Fatalf("no Programmed condition on %s in %v", object, cfg.Conditions)
	return model.Condition{}
}

// syncBuffer is a log sink tests can read while the verifier writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) lines(substr string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, l := range strings.Split(b.buf.String(), "\n") {
		if strings.Contains(l, substr) {
			n++
		}
	}
	return n
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not a wait for an event
	}
}

// The verifier against a real DNS server on 127.0.0.1: a backend whose PTR
// is under the allowed suffix (and resolves back) is served on its
// verified address; one whose PTR is elsewhere is not, with a condition
// naming the address and PTR. Refreshes that find the same answers neither
// reload nor log; a changed answer reloads once and logs once.
func TestDNSVerifierAgainstLoopbackServer(t *testing.T) {
	dns := startDNS(t)
	dns.setA("good.example.test", "192.0.2.10")
	dns.setPTR("192.0.2.10", "edge-1.provider.test.")
	dns.setA("edge-1.provider.test", "192.0.2.10")
	dns.setA("bad.example.test", "198.51.100.7")
	dns.setPTR("198.51.100.7", "host.evil.test.")

	logs := &syncBuffer{}
	v := NewDNSVerifier(DNSVerifierOptions{Log: slog.New(slog.NewTextHandler(logs, nil)), Timeout: 5 * time.Second})
	v.interval = 10 * time.Millisecond
	accepted := make(chan *model.Config, 10)
	st, err := New(Options{DNS: v, Accept: func(c *model.Config) error {
		accepted <- c
		return nil
	}})
	require.NoError(t, err)

	cfg, err := st.Replace("test", decode(t, rdnsPolicies(dns.addr)), nil)
	require.NoError(t, err)
	<-accepted
	good, bad := backendOf(t, cfg, "good"), backendOf(t, cfg, "bad")
	require.Empty(t, good.Unavailable)
	require.Equal(t, []model.Address{{IP: "192.0.2.10", Port: 443}}, good.Addresses)
	require.True(t, conditionOf(t, cfg, "Backend/good").Status)
	require.NotEmpty(t, bad.Unavailable)
	require.Empty(t, bad.Addresses)
	c := conditionOf(t, cfg, "Backend/bad")
	require.False(t, c.Status)
	require.Equal(t, "ReverseDNSFailed", c.Reason)
	require.Contains(t, c.Message, "198.51.100.7 (PTR host.evil.test) refused: no PTR name under an allowed suffix")
	require.Contains(t, st.Status().Conditions, c, "conditions are on /status/policies")
	require.Equal(t, 2, logs.lines("reverse DNS"), "one line per first result")

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- v.Run(ctx, st) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})

	// Unchanged answers: several refreshes, no reload, no new log line.
	before := dns.ptrQueries.Load()
	waitFor(t, "three refreshes", func() bool { return dns.ptrQueries.Load() >= before+6 })
	require.Empty(t, accepted, "an unchanged result must not reload")
	require.Equal(t, 2, logs.lines("reverse DNS"), "an unchanged result must not log")

	// good's PTR moves outside the suffix: one reload, good is not served.
	dns.setPTR("192.0.2.10", "host.evil.test.")
	var reloaded *model.Config
	select {
	case reloaded = <-accepted:
	case <-time.After(10 * time.Second):
		t.Fatal("no reload after the PTR changed")
	}
	require.NotEmpty(t, backendOf(t, reloaded, "good").Unavailable)
	c = conditionOf(t, reloaded, "Backend/good")
	require.Equal(t, "ReverseDNSFailed", c.Reason)
	require.Contains(t, c.Message, "192.0.2.10 (PTR host.evil.test) refused")
	require.Same(t, reloaded, st.Config())
	require.True(t, st.Status().Applied)
	waitFor(t, "the change to be logged", func() bool { return logs.lines("reverse DNS") == 3 })

	before = dns.ptrQueries.Load()
	waitFor(t, "three more refreshes", func() bool { return dns.ptrQueries.Load() >= before+6 })
	require.Empty(t, accepted, "the new result, unchanged, must not reload again")
	require.Equal(t, 3, logs.lines("reverse DNS"))

	// And back: served again on the verified address.
	dns.setPTR("192.0.2.10", "EDGE-1.Provider.test.")
	select {
	case reloaded = <-accepted:
	case <-time.After(10 * time.Second):
		t.Fatal("no reload after the PTR was fixed")
	}
	require.Empty(t, backendOf(t, reloaded, "good").Unavailable)
	require.Equal(t, []model.Address{{IP: "192.0.2.10", Port: 443}}, backendOf(t, reloaded, "good").Addresses)
}

// A PTR name under the suffix that does not resolve back to the address
// (forward-confirmed reverse DNS) is refused.
func TestDNSVerifierForwardConfirms(t *testing.T) {
	dns := startDNS(t)
	dns.setA("good.example.test", "192.0.2.10")
	dns.setPTR("192.0.2.10", "edge-1.provider.test.")
	dns.setA("edge-1.provider.test", "192.0.2.99")
	v := NewDNSVerifier(DNSVerifierOptions{})
	res := v.verify(context.Background(), model.ReverseDNSCheck{
		Hostname: "good.example.test", Family: model.FamilyIPv4, AllowedSuffixes: []string{"provider.test"},
		Resolvers: []model.Address{addrOf(t, dns.addr)},
	})
	require.Empty(t, res.Verified)
	require.Equal(t, "192.0.2.10 (PTR edge-1.provider.test) refused: edge-1.provider.test does not resolve back to 192.0.2.10", res.Describe())
}

// Resolvers are asked in order: one that refuses the query (nothing
// listens on its port) is skipped, one that says a name does not exist is
// believed.
func TestNetResolverTriesResolversInOrder(t *testing.T) {
	dns := startDNS(t)
	dns.setA("good.example.test", "192.0.2.10")
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := addrOf(t, pc.LocalAddr().String())
	pc.Close()
	r := NetResolver([]model.Address{dead, addrOf(t, dns.addr)})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	addrs, err := r.LookupNetIP(ctx, "ip4", "good.example.test.")
	require.NoError(t, err)
	require.Equal(t, "192.0.2.10", addrs[0].String())
	_, err = r.LookupNetIP(ctx, "ip4", "missing.example.test.")
	require.True(t, notFound(err), "%v", err)

	// With no resolver answering, the reason carries no port that would
	// differ on the next attempt.
	_, err = NetResolver([]model.Address{dead}).LookupNetIP(ctx, "ip4", "good.example.test.")
	require.Error(t, err)
	require.Equal(t, "connection refused", dnsReason(err))
}

// Without a verifier (tollgate validate) nothing is resolved: the backend
// is reported not verified and not served, and the change is accepted.
func TestStoreWithoutVerifierResolvesNothing(t *testing.T) {
	st, err := New(Options{})
	require.NoError(t, err)
	cfg, err := st.Replace("test", decode(t, rdnsPolicies("127.0.0.1:1")), nil)
	require.NoError(t, err)
	b := backendOf(t, cfg, "good")
	require.Equal(t, "the reverse DNS of good.example.test has not been verified", b.Unavailable)
	c := conditionOf(t, cfg, "Backend/good")
	require.Equal(t, "ReverseDNSNotVerified", c.Reason)
	require.Contains(t, c.Message, "tollgate validate never does")
}

// Matching is on a label boundary and ignores case.
func TestUnderSuffix(t *testing.T) {
	for name, want := range map[string]bool{
		"openai.com":        true,
		"edge.openai.com":   true,
		"a.b.openai.com":    true,
		"evilopenai.com":    false,
		"openai.com.evil":   false,
		"openai.co":         false,
		"edge.openai.com.x": false,
	} {
		require.Equal(t, want, underSuffix(name, []string{"openai.com"}), name)
	}
}

func addrOf(t *testing.T, hostport string) model.Address {
	t.Helper()
	host, port, err := net.SplitHostPort(hostport)
	require.NoError(t, err)
	var p uint32
	_, err = fmt.Sscan(port, &p)
	require.NoError(t, err)
	return model.Address{IP: host, Port: p}
}
