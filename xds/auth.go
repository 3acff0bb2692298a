package xds

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/tollgate-dev/tollgate/model"
)

// IdentityBinding says which gateways an Envoy with a client certificate
// identity may serve, i.e. name in its node.cluster.
type IdentityBinding struct {
	// Identity is a URI SAN of the client certificate, e.g. the SPIFFE ID
	// spiffe://corp.example/gateway/egress, or, for certificates without
	// URI SANs, one of its DNS SANs. Matched exactly (DNS names without
	// regard to case), except for a SPIFFE ID pattern ending in "/*",
	// e.g. spiffe://corp.example/gateway/egress/*, which matches every
	// SPIFFE ID with at least one more path segment below that prefix. An
	// exact entry wins over patterns, and a longer pattern over a shorter
	// one; the gateways of the winner alone apply. "*" anywhere else is
	// refused.
	Identity string `json:"identity"`
	// Gateways are gateway keys as in node.cluster (model.GatewayKey):
	// "name" in the default namespace, "namespace/name" elsewhere.
	Gateways []string `json:"gateways"`
}

// Authorizer decides which gateways a verified identity may serve.
type Authorizer struct {
	gateways map[string][]string // identity → sorted gateway keys
	// patterns are the "/*" entries, longest prefix first.
	patterns []identityPattern
}

// identityPattern is an xds-identities entry ending in "/*".
type identityPattern struct {
	entry    string // as configured
	prefix   string // up to and including the last "/"
	gateways []string
}

var (
	gatewayNamespaceRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	gatewayNameRE      = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`)
)

// NewAuthorizer checks bindings and returns the authorizer they describe.
// It reports every mistake at once.
//
// A gateway wildcard ("*") is refused on purpose: the identity would also
// receive every gateway added later, with its secrets, without anyone
// having granted it; listing the gateways keeps every grant reviewable.
func NewAuthorizer(bindings []IdentityBinding) (*Authorizer, error) {
	a := &Authorizer{gateways: map[string][]string{}}
	var errs []error
	for i, b := range bindings {
		field := fmt.Sprintf("xds-identities[%d]", i)
		id := normalizeIdentity(b.Identity)
		switch {
		case id == "":
			errs = append(errs, fmt.Errorf("%s.identity: must be set to a client certificate's URI SAN (e.g. spiffe://corp.example/gateway/egress) or DNS SAN", field))
			continue
		case strings.Contains(id, "*"):
			if err := checkPattern(id); err != nil {
				errs = append(errs, fmt.Errorf("%s.identity: %q: %w", field, b.Identity, err))
				continue
			}
		}
		if a.gateways[id] != nil {
			errs = append(errs, fmt.Errorf("%s.identity: %q is listed twice; merge its gateways into one entry", field, b.Identity))
			continue
		}
		if len(b.Gateways) == 0 {
			errs = append(errs, fmt.Errorf("%s.gateways: must list the gateways %q may serve", field, b.Identity))
			continue
		}
		var keys []string
		for j, g := range b.Gateways {
			key, err := gatewayKey(g)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s.gateways[%d]: %w", field, j, err))
				continue
			}
			keys = append(keys, key)
		}
		slices.Sort(keys)
		a.gateways[id] = slices.Compact(keys)
		if strings.HasSuffix(id, "/*") {
			a.patterns = append(a.patterns, identityPattern{entry: id, prefix: strings.TrimSuffix(id, "*"), gateways: a.gateways[id]})
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	slices.SortStableFunc(a.patterns, func(x, y identityPattern) int { return len(y.prefix) - len(x.prefix) })
	return a, nil
}

// checkPattern accepts a SPIFFE ID followed by "/*", and nothing else with
// a "*": a pattern that matched inside a segment or across trust domains
// would grant more than anyone can tell from reading it.
func checkPattern(id string) error {
	base, ok := strings.CutSuffix(id, "/*")
	if !ok || strings.Contains(base, "*") {
		return errors.New(`"*" is allowed only as the last path segment of a SPIFFE ID, as in spiffe://corp.example/gateway/egress/*; other identities are matched exactly`)
	}
	parsed, err := spiffeid.FromString(base)
	if err != nil {
		return fmt.Errorf("a pattern must be a SPIFFE ID followed by /*: %w", err)
	}
	if parsed.Path() == "" {
		return errors.New("a pattern must name at least one path segment before /*; a whole trust domain is too wide a grant")
	}
	return nil
}

// gatewayKey checks a gateway key and returns it the way node.cluster
// names it: "default/egress" is "egress".
func gatewayKey(g string) (string, error) {
	if g == "*" || strings.Contains(g, "*") {
		return "", fmt.Errorf("%q: wildcards are not allowed, since the identity would silently gain every gateway added later and its secrets; list the gateways", g)
	}
	ns, name, scoped := strings.Cut(g, "/")
	if !scoped {
		ns, name = model.DefaultNamespace, g
	}
	if !gatewayNameRE.MatchString(name) || len(name) > 253 || !gatewayNamespaceRE.MatchString(ns) || len(ns) > 63 {
		return "", fmt.Errorf("%q: want a gateway name, or namespace/name outside the default namespace", g)
	}
	return model.GatewayKey(model.Ref{Namespace: ns, Name: name}), nil
}

// normalizeIdentity lowercases DNS names, which are case-insensitive; URIs
// are kept as they are.
func normalizeIdentity(id string) string {
	id = strings.TrimSpace(id)
	if strings.Contains(id, "://") {
		return id
	}
	return strings.ToLower(id)
}

// Gateways lists the gateways identity may serve: those of its exact
// entry, or else of the longest pattern that matches it.
func (a *Authorizer) Gateways(identity string) []string {
	if a == nil {
		return nil
	}
	id := normalizeIdentity(identity)
	if strings.Contains(id, "*") {
		return nil // a certificate's identity, never a pattern
	}
	if gws, ok := a.gateways[id]; ok {
		return slices.Clone(gws)
	}
	for _, p := range a.patterns {
		if rest, ok := strings.CutPrefix(id, p.prefix); ok && rest != "" {
			return slices.Clone(p.gateways)
		}
	}
	return nil
}

// TrustDomains are the trust domains of the SPIFFE IDs and patterns in the
// bindings: an Envoy's SVID is only accepted from one of them.
func (a *Authorizer) TrustDomains() []spiffeid.TrustDomain {
	if a == nil {
		return nil
	}
	seen := map[spiffeid.TrustDomain]bool{}
	var out []spiffeid.TrustDomain
	for id := range a.gateways {
		id = strings.TrimSuffix(id, "/*")
		parsed, err := spiffeid.FromString(id)
		if err != nil || seen[parsed.TrustDomain()] {
			continue
		}
		seen[parsed.TrustDomain()] = true
		out = append(out, parsed.TrustDomain())
	}
	slices.SortFunc(out, func(x, y spiffeid.TrustDomain) int { return strings.Compare(x.Name(), y.Name()) })
	return out
}

// Identity conditions on /status/policies.
const (
	// ConditionIdentityBound says whether an identity (exact or pattern)
	// of xds-identities grants at least one gateway of the current config.
	ConditionIdentityBound = "IdentityBound"
	// ReasonNoSuchGateway: none of the pattern's gateways exists.
	ReasonNoSuchGateway = "NoSuchGateway"
)

// patternConditions reports each identity, exact or pattern, none of whose
// gateways is in the current configuration (known), most likely a typo that
// leaves an Envoy, or a whole fleet, refused.
func (a *Authorizer) patternConditions(known func(gateway string) bool) []model.Condition {
	if a == nil {
		return nil
	}
	var out []model.Condition
	exact := make([]string, 0, len(a.gateways))
	for id := range a.gateways {
		if !strings.HasSuffix(id, "/*") { // patterns follow, with their own wording
			exact = append(exact, id)
		}
	}
	sort.Strings(exact)
	for _, id := range exact {
		if slices.ContainsFunc(a.gateways[id], known) {
			continue
		}
		out = append(out, model.Condition{
			Object: "xds-identities/" + id, Type: ConditionIdentityBound, Status: false, Reason: ReasonNoSuchGateway,
			Message: fmt.Sprintf("identity %q may serve %q, but no such gateway is in the current configuration, so an Envoy with this identity is refused; fix the gateway names in xds-identities", id, a.gateways[id]),
		})
	}
	for _, p := range a.patterns {
		if slices.ContainsFunc(p.gateways, known) {
			continue
		}
		out = append(out, model.Condition{
			Object: "xds-identities/" + p.entry, Type: ConditionIdentityBound, Status: false, Reason: ReasonNoSuchGateway,
			Message: fmt.Sprintf("identity pattern %q may serve %q, but no such gateway is in the current configuration, so every Envoy with a matching SPIFFE ID is refused; fix the gateway names in xds-identities", p.entry, p.gateways),
		})
	}
	return out
}

// allow returns the identity among ids that may serve gateway.
func (a *Authorizer) allow(ids []string, gateway string) (string, bool) {
	for _, id := range ids {
		if slices.Contains(a.Gateways(id), gateway) {
			return id, true
		}
	}
	return "", false
}

// Identities are the identities tollgate reads from a verified client
// certificate: its URI SANs (a SPIFFE X.509-SVID has exactly one), or, if
// it has none, its DNS SANs. The subject's common name is never used.
func Identities(cert *x509.Certificate) []string {
	var ids []string
	for _, u := range cert.URIs {
		ids = append(ids, u.String())
	}
	if len(ids) > 0 {
		return ids
	}
	for _, d := range cert.DNSNames {
		ids = append(ids, normalizeIdentity(d))
	}
	return ids
}

// peerIdentities reads the verified identities of the client of a stream.
func peerIdentities(ctx context.Context) ([]string, net.Addr, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil, nil, errors.New("no peer information on the stream")
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.PeerCertificates) == 0 {
		return nil, p.Addr, errors.New("the connection has no verified client certificate")
	}
	ids := Identities(info.State.PeerCertificates[0])
	if len(ids) == 0 {
		return nil, p.Addr, errors.New("the client certificate has no URI or DNS SAN to identify it by; issue it with a SPIFFE ID (URI SAN) or a DNS SAN")
	}
	return ids, p.Addr, nil
}

// describeIdentities renders one identity or the list of a certificate's.
func describeIdentities(ids []string) string {
	if len(ids) == 1 {
		return fmt.Sprintf("identity %q", ids[0])
	}
	return fmt.Sprintf("identities %q", ids)
}

// refusal explains to the Envoy, and to tollgate's log, why a node may
// not have the gateway it asks for, and how to fix it.
func (a *Authorizer) refusal(ids []string, nodeID, gateway string) string {
	who := fmt.Sprintf("xDS access denied: certificate %s (node %q)", describeIdentities(ids), nodeID)
	if gateway == "" {
		return who + " did not name a gateway: set node.cluster in the Envoy bootstrap to the gateway it serves (tollgate bootstrap --gateway)"
	}
	var allowed []string
	for _, id := range ids {
		allowed = append(allowed, a.Gateways(id)...)
	}
	slices.Sort(allowed)
	allowed = slices.Compact(allowed)
	if len(allowed) == 0 {
		return fmt.Sprintf("%s asked for gateway %q, but no gateway is bound to this identity; "+
			"to allow it, add {identity: %q, gateways: [%q]} to xds-identities in tollgate's config",
			who, gateway, ids[0], gateway)
	}
	return fmt.Sprintf("%s asked for gateway %q, but may serve only %q; "+
		"fix node.cluster in this Envoy's bootstrap (tollgate bootstrap --gateway), "+
		"or add %q to the gateways of %q in xds-identities in tollgate's config",
		who, gateway, allowed, gateway, ids[0])
}

// CheckPlaintextAddr reports whether plaintext xDS may listen on addr:
// only on a loopback address, where no other host can reach it.
func CheckPlaintextAddr(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("xDS address %q: want host:port: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("xDS address %q is not a loopback address, and plaintext xDS would let any host that reaches it fetch every gateway's configuration: "+
		"serve xDS over mutual TLS with --xds-tls-cert, --xds-tls-key and --xds-client-ca (and bind Envoy identities to gateways with xds-identities in the config file), "+
		"or listen on 127.0.0.1", addr)
}
