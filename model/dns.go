package model

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Address families a DNSPolicy may ask for. Each maps to one of Envoy's
// DnsLookupFamily values.
const (
	FamilyIPv4          = "IPv4"
	FamilyIPv6          = "IPv6"
	FamilyIPv4Preferred = "IPv4Preferred"
	FamilyIPv6Preferred = "IPv6Preferred"
	FamilyAny           = "Any"
)

// DefaultAddressFamily is IPv4 first: many VMs have IPv6 addresses without
// a route to the internet.
const DefaultAddressFamily = FamilyIPv4Preferred

// DefaultReverseDNSRefresh is how often tollgate re-verifies a backend's
// reverse DNS when its DNSPolicy sets no refreshRate.
const DefaultReverseDNSRefresh = 60 * time.Second

// DNSSettings say how Envoy resolves a backend's hostname. Unset fields
// (nil, empty) keep the default: the Envoy host's resolvers, Envoy's 5s
// refresh, no TTL, DefaultAddressFamily.
type DNSSettings struct {
	// Resolvers replace the Envoy host's resolvers.
	Resolvers      []Address
	RefreshRate    *time.Duration
	RespectTTL     *bool
	MinRefreshRate *time.Duration
	AddressFamily  string
}

// Over returns s with every field that over sets replaced by over's: the
// field-by-field precedence of a narrower scope.
func (s DNSSettings) Over(over DNSSettings) DNSSettings {
	if over.Resolvers != nil {
		s.Resolvers = over.Resolvers
	}
	if over.RefreshRate != nil {
		s.RefreshRate = over.RefreshRate
	}
	if over.RespectTTL != nil {
		s.RespectTTL = over.RespectTTL
	}
	if over.MinRefreshRate != nil {
		s.MinRefreshRate = over.MinRefreshRate
	}
	if over.AddressFamily != "" {
		s.AddressFamily = over.AddressFamily
	}
	return s
}

// BackendDNS is what DNSPolicies say about one backend.
type BackendDNS struct {
	// Policy is the Backend-scope DNSPolicy, or nil.
	Policy *Ref
	// Backend are that policy's settings; they win over the gateways'
	// defaults field by field.
	Backend DNSSettings
	// Gateways holds the defaults of each gateway that reaches the backend
	// and has a Gateway-scope DNSPolicy. A backend shared by gateways is
	// resolved by each gateway's Envoys with that gateway's defaults.
	Gateways map[Ref]DNSSettings
	// ReverseDNS is set when the backend's addresses must pass tollgate's
	// reverse-DNS check before Envoy may use them.
	ReverseDNS *ReverseDNSState
}

// For returns the settings the Envoys of gateway gw resolve the backend
// with.
func (d BackendDNS) For(gw Ref) DNSSettings {
	return d.Gateways[gw].Over(d.Backend)
}

// ReverseDNSState is a backend's reverse-DNS check and its outcome.
type ReverseDNSState struct {
	// Policy is the DNSPolicy that asks for the check.
	Policy Ref
	Check  ReverseDNSCheck
	// Result is nil when no verification ran (the store resolves no names,
	// as in tollgate validate).
	Result *ReverseDNSResult
}

// ReverseDNSCheck is one verification tollgate runs: resolve Hostname,
// then keep the addresses whose PTR names end in an allowed suffix and
// resolve back to the address (forward-confirmed reverse DNS).
type ReverseDNSCheck struct {
	Hostname string
	// Resolvers tollgate asks, in order; empty means tollgate's host's.
	Resolvers []Address
	// Family picks the candidate addresses, as Envoy would.
	Family string
	// AllowedSuffixes are lowercase domains without a leading dot; a PTR
	// name matches one when it equals it or ends in "." + it.
	AllowedSuffixes []string
	// Interval between re-verifications; not part of the key.
	Interval time.Duration
}

// Key identifies the check: checks with equal keys have one result.
func (c ReverseDNSCheck) Key() string {
	rs := make([]string, len(c.Resolvers))
	for i, r := range c.Resolvers {
		rs[i] = r.String()
	}
	return fmt.Sprintf("%s|%s|%s|%s", c.Hostname, c.Family, strings.Join(rs, ","), strings.Join(c.AllowedSuffixes, ","))
}

// ReverseDNSResult is the outcome of one check.
type ReverseDNSResult struct {
	// Verified are the addresses Envoy may use, sorted.
	Verified []string
	// Addresses are every candidate address with what its PTR lookup
	// found, sorted by address.
	Addresses []ReverseDNSAddress
	// Err is set when the hostname itself could not be resolved.
	Err string
}

// ReverseDNSAddress is the verdict on one address.
type ReverseDNSAddress struct {
	IP string
	// PTR are the names the address's PTR records hold, lowercase.
	PTR      []string
	Verified bool
	// Reason says why the address was refused.
	Reason string
}

// Equal reports whether two results would serve and report the same.
func (r *ReverseDNSResult) Equal(o *ReverseDNSResult) bool {
	if r == nil || o == nil {
		return r == o
	}
	return r.Describe() == o.Describe() && strings.Join(r.Verified, ",") == strings.Join(o.Verified, ",")
}

// Describe lists each address with its PTR names and verdict, for status
// and logs.
func (r *ReverseDNSResult) Describe() string {
	if r.Err != "" {
		return r.Err
	}
	parts := make([]string, len(r.Addresses))
	for i, a := range r.Addresses {
		ptr := "no PTR"
		if len(a.PTR) > 0 {
			ptr = "PTR " + strings.Join(a.PTR, ", ")
		}
		if a.Verified {
			parts[i] = fmt.Sprintf("%s (%s) verified", a.IP, ptr)
		} else {
			parts[i] = fmt.Sprintf("%s (%s) refused: %s", a.IP, ptr, a.Reason)
		}
	}
	return strings.Join(parts, "; ")
}

// ReverseDNSResults maps ReverseDNSCheck keys to results: what the store
// hands to lowering, as Materials does for files.
type ReverseDNSResults map[string]*ReverseDNSResult

// String renders the address as Envoy and resolv.conf write it: ip:port,
// IPv6 in brackets.
func (a Address) String() string {
	if ip, err := netip.ParseAddr(a.IP); err == nil {
		return netip.AddrPortFrom(ip, uint16(a.Port)).String()
	}
	return fmt.Sprintf("%s:%d", a.IP, a.Port)
}
