package model

import (
	"sort"
	"time"
)

// RateLimitSettings are one RateLimitPolicy's effect on the scope it
// targets (a gateway, a backend or a route). Unset fields fall back to the
// next scope: HTTPRoute over Backend over Gateway over tollgate's defaults.
// Limits merge by name: a more specific scope's limit replaces a less
// specific one of the same name, and limits of other names add up.
type RateLimitSettings struct {
	// Policy is the RateLimitPolicy this comes from.
	Policy Ref
	// Limits in spec order.
	Limits []RateLimit
	// Local is the per-Envoy request limit (no rate limit service); nil
	// means none at this scope.
	Local *LocalRateLimit
	// DefaultMaxOutputTokens is the output reservation of a request whose
	// body asks for no maximum (max_tokens, max_completion_tokens).
	DefaultMaxOutputTokens *uint64
}

// Rate limit units: the window a limit counts in.
const (
	PerSecond = "Second"
	PerMinute = "Minute"
	PerHour   = "Hour"
	PerDay    = "Day"
)

// RateLimitUnits are the units in increasing length.
var RateLimitUnits = []string{PerSecond, PerMinute, PerHour, PerDay}

// UnitDuration is a unit's window.
func UnitDuration(unit string) time.Duration {
	switch unit {
	case PerSecond:
		return time.Second
	case PerMinute:
		return time.Minute
	case PerHour:
		return time.Hour
	case PerDay:
		return 24 * time.Hour
	}
	return 0
}

// What a limit counts.
const (
	CountRequests     = "requests"
	CountInputTokens  = "input"
	CountOutputTokens = "output"
	CountTotalTokens  = "total"
)

// Keys a limit's counters are split by. Identity keys come from the
// verified client certificate only.
const (
	KeySPIFFEID       = "SPIFFEID"
	KeyNamespace      = "Namespace"
	KeyServiceAccount = "ServiceAccount"
	KeySourceCIDR     = "SourceCIDR"
	KeyModel          = "Model"
	KeyRoute          = "Route"
	KeyBackend        = "Backend"
)

// RateLimitKeys lists the keys in the order their descriptor entries are
// emitted, whatever the order in the policy, so that equal key sets make
// equal counters.
var RateLimitKeys = []string{KeySPIFFEID, KeyNamespace, KeyServiceAccount, KeySourceCIDR, KeyModel, KeyRoute, KeyBackend}

// IdentityKey reports whether a key reads the client's SPIFFE ID.
func IdentityKey(k string) bool {
	return k == KeySPIFFEID || k == KeyNamespace || k == KeyServiceAccount
}

// RateLimit is one limit: a budget of requests or tokens per window, with
// one counter per distinct value of its keys.
type RateLimit struct {
	// Policy is the RateLimitPolicy that declares it; Index its position
	// in spec.limits.
	Policy Ref
	Index  int
	// Name is unique within the policy; with the policy it names the
	// counters (no two policies share one). A token limit's name carries
	// its type (team/input): one spec limit becomes one RateLimit per
	// type, all with the spec limit's name as Group.
	Name  string
	Group string
	// Counts is CountRequests or a token type.
	Counts string
	// Amount is the budget per Unit.
	Amount uint64
	Unit   string
	// Keys split the counters, in RateLimitKeys order. ServiceAccount
	// implies Namespace.
	Keys []string
	// SourceCIDRs name groups of client addresses for KeySourceCIDR, by
	// group name; a client outside every group is not counted by the limit.
	SourceCIDRs map[string][]string
	// Shadow counts and reports but never refuses.
	Shadow bool
}

// Tokens reports whether the limit counts tokens.
func (l RateLimit) Tokens() bool { return l.Counts != CountRequests }

// HasKey reports whether the limit is split by k.
func (l RateLimit) HasKey(k string) bool {
	for _, x := range l.Keys {
		if x == k {
			return true
		}
	}
	return false
}

// SortKeys puts keys in RateLimitKeys order and adds Namespace to
// ServiceAccount (a service account name is only unique in its namespace).
func SortKeys(keys []string) []string {
	set := map[string]bool{}
	for _, k := range keys {
		set[k] = true
	}
	if set[KeyServiceAccount] {
		set[KeyNamespace] = true
	}
	var out []string
	for _, k := range RateLimitKeys {
		if set[k] {
			out = append(out, k)
		}
	}
	return out
}

// LocalRateLimit is a per-Envoy token bucket of requests: each Envoy
// admits Requests per Unit on its own, without a rate limit service.
type LocalRateLimit struct {
	Policy   Ref
	Requests uint64
	Unit     string
}

// RateLimitService is a gateway's rate limit service (envoyproxy/ratelimit
// or any implementation of envoy.service.ratelimit.v3), with tollgate
// serving its configuration over ADS.
type RateLimitService struct {
	// Policy is the RateLimitPolicy that names it.
	Policy Ref
	// Backend runs the service (gRPC, HTTP/2).
	Backend *BackendConfig
	// Timeout bounds one ShouldRateLimit call.
	Timeout time.Duration
	// FailOpenRequests admits requests whose request limits cannot be
	// checked (the service is down or slow); FailOpenTokens the same for
	// token budgets. Defaults: requests open, tokens closed.
	FailOpenRequests bool
	FailOpenTokens   bool
}

// DefaultRateLimitTimeout bounds a ShouldRateLimit call when the policy
// sets no timeout.
const DefaultRateLimitTimeout = 100 * time.Millisecond

// DefaultMaxOutputTokens is the output reservation of a request that asks
// for no maximum, when no policy sets one.
const DefaultMaxOutputTokens = 4096

// EffectiveRateLimits are the settings that apply to one rule of a route
// on a gateway: the gateway's, those of every backend the rule may send a
// request to, and the route's, merged.
type EffectiveRateLimits struct {
	Limits                 []RateLimit
	Local                  *LocalRateLimit
	DefaultMaxOutputTokens uint64
}

// MergeRateLimits merges scopes from the least to the most specific.
func MergeRateLimits(scopes ...*RateLimitSettings) *EffectiveRateLimits {
	e := &EffectiveRateLimits{DefaultMaxOutputTokens: DefaultMaxOutputTokens}
	any := false
	for _, s := range scopes {
		if s == nil {
			continue
		}
		any = true
		// A limit of this scope replaces every limit of its name from the
		// less specific ones, whatever token types either counts.
		replaced := map[string]bool{}
		for _, l := range s.Limits {
			replaced[l.Group] = true
		}
		kept := e.Limits[:0:0]
		for _, l := range e.Limits {
			if !replaced[l.Group] || l.Policy == s.Policy {
				kept = append(kept, l)
			}
		}
		e.Limits = append(kept, s.Limits...)
		if s.Local != nil {
			e.Local = s.Local
		}
		if s.DefaultMaxOutputTokens != nil {
			e.DefaultMaxOutputTokens = *s.DefaultMaxOutputTokens
		}
	}
	if !any {
		return nil
	}
	sort.SliceStable(e.Limits, func(i, j int) bool {
		a, b := e.Limits[i], e.Limits[j]
		if a.Policy != b.Policy {
			return a.Policy.String() < b.Policy.String()
		}
		return a.Index < b.Index
	})
	return e
}

// HasTokens reports whether any limit counts tokens.
func (e *EffectiveRateLimits) HasTokens() bool {
	for _, l := range e.Limits {
		if l.Tokens() {
			return true
		}
	}
	return false
}

// NeedsUsage reports whether a limit is charged with the provider's
// reported usage at the end of the stream (input and total tokens).
func (e *EffectiveRateLimits) NeedsUsage() bool {
	for _, l := range e.Limits {
		if l.Counts == CountInputTokens || l.Counts == CountTotalTokens {
			return true
		}
	}
	return false
}
