package store

import (
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

// testDNS is an authoritative DNS server on 127.0.0.1 (UDP) answering A,
// AAAA and PTR queries from tables the test changes while it runs.
type testDNS struct {
	addr string

	mu      sync.Mutex
	forward map[string][]netip.Addr // rooted lowercase name → addresses
	reverse map[string][]string     // address → PTR names

	ptrQueries atomic.Int64
}

func startDNS(t *testing.T) *testDNS {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	d := &testDNS{addr: pc.LocalAddr().String(), forward: map[string][]netip.Addr{}, reverse: map[string][]string{}}
	done := make(chan struct{})
	t.Cleanup(func() {
		pc.Close()
		<-done
	})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if resp := d.answer(buf[:n]); resp != nil {
				_, _ = pc.WriteTo(resp, from)
			}
		}
	}()
	return d
}

// setA replaces the addresses of name.
func (d *testDNS) setA(name string, addrs ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []netip.Addr
	for _, a := range addrs {
		out = append(out, netip.MustParseAddr(a))
	}
	d.forward[strings.ToLower(name)+"."] = out
}

// setPTR replaces the PTR names of addr.
func (d *testDNS) setPTR(addr string, names ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.reverse[addr] = names
}

func (d *testDNS) answer(req []byte) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(req)
	if err != nil {
		return nil
	}
	q, err := p.Question()
	if err != nil {
		return nil
	}
	name := strings.ToLower(q.Name.String())
	d.mu.Lock()
	addrs, known := d.forward[name]
	var ptrs []string
	if q.Type == dnsmessage.TypePTR {
		d.ptrQueries.Add(1)
		if ip, ok := fromArpa(name); ok {
			ptrs, known = d.reverse[ip]
		}
	}
	d.mu.Unlock()
	rh := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired, RecursionAvailable: true}
	if !known {
		rh.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, rh)
	_ = b.StartQuestions()
	_ = b.Question(q)
	_ = b.StartAnswers()
	rr := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 60}
	switch q.Type {
	case dnsmessage.TypeA:
		for _, a := range addrs {
			if a.Is4() {
				_ = b.AResource(rr, dnsmessage.AResource{A: a.As4()})
			}
		}
	case dnsmessage.TypeAAAA:
		for _, a := range addrs {
			if a.Is6() {
				_ = b.AAAAResource(rr, dnsmessage.AAAAResource{AAAA: a.As16()})
			}
		}
	case dnsmessage.TypePTR:
		for _, n := range ptrs {
			_ = b.PTRResource(rr, dnsmessage.PTRResource{PTR: dnsmessage.MustNewName(n)})
		}
	}
	msg, err := b.Finish()
	if err != nil {
		return nil
	}
	return msg
}

// fromArpa turns 10.2.0.192.in-addr.arpa. into 192.0.2.10 (IPv4 only).
func fromArpa(name string) (string, bool) {
	rest, ok := strings.CutSuffix(name, ".in-addr.arpa.")
	if !ok {
		return "", false
	}
	parts := strings.Split(rest, ".")
	if len(parts) != 4 {
		return "", false
	}
	ip, err := netip.ParseAddr(parts[3] + "." + parts[2] + "." + parts[1] + "." + parts[0])
	if err != nil {
		return "", false
	}
	return ip.String(), true
}
