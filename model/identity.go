package model

import (
	"fmt"
	"regexp"
	"strings"
)

// IdentityPattern says how a SPIFFE ID names a workload, with the
// placeholders {trustDomain}, {namespace} and {serviceAccount}, each
// standing for one path segment (the trust domain: the ID's host). The
// default is DefaultIdentityPattern, the convention of SPIRE's Kubernetes
// registrar and of Istio.
//
// The identity is always the URI SAN of the client certificate the gateway
// verified: Envoy's RBAC matches it as the peer's principal and the access
// log records it (%DOWNSTREAM_PEER_URI_SAN%). No request header carries it,
// so a workload cannot claim one it does not hold.
type IdentityPattern struct {
	raw string
	re  *regexp.Regexp
}

// DefaultIdentityPattern is the pattern of a listener that sets none.
const DefaultIdentityPattern = "spiffe://{trustDomain}/ns/{namespace}/sa/{serviceAccount}"

// Identity placeholders.
const (
	placeholderTrustDomain    = "{trustDomain}"
	placeholderNamespace      = "{namespace}"
	placeholderServiceAccount = "{serviceAccount}"
)

// identitySegment is what one placeholder matches: one path segment of a
// SPIFFE ID (RFC: letters, digits, '.', '-', '_').
const identitySegment = `[A-Za-z0-9._-]+`

// ParseIdentityPattern reads a pattern; "" is the default.
func ParseIdentityPattern(s string) (IdentityPattern, error) {
	if s == "" {
		s = DefaultIdentityPattern
	}
	if !strings.HasPrefix(s, "spiffe://"+placeholderTrustDomain+"/") {
		return IdentityPattern{}, fmt.Errorf("%q must start with spiffe://{trustDomain}/", s)
	}
	for _, p := range []string{placeholderNamespace, placeholderServiceAccount} {
		if strings.Count(s, p) != 1 {
			return IdentityPattern{}, fmt.Errorf("%q must contain %s exactly once", s, p)
		}
	}
	if strings.Count(s, placeholderTrustDomain) != 1 {
		return IdentityPattern{}, fmt.Errorf("%q must contain %s exactly once", s, placeholderTrustDomain)
	}
	rest := strings.NewReplacer(placeholderTrustDomain, "", placeholderNamespace, "", placeholderServiceAccount, "").Replace(s)
	if strings.ContainsAny(rest, "{}?#*\\ ") {
		return IdentityPattern{}, fmt.Errorf("%q: only {trustDomain}, {namespace} and {serviceAccount} may stand for parts of the ID", s)
	}
	for _, seg := range strings.Split(strings.TrimPrefix(s, "spiffe://"), "/") {
		if seg == "" {
			return IdentityPattern{}, fmt.Errorf("%q has an empty path segment", s)
		}
		if strings.Contains(seg, "{") && !isPlaceholder(seg) {
			return IdentityPattern{}, fmt.Errorf("%q: a placeholder must be a whole path segment, not part of %q", s, seg)
		}
	}
	p := IdentityPattern{raw: s}
	p.re = regexp.MustCompile(p.Regex("", "", ""))
	return p, nil
}

func isPlaceholder(seg string) bool {
	return seg == placeholderTrustDomain || seg == placeholderNamespace || seg == placeholderServiceAccount
}

// String returns the pattern as written (the default when unset).
func (p IdentityPattern) String() string {
	if p.raw == "" {
		return DefaultIdentityPattern
	}
	return p.raw
}

// Regex is an anchored RE2 regular expression for the SPIFFE IDs of the
// pattern with the given trust domain, namespace and service account; an
// empty argument matches any value of its segment.
func (p IdentityPattern) Regex(trustDomain, namespace, serviceAccount string) string {
	value := func(v string) string {
		if v == "" {
			return identitySegment
		}
		return regexp.QuoteMeta(v)
	}
	var b strings.Builder
	b.WriteString("^")
	rest := p.String()
	for rest != "" {
		i := strings.IndexByte(rest, '{')
		if i < 0 {
			b.WriteString(regexp.QuoteMeta(rest))
			break
		}
		b.WriteString(regexp.QuoteMeta(rest[:i]))
		rest = rest[i:]
		switch {
		case strings.HasPrefix(rest, placeholderTrustDomain):
			b.WriteString(value(trustDomain))
			rest = rest[len(placeholderTrustDomain):]
		case strings.HasPrefix(rest, placeholderNamespace):
			b.WriteString(value(namespace))
			rest = rest[len(placeholderNamespace):]
		case strings.HasPrefix(rest, placeholderServiceAccount):
			b.WriteString(value(serviceAccount))
			rest = rest[len(placeholderServiceAccount):]
		default:
			b.WriteString(regexp.QuoteMeta(rest[:1]))
			rest = rest[1:]
		}
	}
	b.WriteString("$")
	return b.String()
}

// Parse splits a SPIFFE ID by the pattern; ok is false when it does not
// follow the pattern.
func (p IdentityPattern) Parse(id string) (trustDomain, namespace, serviceAccount string, ok bool) {
	if p.re == nil {
		d, _ := ParseIdentityPattern(p.raw)
		p = d
	}
	if !p.re.MatchString(id) {
		return "", "", "", false
	}
	idSegs := strings.Split(strings.TrimPrefix(id, "spiffe://"), "/")
	patSegs := strings.Split(strings.TrimPrefix(p.String(), "spiffe://"), "/")
	for i, seg := range patSegs {
		switch seg {
		case placeholderTrustDomain:
			trustDomain = idSegs[i]
		case placeholderNamespace:
			namespace = idSegs[i]
		case placeholderServiceAccount:
			serviceAccount = idSegs[i]
		}
	}
	return trustDomain, namespace, serviceAccount, true
}

// Identity parts, for CaptureRegex.
const (
	PartNamespace      = "namespace"
	PartServiceAccount = "serviceAccount"
)

// CaptureRegex is an anchored RE2 expression for the pattern's IDs whose
// only capturing group is the given part (PartNamespace or
// PartServiceAccount).
func (p IdentityPattern) CaptureRegex(part string) string {
	const mark = "\x00"
	var re string
	switch part {
	case PartNamespace:
		re = p.Regex("", mark, "")
	case PartServiceAccount:
		re = p.Regex("", "", mark)
	default:
		panic("unknown identity part " + part)
	}
	return strings.Replace(re, regexp.QuoteMeta(mark), "("+identitySegment+")", 1)
}
