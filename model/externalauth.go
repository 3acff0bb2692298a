package model

import "time"

// ExternalAuthSettings are an ExternalAuth's effect on one route: which
// clients it admits, and the external authorization service it asks, if
// any.
//
// Deny rules come first: a request that matches any of them is refused.
// Then, when there is at least one allow rule, a request must match one of
// them. Within a rule, the from entries are alternatives (any may match);
// within an entry, every field that is set must match.
type ExternalAuthSettings struct {
	// Policy is the ExternalAuth this comes from.
	Policy Ref
	// Rules in spec order.
	Rules []AccessRule
	// Service is the external authorization service; nil means none.
	Service *AuthService
}

// Access rule actions.
const (
	AccessAllow = "Allow"
	AccessDeny  = "Deny"
)

// AccessRule is one rule of an ExternalAuth.
type AccessRule struct {
	// Index is the rule's position in spec.rules.
	Index int
	// Action is AccessAllow or AccessDeny.
	Action string
	// From are the clients the rule matches: any of them.
	From []AccessSource
}

// AccessSource is one from entry: a client matches when every field that is
// set matches. Identity fields match the verified client certificate's
// SPIFFE ID (its URI SAN), never a header.
type AccessSource struct {
	// SPIFFEID matches the whole ID.
	SPIFFEID *SPIFFEIDMatch
	// TrustDomain, Namespace and ServiceAccount match the parts of the ID
	// the listener's IdentityPattern names ("" matches any).
	TrustDomain    string
	Namespace      string
	ServiceAccount string
	// SourceCIDRs match the connection's peer address (any of them).
	SourceCIDRs []string
}

// MatchesIdentity reports whether the entry looks at the client's SPIFFE
// ID, which only a listener that verifies client certificates has.
func (s AccessSource) MatchesIdentity() bool {
	return s.SPIFFEID != nil || s.TrustDomain != "" || s.Namespace != "" || s.ServiceAccount != ""
}

// SPIFFEIDMatch matches a SPIFFE ID: exactly one field is set.
type SPIFFEIDMatch struct {
	// Exact is the whole ID.
	Exact string
	// Prefix ends in "/", so that it matches whole path segments.
	Prefix string
	// Pattern is an ID in which "*" stands for one whole path segment.
	Pattern string
}

// SPIFFESegment is what one segment of a SPIFFE ID may hold, and what a
// "*" of a SPIFFEIDMatch pattern matches.
const SPIFFESegment = identitySegment

// AuthService is an external authorization service (Envoy's ext_authz).
type AuthService struct {
	// GRPC selects Envoy's gRPC authorization API; otherwise the HTTP one.
	GRPC bool
	// Backend runs the service; its cluster is built like any backend's.
	Backend *BackendConfig
	// PathPrefix is prepended to the request path for an HTTP service.
	PathPrefix string
	// Timeout bounds one check.
	Timeout time.Duration
	// FailOpen admits requests when the service cannot answer; by default
	// they are refused.
	FailOpen bool
	// Headers are the request headers the service sees, lowercase; empty
	// means Envoy's default (every header for gRPC; for HTTP Host, Method,
	// Path, Content-Length and Authorization only).
	Headers []string
}

// DefaultAuthTimeout bounds an authorization check when the policy sets no
// timeout.
const DefaultAuthTimeout = time.Second

// SourceRestriction is one backend's EgressPolicy allowedSources on a rule
// that reaches it.
type SourceRestriction struct {
	// Policy is the EgressPolicy.
	Policy Ref
	// CIDRs the client must come from (any of them).
	CIDRs []string
}

// VerifiesClients reports whether a listener verifies client certificates,
// so that its clients have a SPIFFE ID to match, and if not, why (for a
// message that continues "listener x of Gateway/y ..."). With
// clientValidation mode Optional a client may present no certificate: it
// then matches no identity entry (allow rules refuse it, deny rules on
// identity do not apply to it).
func VerifiesClients(l *ListenerConfig) (bool, string) {
	switch {
	case l.TLS == nil:
		return false, "serves plain HTTP"
	case l.TLS.Client == nil:
		return false, "does not ask for client certificates (no tls.clientValidation)"
	}
	return true, ""
}
