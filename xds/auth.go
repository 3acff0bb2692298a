package xds

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strings"

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
	// regard to case); wildcards are not supported.
	Identity string `json:"identity"`
	// Gateways are gateway keys as in node.cluster (model.GatewayKey):
	// "name" in the default namespace, "namespace/name" elsewhere.
	Gateways []string `json:"gateways"`
}

// Authorizer decides which gateways a verified identity may serve.
type Authorizer struct {
	gateways map[string][]string // identity → sorted gateway keys
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
			errs = append(errs, fmt.Errorf("%s.identity: %q: wildcards are not supported; identities are matched exactly", field, b.Identity))
			continue
		case a.gateways[id] != nil:
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
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return a, nil
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

// Gateways lists the gateways identity may serve.
func (a *Authorizer) Gateways(identity string) []string {
	if a == nil {
		return nil
	}
	return slices.Clone(a.gateways[normalizeIdentity(identity)])
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
