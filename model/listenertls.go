package model

import (
	"fmt"
	"regexp"
	"strings"
)

// A gateway listener with protocol HTTPS terminates TLS from workloads. Its
// server certificate comes from files on tollgate's host (served to the
// Envoys over SDS, like BackendTLSPolicy material) or, with spiffe, from
// each Envoy's local SPIRE agent over the agent's own SDS, so that the
// gateway's private key never passes through tollgate. Client certificates
// are verified against a CA bundle file or the SPIFFE trust bundles of
// named trust domains (again from the agent).

// Listener protocols.
const (
	ListenerHTTP  = "HTTP"
	ListenerHTTPS = "HTTPS"
)

// Client validation modes.
const (
	ClientRequire  = "Require"
	ClientOptional = "Optional"
)

// SPIRE agent SDS resource names, the agent's defaults (agent settings
// default_svid_name, default_bundle_name, default_all_bundles_name). A
// trust domain's bundle, own or federated, is served under its trust
// domain ID, "spiffe://<trust domain>".
const (
	SPIREDefaultSVIDName       = "default"
	SPIREDefaultAllBundlesName = "ALL"
)

// ListenerTLS is the TLS of an HTTPS listener: exactly one certificate
// source (certificate + privateKey, or spiffe), and optionally how client
// certificates are verified.
type ListenerTLS struct {
	// Certificate is the server certificate chain (leaf first), a PEM file
	// on tollgate's host.
	Certificate *SecretSource `yaml:"certificate,omitempty"`
	// PrivateKey is the certificate's key, a PEM file on tollgate's host.
	// It reaches the Envoys over SDS, so the gateway is served only over
	// an authenticated xDS connection.
	PrivateKey *SecretSource `yaml:"privateKey,omitempty"`
	// SPIFFE takes each Envoy's own X.509 SVID from its local SPIRE agent.
	SPIFFE *ListenerSPIFFE `yaml:"spiffe,omitempty"`
	// ClientValidation, when set, makes the listener ask for client
	// certificates and verify them.
	ClientValidation *ClientValidation `yaml:"clientValidation,omitempty"`
}

// ListenerSPIFFE is the SVID a listener presents, from the agent's SDS.
type ListenerSPIFFE struct {
	// SVIDName is the SDS name of the SVID; default "default" (the
	// agent's default_svid_name: the workload's first SVID). A SPIFFE ID
	// names one SVID of the workload's.
	SVIDName string `yaml:"svidName,omitempty"`
}

// ClientValidation is how a listener verifies client certificates.
type ClientValidation struct {
	// Mode is Require (default: a client without a valid certificate is
	// refused at the handshake) or Optional (a client may present none;
	// one it presents must be valid).
	Mode string `yaml:"mode,omitempty"`
	// CACertificates is a PEM bundle of trusted CAs on tollgate's host,
	// served over SDS.
	CACertificates *SecretSource `yaml:"caCertificates,omitempty"`
	// SPIFFE trusts the bundles of SPIFFE trust domains, from the agent.
	SPIFFE *ClientSPIFFE `yaml:"spiffe,omitempty"`
	// SubjectAltNames restrict the accepted certificates (any one must
	// match).
	SubjectAltNames []SANMatch `yaml:"subjectAltNames,omitempty"`
	// IdentityPattern says how the client's SPIFFE ID names its trust
	// domain, namespace and service account (see IdentityPattern).
	IdentityPattern string `yaml:"identityPattern,omitempty"`
}

// ClientSPIFFE are the trust domains whose workloads a listener accepts.
type ClientSPIFFE struct {
	// TrustDomains, e.g. corp.example; federated domains are bundles the
	// agent knows by name.
	TrustDomains []string `yaml:"trustDomains"`
	// BundleName overrides the SDS name of the validation context asked of
	// the agent: default "spiffe://<trust domain>" for one trust domain,
	// "ALL" (the agent's default_all_bundles_name) for several.
	BundleName string `yaml:"bundleName,omitempty"`
}

// SANMatch matches a subject alternative name: exactly one of Value (exact)
// and Prefix.
type SANMatch struct {
	// Type is URI (SPIFFE IDs) or DNS.
	Type   string `yaml:"type"`
	Value  string `yaml:"value,omitempty"`
	Prefix string `yaml:"prefix,omitempty"`
}

// trustDomainRE is a SPIFFE trust domain name: lowercase letters, digits,
// '.', '-' and '_'.
var trustDomainRE = regexp.MustCompile(`^[a-z0-9._-]+$`)

// ValidTrustDomain reports whether s is a SPIFFE trust domain name.
func ValidTrustDomain(s string) bool { return len(s) <= 255 && trustDomainRE.MatchString(s) }

// SPIFFETrustDomain returns the trust domain of a SPIFFE ID (or of a SPIFFE
// ID prefix that includes the path's first '/'), and whether it has one.
func SPIFFETrustDomain(id string) (string, bool) {
	rest, ok := strings.CutPrefix(id, "spiffe://")
	if !ok {
		return "", false
	}
	td, _, found := strings.Cut(rest, "/")
	if !found || !ValidTrustDomain(td) {
		return "", false
	}
	return td, true
}

// validateListenerProtocol checks a listener's protocol and TLS block.
func validateListenerProtocol(v *Validator, p string, l Listener) {
	switch l.Protocol {
	case ListenerHTTP:
		if l.TLS != nil {
			v.Errorf(p+".tls", "is only allowed with protocol: HTTPS")
		}
	case ListenerHTTPS:
		if l.TLS == nil {
			v.Errorf(p+".tls", "is required with protocol: HTTPS: set certificate and privateKey, or spiffe")
			return
		}
		validateListenerTLS(v, p+".tls", l.TLS)
	case "":
		v.Errorf(p+".protocol", "is required: use HTTP or HTTPS")
	default:
		v.Errorf(p+".protocol", "%q is not supported: use HTTP or HTTPS", l.Protocol)
	}
}

func validateListenerTLS(v *Validator, p string, t *ListenerTLS) {
	files := t.Certificate != nil || t.PrivateKey != nil
	switch {
	case files && t.SPIFFE != nil:
		v.Errorf(p, "set certificate and privateKey, or spiffe, not both")
	case !files && t.SPIFFE == nil:
		v.Errorf(p, "set certificate and privateKey, or spiffe")
	case files && (t.Certificate == nil || t.PrivateKey == nil):
		v.Errorf(p, "certificate and privateKey go together")
	}
	if t.Certificate != nil {
		t.Certificate.Validate(v, p+".certificate", false)
	}
	if t.PrivateKey != nil {
		t.PrivateKey.Validate(v, p+".privateKey", false)
	}
	if s := t.SPIFFE; s != nil && s.SVIDName != "" && strings.TrimSpace(s.SVIDName) != s.SVIDName {
		v.Errorf(p+".spiffe.svidName", "%q must not start or end with spaces", s.SVIDName)
	}
	if c := t.ClientValidation; c != nil {
		validateClientValidation(v, p+".clientValidation", c)
	}
}

func validateClientValidation(v *Validator, p string, c *ClientValidation) {
	switch c.Mode {
	case "", ClientRequire, ClientOptional:
	default:
		v.Errorf(p+".mode", "%q is not a mode: use Require or Optional", c.Mode)
	}
	switch {
	case c.CACertificates != nil && c.SPIFFE != nil:
		v.Errorf(p, "set caCertificates or spiffe, not both")
	case c.CACertificates == nil && c.SPIFFE == nil:
		v.Errorf(p, "set caCertificates or spiffe: the bundle client certificates must chain to")
	}
	if c.CACertificates != nil {
		c.CACertificates.Validate(v, p+".caCertificates", false)
	}
	var domains map[string]bool
	if s := c.SPIFFE; s != nil {
		domains = map[string]bool{}
		if len(s.TrustDomains) == 0 {
			v.Errorf(p+".spiffe.trustDomains", "at least one trust domain is required")
		}
		for i, td := range s.TrustDomains {
			tp := fmt.Sprintf("%s.spiffe.trustDomains[%d]", p, i)
			switch {
			case strings.HasPrefix(td, "spiffe://"):
				v.Errorf(tp, "%q must be a trust domain name without spiffe://, e.g. %q", td, strings.TrimSuffix(strings.TrimPrefix(td, "spiffe://"), "/"))
			case !ValidTrustDomain(td):
				v.Errorf(tp, "%q is not a trust domain name: lowercase letters, digits, '.', '-' and '_'", td)
			case domains[td]:
				v.Errorf(tp, "%q is listed twice", td)
			}
			domains[td] = true
		}
	}
	for i, san := range c.SubjectAltNames {
		sp := fmt.Sprintf("%s.subjectAltNames[%d]", p, i)
		switch san.Type {
		case "URI":
		case "DNS":
			if c.SPIFFE != nil {
				// Envoy's SPIFFE validator matches URI SANs only.
				v.Errorf(sp+".type", "DNS cannot be matched with spiffe trust: a SPIFFE identity is the URI SAN; use URI")
			}
		default:
			v.Errorf(sp+".type", "%q is not supported: use URI or DNS", san.Type)
		}
		value, field := san.Value, "value"
		switch {
		case san.Value != "" && san.Prefix != "":
			v.Errorf(sp, "set value or prefix, not both")
			continue
		case san.Value == "" && san.Prefix == "":
			v.Errorf(sp, "set value (exact match) or prefix")
			continue
		case san.Prefix != "":
			value, field = san.Prefix, "prefix"
		}
		if san.Type != "URI" {
			continue
		}
		if !strings.Contains(value, ":") {
			v.Errorf(sp+"."+field, "%q is not a URI (a SPIFFE ID looks like spiffe://trust.domain/path)", value)
			continue
		}
		if domains == nil {
			continue
		}
		// A SAN outside the listed trust domains would widen the set the
		// trust domains stand for: with several domains the agent's
		// validation context trusts every bundle it has.
		td, ok := SPIFFETrustDomain(value)
		switch {
		case !ok:
			v.Errorf(sp+"."+field, "%q must be a SPIFFE ID (or prefix) with its trust domain and the '/' after it, e.g. spiffe://%s/", value, exampleDomain(c.SPIFFE.TrustDomains))
		case !domains[td]:
			v.Errorf(sp+"."+field, "%q is in trust domain %q, which spiffe.trustDomains does not list", value, td)
		}
	}
	if _, err := ParseIdentityPattern(c.IdentityPattern); err != nil {
		v.Errorf(p+".identityPattern", "%v", err)
	}
}

// exampleDomain is a listed trust domain for messages.
func exampleDomain(domains []string) string {
	for _, td := range domains {
		if ValidTrustDomain(td) {
			return td
		}
	}
	return "corp.example"
}

// Materials implements MaterialUser: the files of the gateway's HTTPS
// listeners, which the store loads and watches.
func (g *Gateway) Materials() []SecretSource {
	var out []SecretSource
	for _, l := range g.Spec.Listeners {
		t := l.TLS
		if t == nil || l.Protocol != ListenerHTTPS {
			continue
		}
		for _, s := range []*SecretSource{t.Certificate, t.PrivateKey} {
			if s != nil {
				out = append(out, *s)
			}
		}
		if c := t.ClientValidation; c != nil && c.CACertificates != nil {
			out = append(out, *c.CACertificates)
		}
	}
	return out
}

// ListenerTLSConfig is the resolved TLS of an HTTPS listener. The file
// contents are filled in when the config is lowered (policies/gatewaytls).
type ListenerTLSConfig struct {
	// Gateway is the gateway the listener belongs to, for resource names.
	Gateway Ref
	// CertificateChain and PrivateKey are PEM, from files; nil with
	// SPIFFE.
	CertificateChain []byte
	PrivateKey       []byte
	// SVIDName is the agent's SDS name of the SVID; empty without SPIFFE.
	SVIDName string
	// Client is nil when client certificates are not asked for.
	Client *ClientValidationConfig
}

// ClientValidationConfig is how an HTTPS listener verifies clients.
type ClientValidationConfig struct {
	// Require refuses clients without a valid certificate at the
	// handshake.
	Require bool
	// CA is a PEM bundle from a file; nil with SPIFFE trust.
	CA []byte
	// TrustDomains are the SPIFFE trust domains, with BundleName the SDS
	// name of the agent's validation context; empty without SPIFFE trust.
	TrustDomains []string
	BundleName   string
	// SANs restrict the accepted certificates (any one must match).
	SANs []SANMatch
}

// SPIFFE reports whether the listener's client trust comes from the agent.
func (c *ClientValidationConfig) SPIFFE() bool { return len(c.TrustDomains) > 0 }

// resolveListenerTLS builds what a listener's TLS block says on its own;
// the file contents come later.
func resolveListenerTLS(gw Ref, l Listener) *ListenerTLSConfig {
	t := l.TLS
	if l.Protocol != ListenerHTTPS || t == nil {
		return nil
	}
	out := &ListenerTLSConfig{Gateway: gw}
	if t.SPIFFE != nil {
		out.SVIDName = t.SPIFFE.SVIDName
		if out.SVIDName == "" {
			out.SVIDName = SPIREDefaultSVIDName
		}
	}
	if c := t.ClientValidation; c != nil {
		cv := &ClientValidationConfig{Require: c.Mode != ClientOptional, SANs: c.SubjectAltNames}
		if s := c.SPIFFE; s != nil {
			cv.TrustDomains = s.TrustDomains
			cv.BundleName = s.BundleName
			switch {
			case cv.BundleName != "":
			case len(s.TrustDomains) == 1:
				cv.BundleName = "spiffe://" + s.TrustDomains[0]
			default:
				cv.BundleName = SPIREDefaultAllBundlesName
			}
			if len(cv.SANs) == 0 && len(s.TrustDomains) > 1 {
				// The agent's ALL bundle trusts every domain it knows:
				// restrict it to the listed ones.
				for _, td := range s.TrustDomains {
					cv.SANs = append(cv.SANs, SANMatch{Type: "URI", Prefix: "spiffe://" + td + "/"})
				}
			}
		}
		out.Client = cv
	}
	return out
}

// listenerIdentity parses a listener's identity pattern (already
// validated).
func listenerIdentity(l Listener) IdentityPattern {
	if l.TLS == nil || l.TLS.ClientValidation == nil {
		return IdentityPattern{}
	}
	p, err := ParseIdentityPattern(l.TLS.ClientValidation.IdentityPattern)
	if err != nil {
		return IdentityPattern{}
	}
	return p
}
