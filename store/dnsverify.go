package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tollgate-dev/tollgate/model"
)

// DefaultDNSTimeout bounds one reverse-DNS verification: the forward
// lookup, and the PTR and forward-confirmation lookups of every address.
const DefaultDNSTimeout = 10 * time.Second

// Resolver is what the verifier asks of DNS; *net.Resolver has it.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
	LookupAddr(ctx context.Context, addr string) ([]string, error)
}

// DNSVerifierOptions configure a DNSVerifier.
type DNSVerifierOptions struct {
	// Log gets one line each time a check's result changes (and its first
	// result); nil discards.
	Log *slog.Logger
	// Resolver returns the resolver for a check's servers, asked in order;
	// no servers means tollgate's host's. Default: NetResolver. Tests and
	// goldens replace it.
	Resolver func(servers []model.Address) Resolver
	// Timeout bounds one verification; default DefaultDNSTimeout.
	Timeout time.Duration
}

// DNSVerifier runs the reverse-DNS checks that DNSPolicies ask for. The
// store asks it for results while building a config: a check it has not
// seen yet is verified there and then, so that a new policy is served
// verified from the start; known checks answer from the cache. Run
// re-verifies every check of the served config at its interval and reloads
// the store when a result changes. It logs once per change of a result,
// never per refresh.
type DNSVerifier struct {
	log      *slog.Logger
	resolver func([]model.Address) Resolver
	timeout  time.Duration
	// interval overrides the checks' intervals; tests set it.
	interval time.Duration

	mu      sync.Mutex
	entries map[string]*dnsEntry
	wake    chan struct{}
}

type dnsEntry struct {
	check    model.ReverseDNSCheck
	result   *model.ReverseDNSResult
	checked  time.Time
	retained bool
}

// NewDNSVerifier returns a verifier.
func NewDNSVerifier(opts DNSVerifierOptions) *DNSVerifier {
	v := &DNSVerifier{
		log:      opts.Log,
		resolver: opts.Resolver,
		timeout:  opts.Timeout,
		entries:  map[string]*dnsEntry{},
		wake:     make(chan struct{}, 1),
	}
	if v.log == nil {
		v.log = slog.New(slog.DiscardHandler)
	}
	if v.resolver == nil {
		v.resolver = NetResolver
	}
	if v.timeout <= 0 {
		v.timeout = DefaultDNSTimeout
	}
	return v
}

// NetResolver is the default resolver: the host's (net.DefaultResolver)
// without servers, else Go's resolver sending every query to the servers
// in order, the next one only when one times out or fails (not when it
// answers that a name does not exist). Go's resolver reads /etc/hosts
// before DNS, as the host's own programs do.
func NetResolver(servers []model.Address) Resolver {
	if len(servers) == 0 {
		return net.DefaultResolver
	}
	rs := make(inOrder, len(servers))
	for i, s := range servers {
		addr := s.String()
		rs[i] = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}}
	}
	return rs
}

// inOrder asks its resolvers in turn until one answers.
type inOrder []Resolver

func (rs inOrder) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	var err error
	for _, r := range rs {
		var out []netip.Addr
		if out, err = r.LookupNetIP(ctx, network, host); !retryable(err) {
			return out, err
		}
	}
	return nil, err
}

func (rs inOrder) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	var err error
	for _, r := range rs {
		var out []string
		if out, err = r.LookupAddr(ctx, addr); !retryable(err) {
			return out, err
		}
	}
	return nil, err
}

// retryable is true for errors another server may not give: anything but
// success and "no such name".
func retryable(err error) bool {
	var de *net.DNSError
	return err != nil && !(errors.As(err, &de) && de.IsNotFound) && !errors.Is(err, context.Canceled)
}

// results returns the result of every check, verifying those it has not
// seen before. A nil verifier resolves nothing and returns nil: lowering
// then reports the checks as not verified.
func (v *DNSVerifier) results(checks []model.ReverseDNSCheck) model.ReverseDNSResults {
	if v == nil {
		return nil
	}
	out := model.ReverseDNSResults{}
	var missing []model.ReverseDNSCheck
	v.mu.Lock()
	for _, c := range checks {
		k := c.Key()
		if _, done := out[k]; done {
			continue
		}
		if e := v.entries[k]; e != nil {
			out[k] = e.result
			continue
		}
		out[k] = nil
		missing = append(missing, c)
	}
	v.mu.Unlock()
	got := v.verifyAll(context.Background(), missing)
	for i, c := range missing {
		out[c.Key()] = got[i]
		v.record(c, got[i], false)
	}
	return out
}

// retain keeps the checks of the config now served, for Run to refresh,
// and forgets the others.
func (v *DNSVerifier) retain(checks []model.ReverseDNSCheck) {
	if v == nil {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	keep := map[string]model.ReverseDNSCheck{}
	for _, c := range checks {
		k := c.Key()
		// Backends sharing a check share its result; the shortest interval
		// serves them all.
		if prev, ok := keep[k]; ok && prev.Interval <= c.Interval {
			continue
		}
		keep[k] = c
	}
	for k, e := range v.entries {
		c, ok := keep[k]
		if !ok {
			delete(v.entries, k)
			continue
		}
		e.check, e.retained = c, true
	}
	select {
	case v.wake <- struct{}{}:
	default:
	}
}

// record stores a result and logs it when it differs from the previous
// one. It reports whether it changed. A result for a check retain has
// dropped meanwhile is discarded when refreshed is true.
func (v *DNSVerifier) record(c model.ReverseDNSCheck, r *model.ReverseDNSResult, refreshed bool) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	k := c.Key()
	e := v.entries[k]
	if e == nil {
		if refreshed {
			return false
		}
		e = &dnsEntry{check: c}
		v.entries[k] = e
	}
	changed := e.result == nil || !e.result.Equal(r)
	e.result, e.checked = r, time.Now()
	if !changed {
		return false
	}
	suffixes := "." + strings.Join(c.AllowedSuffixes, ", .")
	if len(r.Verified) == 0 {
		v.log.Warn("reverse DNS: no address verified; backends that require it are not served",
			"hostname", c.Hostname, "allowed_suffixes", suffixes, "result", r.Describe())
	} else {
		v.log.Info("reverse DNS verified", "hostname", c.Hostname, "allowed_suffixes", suffixes,
			"serving", strings.Join(r.Verified, ","), "result", r.Describe())
	}
	return true
}

// Run re-verifies every retained check when its interval has passed since
// its last verification, and reloads st when any result changed, until
// ctx ends. tollgate serve runs it next to the file watch.
func (v *DNSVerifier) Run(ctx context.Context, st *Store) error {
	for {
		due, next := v.due(time.Now())
		if len(due) > 0 {
			got := v.verifyAll(ctx, due)
			if ctx.Err() != nil {
				return nil
			}
			changed := false
			for i, c := range due {
				if v.record(c, got[i], true) {
					changed = true
				}
			}
			if changed {
				if err := st.Reload(); err != nil {
					v.log.Error("reverse DNS changed, but the reload was refused; still serving the last good config", "err", err)
				}
			}
			continue
		}
		var timer *time.Timer
		var fire <-chan time.Time
		if !next.IsZero() {
			timer = time.NewTimer(time.Until(next))
			fire = timer.C
		}
		select {
		case <-ctx.Done():
			return nil
		case <-v.wake:
		case <-fire:
		}
		if timer != nil {
			timer.Stop()
		}
	}
}

// due lists the retained checks whose interval has passed, and when the
// next one will be due otherwise.
func (v *DNSVerifier) due(now time.Time) ([]model.ReverseDNSCheck, time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	var due []model.ReverseDNSCheck
	var next time.Time
	for _, e := range v.entries {
		if !e.retained {
			continue
		}
		interval := e.check.Interval
		if v.interval > 0 {
			interval = v.interval
		}
		at := e.checked.Add(interval)
		if !at.After(now) {
			due = append(due, e.check)
		} else if next.IsZero() || at.Before(next) {
			next = at
		}
	}
	slices.SortFunc(due, func(a, b model.ReverseDNSCheck) int { return strings.Compare(a.Key(), b.Key()) })
	return due, next
}

// verifyAll runs checks concurrently.
func (v *DNSVerifier) verifyAll(ctx context.Context, checks []model.ReverseDNSCheck) []*model.ReverseDNSResult {
	out := make([]*model.ReverseDNSResult, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Go(func() { out[i] = v.verify(ctx, c) })
	}
	wg.Wait()
	return out
}

// verify resolves the check's hostname and verifies each candidate
// address: it must have a PTR name under an allowed suffix that resolves
// back to it (forward-confirmed reverse DNS). Without the forward
// confirmation anyone who controls the reverse zone of their own addresses
// could name them x.openai.com; with it they would also need the
// openai.com zone.
func (v *DNSVerifier) verify(ctx context.Context, c model.ReverseDNSCheck) *model.ReverseDNSResult {
	ctx, cancel := context.WithTimeout(ctx, v.timeout)
	defer cancel()
	r := v.resolver(c.Resolvers)
	network := "ip"
	switch c.Family {
	case model.FamilyIPv4:
		network = "ip4"
	case model.FamilyIPv6:
		network = "ip6"
	}
	addrs, err := r.LookupNetIP(ctx, network, fqdn(c.Hostname))
	if err != nil {
		return &model.ReverseDNSResult{Err: fmt.Sprintf("cannot resolve %s: %s", c.Hostname, dnsReason(err))}
	}
	cands := candidates(addrs, c.Family)
	if len(cands) == 0 {
		return &model.ReverseDNSResult{Err: fmt.Sprintf("%s has no address of family %s", c.Hostname, c.Family)}
	}
	res := &model.ReverseDNSResult{}
	for _, a := range cands {
		av := verifyAddress(ctx, r, a, c.AllowedSuffixes)
		if av.Verified {
			res.Verified = append(res.Verified, av.IP)
		}
		res.Addresses = append(res.Addresses, av)
	}
	return res
}

// candidates picks the addresses Envoy would use for the family, sorted
// and without duplicates.
func candidates(addrs []netip.Addr, family string) []netip.Addr {
	var v4, v6 []netip.Addr
	for _, a := range addrs {
		a = a.Unmap().WithZone("")
		if a.Is4() {
			v4 = append(v4, a)
		} else {
			v6 = append(v6, a)
		}
	}
	var out []netip.Addr
	switch family {
	case model.FamilyIPv4:
		out = v4
	case model.FamilyIPv6:
		out = v6
	case model.FamilyIPv6Preferred:
		out = v6
		if len(out) == 0 {
			out = v4
		}
	case model.FamilyAny:
		out = append(v4, v6...)
	default: // IPv4Preferred
		out = v4
		if len(out) == 0 {
			out = v6
		}
	}
	slices.SortFunc(out, func(a, b netip.Addr) int { return a.Compare(b) })
	return slices.Compact(out)
}

func verifyAddress(ctx context.Context, r Resolver, a netip.Addr, suffixes []string) model.ReverseDNSAddress {
	av := model.ReverseDNSAddress{IP: a.String()}
	names, err := r.LookupAddr(ctx, a.String())
	if err != nil && !notFound(err) {
		av.Reason = "PTR lookup failed: " + dnsReason(err)
		return av
	}
	for _, n := range names {
		n = strings.TrimSuffix(strings.ToLower(n), ".")
		if n != "" && !slices.Contains(av.PTR, n) {
			av.PTR = append(av.PTR, n)
		}
	}
	slices.Sort(av.PTR)
	if len(av.PTR) == 0 {
		av.Reason = "no PTR record"
		return av
	}
	var reasons []string
	for _, n := range av.PTR {
		if !underSuffix(n, suffixes) {
			continue
		}
		back, err := r.LookupNetIP(ctx, "ip", fqdn(n))
		if err != nil {
			reasons = append(reasons, fmt.Sprintf("cannot resolve %s back: %s", n, dnsReason(err)))
			continue
		}
		for _, b := range back {
			if b.Unmap().WithZone("") == a {
				av.Verified = true
				return av
			}
		}
		reasons = append(reasons, fmt.Sprintf("%s does not resolve back to %s", n, a))
	}
	if len(reasons) == 0 {
		av.Reason = "no PTR name under an allowed suffix"
	} else {
		av.Reason = strings.Join(reasons, ", ")
	}
	return av
}

// underSuffix matches on a label boundary: openai.com allows openai.com
// and edge.openai.com, not evilopenai.com.
func underSuffix(name string, suffixes []string) bool {
	for _, s := range suffixes {
		if name == s || strings.HasSuffix(name, "."+s) {
			return true
		}
	}
	return false
}

// fqdn roots a name so that no search domain is appended to it.
func fqdn(name string) string {
	if strings.HasSuffix(name, ".") {
		return name
	}
	return name + "."
}

func notFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}

// dnsReason is the reason of a DNS error without the server, name and
// local port ("read udp 127.0.0.1:41234->10.0.0.53:53: read: connection
// refused" becomes "connection refused"): results are compared to decide
// whether anything changed, and a reason that differs on every attempt
// would reload and log on every refresh.
func dnsReason(err error) string {
	var de *net.DNSError
	msg := err.Error()
	switch {
	case errors.As(err, &de) && de.IsNotFound:
		return "no such host"
	case errors.As(err, &de) && de.IsTimeout, errors.Is(err, context.DeadlineExceeded):
		return "timed out"
	case errors.As(err, &de):
		msg = de.Err
	}
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		msg = msg[i+2:]
	}
	return msg
}
