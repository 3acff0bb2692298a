package translate_test

import (
	"context"
	"net"
	"net/netip"
	"strings"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/store"
)

// goldenDNS is the DNS the golden cases see: a fixed table, so that
// reverse-DNS cases stay offline and deterministic. Addresses are from the
// documentation ranges.
var goldenDNS = staticDNS{
	forward: map[string][]string{
		// Verifies: every PTR is under openai.com and resolves back.
		"api.openai.com":     {"192.0.2.11", "192.0.2.10", "2001:db8::10"},
		"edge-1.openai.com":  {"192.0.2.10"},
		"edge-2.openai.com":  {"192.0.2.11"},
		"edge-v6.openai.com": {"2001:db8::10"},
		// Fails: the PTR is outside the allowed suffix.
		"api.anthropic.com": {"198.51.100.7"},
		// Half verifies: gpu-1's name resolves elsewhere (forward
		// confirmation fails), gpu-2's resolves back.
		"vllm.models.internal":  {"203.0.113.5", "203.0.113.6"},
		"gpu-1.models.internal": {"203.0.113.99"},
		"gpu-2.models.internal": {"203.0.113.6"},
		// Fails forward confirmation only.
		"spoofed.models.internal": {"203.0.113.5"},
	},
	reverse: map[string][]string{
		"192.0.2.10":   {"edge-1.openai.com."},
		"192.0.2.11":   {"EDGE-2.OpenAI.com."},
		"2001:db8::10": {"edge-v6.openai.com."},
		"198.51.100.7": {"host.evil.example.", "api.anthropic.com.evil.example."},
		"203.0.113.5":  {"gpu-1.models.internal."},
		"203.0.113.6":  {"gpu-2.models.internal."},
	},
}

func goldenVerifier() *store.DNSVerifier {
	return store.NewDNSVerifier(store.DNSVerifierOptions{
		Resolver: func([]model.Address) store.Resolver { return goldenDNS },
	})
}

type staticDNS struct {
	forward map[string][]string
	reverse map[string][]string
}

func (d staticDNS) LookupNetIP(_ context.Context, network, host string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, s := range d.forward[strings.TrimSuffix(host, ".")] {
		a := netip.MustParseAddr(s)
		if network == "ip" || (network == "ip4") == a.Is4() {
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return out, nil
}

func (d staticDNS) LookupAddr(_ context.Context, addr string) ([]string, error) {
	names, ok := d.reverse[addr]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: addr, IsNotFound: true}
	}
	return names, nil
}
