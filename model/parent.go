package model

import (
	"fmt"
	"sort"
	"strings"
)

// A gateway in Parent mode sends every request to its parent, another
// Gateway of the same tollgate, which routes it with its own routes,
// credentials, TLS and fail-over. The parent may itself be in Parent mode:
// chains end at a gateway in Endpoint mode. This file resolves those
// chains and checks that they work: the parent exists and can be reached,
// there is no cycle, and every route a child forwards is also served by
// the gateway it forwards to.

// ParentHop is how a Parent-mode gateway's Envoys reach its parent.
type ParentHop struct {
	// Gateway is the parent.
	Gateway *GatewayConfig
	// Listener is the parent's listener the child sends to.
	Listener *ListenerConfig
	// Port the child connects to: the listener's, unless parentRef.port
	// overrides it.
	Port uint32
	// Addresses are the parent's spec.addresses.
	Addresses []GatewayAddress
	// TLS is nil for plain HTTP.
	TLS *ParentHopTLS
}

// ParentHopTLS is the resolved TLS client configuration of a hop. Files
// are paths on the child's Envoy hosts.
type ParentHopTLS struct {
	// SNI sent to the parent.
	SNI string
	// SANs the parent's certificate must carry (any of them).
	SANs []SAN
	// CAFile is the trust bundle; empty means the system trust bundle.
	CAFile string
	// CertificateFile and PrivateKeyFile are the client certificate for
	// mutual TLS, or empty.
	CertificateFile string
	PrivateKeyFile  string
	// SPIFFEID is the parent's SPIFFE ID when the hop uses SVIDs from the
	// child's SPIRE agent: SVIDName is presented, and the parent is
	// verified against the agent's bundle Bundle (its trust domain's).
	SPIFFEID string
	SVIDName string
	Bundle   string
}

// HasHostname reports whether some address is a DNS name, which Envoy
// then resolves; with IP addresses only, the endpoints are static.
func (h *ParentHop) HasHostname() bool {
	for _, a := range h.Addresses {
		if a.Hostname != "" {
			return true
		}
	}
	return false
}

// resolveParents links every Parent-mode gateway to its parent and reports
// what would keep the chain from working. Routes must be attached already.
func (c *Config) resolveParents(gateways map[Ref]*GatewayConfig, errs *Violations) {
	list := c.Gateways
	for _, g := range list {
		if g.Gateway.Spec.Mode != ModeParent || g.Gateway.Spec.ParentRef == nil {
			continue
		}
		if hop := c.resolveHop(g, gateways, NewValidator(g.Gateway, errs)); hop != nil {
			g.Parent = hop
			hop.Gateway.Children = append(hop.Gateway.Children, g.Ref)
		}
	}
	for _, g := range list {
		sort.Slice(g.Children, func(i, j int) bool { return g.Children[i].Less(g.Children[j]) })
	}
	cyclic := map[*GatewayConfig]bool{}
	for _, g := range list {
		if chain := cycleFrom(g); chain != nil {
			cyclic[g] = true
			names := make([]string, len(chain))
			for i, c := range chain {
				names[i] = c.Ref.String()
			}
			NewValidator(g.Gateway, errs).Errorf("spec.parentRef.name", "%s is a cycle: a chain of parents must end at a gateway in mode: Endpoint", strings.Join(names, " → "))
		}
	}
	for _, g := range list {
		if g.Parent != nil && !cyclic[g] {
			checkForwardedRoutes(g, errs)
		}
	}
}

// resolveHop finds the parent, its listener and addresses, or reports why
// it cannot.
func (c *Config) resolveHop(g *GatewayConfig, gateways map[Ref]*GatewayConfig, v *Validator) *ParentHop {
	pr := g.Gateway.Spec.ParentRef
	ref := LocalRef{Name: pr.Name, Namespace: pr.Namespace}.Resolve(KindGateway, g.Ref.Namespace)
	parent, found := gateways[ref]
	if !found {
		c.missing(v, "spec.parentRef.name", ref)
		return nil
	}
	hop := &ParentHop{Gateway: parent, Addresses: parent.Gateway.Spec.Addresses}
	switch {
	case pr.SectionName != "":
		for _, l := range parent.Listeners {
			if l.Name == pr.SectionName {
				hop.Listener = l
			}
		}
		if hop.Listener == nil {
			v.Errorf("spec.parentRef.sectionName", "%s has no listener named %q", ref, pr.SectionName)
		}
	case len(parent.Listeners) == 1:
		hop.Listener = parent.Listeners[0]
	default:
		names := make([]string, len(parent.Listeners))
		for i, l := range parent.Listeners {
			names[i] = fmt.Sprintf("%q", l.Name)
		}
		v.Errorf("spec.parentRef.sectionName", "is required: %s has listeners %s; name the one this gateway sends to", ref, strings.Join(names, ", "))
	}
	if len(hop.Addresses) == 0 && ref != g.Ref {
		v.Errorf("spec.parentRef.name", "%s has no spec.addresses: list the addresses its Envoys can be reached at, so that the Envoys of %s can connect to it", ref, g.Ref)
	}
	if hop.Listener == nil {
		return nil
	}
	hop.Port = hop.Listener.Port
	if pr.Port != 0 {
		hop.Port = pr.Port
	}
	if t := pr.TLS; t != nil {
		hop.TLS = resolveHopTLS(g, ref, hop, v)
	} else if pr.Port == 0 && hop.Listener.TLS != nil {
		v.Errorf("spec.parentRef.tls", "is required: %s listener %q is HTTPS; set tls (spiffe, or caFile and the client certificate files)", ref, hop.Listener.Name)
	}
	return hop
}

func resolveHopTLS(g *GatewayConfig, ref Ref, hop *ParentHop, v *Validator) *ParentHopTLS {
	pr := g.Gateway.Spec.ParentRef
	t := pr.TLS
	lt := hop.Listener.TLS
	if pr.Port == 0 && lt == nil {
		// TLS to a plain HTTP listener would fail every handshake.
		v.Errorf("spec.parentRef.tls", "%s listener %q accepts plain HTTP: make it protocol: HTTPS, or, for a TLS terminator in front of it, set spec.parentRef.port to the terminator's port", ref, hop.Listener.Name)
	}
	if pr.Port == 0 && lt != nil && lt.Client != nil && lt.Client.Require && t.SPIFFE == nil && t.CertificateFile == "" {
		v.Errorf("spec.parentRef.tls", "%s listener %q requires a client certificate: set spiffe (this gateway's SVID) or certificateFile and privateKeyFile", ref, hop.Listener.Name)
	}
	out := &ParentHopTLS{SNI: t.Hostname, CAFile: t.CAFile, CertificateFile: t.CertificateFile, PrivateKeyFile: t.PrivateKeyFile}
	if sp := t.SPIFFE; sp != nil {
		td, _ := SPIFFETrustDomain(sp.ID)
		out.SPIFFEID, out.SVIDName, out.Bundle = sp.ID, sp.SVIDName, "spiffe://"+td
		if out.SVIDName == "" {
			out.SVIDName = SPIREDefaultSVIDName
		}
		out.SANs = []SAN{{Type: "URI", Value: sp.ID}}
	}
	if out.SNI == "" {
		for _, a := range hop.Addresses {
			if a.Hostname != "" {
				out.SNI = a.Hostname
				break
			}
		}
	}
	if out.SNI == "" && len(t.SubjectAltNames) == 0 && t.SPIFFE == nil && len(hop.Addresses) > 0 {
		v.Errorf("spec.parentRef.tls.hostname", "is required: %s has IP addresses only; name the DNS name its certificate carries", ref)
	}
	for _, san := range t.SubjectAltNames {
		out.SANs = append(out.SANs, SAN(san))
	}
	if len(out.SANs) == 0 && out.SNI != "" {
		out.SANs = []SAN{{Type: "DNS", Value: out.SNI}}
	}
	return out
}

// cycleFrom returns the chain g → … → g when following parents leads back
// to g, or nil.
func cycleFrom(g *GatewayConfig) []*GatewayConfig {
	chain := []*GatewayConfig{g}
	seen := map[*GatewayConfig]bool{g: true}
	for cur := g; cur.Parent != nil; {
		cur = cur.Parent.Gateway
		chain = append(chain, cur)
		if cur == g {
			return chain
		}
		if seen[cur] {
			return nil // a cycle further up, reported on its own members
		}
		seen[cur] = true
	}
	return nil
}

// checkForwardedRoutes reports every route attached to child g that the
// parent's listener does not serve: the child would forward requests that
// the parent answers with 404.
func checkForwardedRoutes(g *GatewayConfig, errs *Violations) {
	hop := g.Parent
	served := map[*RouteConfig]bool{}
	for _, r := range hop.Listener.Routes {
		served[r] = true
	}
	reported := map[*RouteConfig]bool{}
	for _, l := range g.Listeners {
		for _, r := range l.Routes {
			if served[r] || reported[r] {
				continue
			}
			reported[r] = true
			parent := hop.Gateway.Ref
			suggest := "name: " + parent.Name
			if parent.Namespace != r.Ref.Namespace {
				suggest += ", namespace: " + parent.Namespace
			}
			suggest += ", sectionName: " + hop.Listener.Name
			NewValidator(r.Route, errs).Errorf(attachmentPath(r, g.Ref),
				"%s forwards this route to %s (listener %q), which does not serve it: add {%s} to spec.parentRefs, or detach the route from %s",
				g.Ref, parent, hop.Listener.Name, suggest, g.Ref)
		}
	}
}

// attachmentPath is the field path of the route's first parentRef naming
// gateway gw.
func attachmentPath(r *RouteConfig, gw Ref) string {
	for i, p := range r.Route.Spec.ParentRefs {
		if (LocalRef{Name: p.Name, Namespace: p.Namespace}).Resolve(KindGateway, r.Ref.Namespace) == gw {
			return fmt.Sprintf("spec.parentRefs[%d]", i)
		}
	}
	return "spec.parentRefs"
}
