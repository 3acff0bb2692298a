// Package backendtls is the BackendTLSPolicy: how a gateway verifies a
// backend's TLS identity (CA bundle or system roots, SNI, SANs, SPKI and
// certificate pins, CRL, minimum version, ALPN) and which client
// certificate it presents. Certificates and keys reach Envoy as SDS
// secrets, so replacing a file is an SDS push with no cluster change.
package backendtls

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"strings"
	"time"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/policies/policy"
)

// KindName is the YAML kind.
const KindName = "BackendTLSPolicy"

// Kind registers the policy.
var Kind = policy.Kind{
	Name:        KindName,
	New:         func() model.Object { return &BackendTLSPolicy{} },
	Scopes:      []string{model.KindBackend},
	ScopeReason: "TLS identity is a property of one destination",
	Lower:       lower,
}

// BackendTLSPolicy configures TLS to the backends it targets.
type BackendTLSPolicy struct {
	model.Base `yaml:",inline"`
	Spec       Spec `yaml:"spec"`
}

// Spec of a BackendTLSPolicy.
type Spec struct {
	// TargetRefs are Backends.
	TargetRefs []model.TargetRef `yaml:"targetRefs"`
	// CACertificates is a PEM bundle of trusted CAs (with intermediates if
	// you pin them); unset means the system trust bundle.
	CACertificates *model.SecretSource `yaml:"caCertificates,omitempty"`
	// Hostname overrides the SNI and the default SAN (the backend's
	// hostname).
	Hostname string `yaml:"hostname,omitempty"`
	// SubjectAltNames the certificate must carry (any one matches);
	// default: DNS = hostname.
	SubjectAltNames []SubjectAltName `yaml:"subjectAltNames,omitempty"`
	// Pins restrict the accepted certificates further.
	Pins *Pins `yaml:"pins,omitempty"`
	// CRL is a PEM file of certificate revocation lists. By default Envoy
	// checks every certificate of the chain and fails the connection when a
	// CA of the chain has no CRL, so the file needs one per CA of
	// caCertificates.
	CRL *model.SecretSource `yaml:"crl,omitempty"`
	// OnlyVerifyLeafCertCRL checks only the server certificate against the
	// CRLs, so one CRL (of the issuing CA) is enough.
	OnlyVerifyLeafCertCRL bool `yaml:"onlyVerifyLeafCertCRL,omitempty"`
	// MinVersion is TLSv1_2 (default) or TLSv1_3.
	MinVersion string `yaml:"minVersion,omitempty"`
	// ALPN overrides the protocols offered (default from the backend's
	// protocol).
	ALPN []string `yaml:"alpn,omitempty"`
	// ClientCertificate is presented to the backend (mTLS).
	ClientCertificate *ClientCertificate `yaml:"clientCertificate,omitempty"`
}

// SubjectAltName is a SAN to accept.
type SubjectAltName struct {
	// Type is DNS or URI (SPIFFE IDs are URIs).
	Type  string `yaml:"type"`
	Value string `yaml:"value"`
}

// Pins are certificate pins; when both lists are set, a certificate
// matching either passes (Envoy's semantics).
type Pins struct {
	// SPKI are base64 SHA-256 hashes of the SubjectPublicKeyInfo (as in
	// HPKP: openssl x509 -pubkey | openssl pkey -pubin -outform der |
	// openssl dgst -sha256 -binary | base64).
	SPKI []string `yaml:"spki,omitempty"`
	// CertificateHashes are hex SHA-256 hashes of the DER certificate,
	// colons allowed.
	CertificateHashes []string `yaml:"certificateHashes,omitempty"`
}

// ClientCertificate is a certificate chain and its key.
type ClientCertificate struct {
	Certificate model.SecretSource `yaml:"certificate"`
	PrivateKey  model.SecretSource `yaml:"privateKey"`
}

// Targets implements model.Policy.
func (p *BackendTLSPolicy) Targets() []model.TargetRef { return p.Spec.TargetRefs }

// Materials implements model.MaterialUser.
func (p *BackendTLSPolicy) Materials() []model.SecretSource {
	var out []model.SecretSource
	if s := p.Spec.CACertificates; s != nil {
		out = append(out, *s)
	}
	if s := p.Spec.CRL; s != nil {
		out = append(out, *s)
	}
	if c := p.Spec.ClientCertificate; c != nil {
		out = append(out, c.Certificate, c.PrivateKey)
	}
	return out
}

// Validate implements model.Object.
func (p *BackendTLSPolicy) Validate(v *model.Validator) {
	s := &p.Spec
	model.ValidateTargetRefs(v, s.TargetRefs)
	if s.CACertificates != nil {
		s.CACertificates.Validate(v, "spec.caCertificates", false)
	}
	if s.CRL != nil {
		s.CRL.Validate(v, "spec.crl", false)
	}
	if s.Hostname != "" && !model.ValidHostname(s.Hostname) {
		v.Errorf("spec.hostname", "%q must be a DNS name", s.Hostname)
	}
	for i, san := range s.SubjectAltNames {
		p := fmt.Sprintf("spec.subjectAltNames[%d]", i)
		switch san.Type {
		case "DNS", "URI":
		default:
			v.Errorf(p+".type", "%q is not supported: use DNS or URI", san.Type)
		}
		if san.Value == "" {
			v.Errorf(p+".value", "is required")
		}
		if san.Type == "URI" && !strings.Contains(san.Value, ":") {
			v.Errorf(p+".value", "%q is not a URI (a SPIFFE ID looks like spiffe://trust.domain/path)", san.Value)
		}
	}
	if s.Pins != nil {
		if len(s.Pins.SPKI) == 0 && len(s.Pins.CertificateHashes) == 0 {
			v.Errorf("spec.pins", "set spki or certificateHashes")
		}
		for i, pin := range s.Pins.SPKI {
			if b, err := base64.StdEncoding.DecodeString(pin); err != nil || len(b) != 32 {
				v.Errorf(fmt.Sprintf("spec.pins.spki[%d]", i), "%q must be the base64 of a SHA-256 hash (44 characters)", pin)
			}
		}
		for i, h := range s.Pins.CertificateHashes {
			if b, err := hex.DecodeString(strings.ReplaceAll(h, ":", "")); err != nil || len(b) != 32 {
				v.Errorf(fmt.Sprintf("spec.pins.certificateHashes[%d]", i), "%q must be a hex SHA-256 hash (64 hex digits, colons allowed)", h)
			}
		}
	}
	switch s.MinVersion {
	case "", "TLSv1_2", "TLSv1_3":
	default:
		v.Errorf("spec.minVersion", "%q is not supported: use TLSv1_2 or TLSv1_3", s.MinVersion)
	}
	for i, a := range s.ALPN {
		if a != "h2" && a != "http/1.1" {
			v.Errorf(fmt.Sprintf("spec.alpn[%d]", i), "%q is not supported: use h2 or http/1.1", a)
		}
	}
	if c := s.ClientCertificate; c != nil {
		c.Certificate.Validate(v, "spec.clientCertificate.certificate", false)
		c.PrivateKey.Validate(v, "spec.clientCertificate.privateKey", false)
	}
}

func lower(ctx policy.Context, pol model.Policy, target model.Ref) {
	p := pol.(*BackendTLSPolicy)
	s := &p.Spec
	b := ctx.Index.Backends[target]
	v := ctx.Validator
	if !b.TLS {
		v.Errorf(ctx.Path, "%s does not use TLS (set tls: true on it, or remove this target)", target)
		return
	}
	t := &model.BackendTLS{Policy: model.RefOf(p), SNI: b.Hostname, MinVersion: s.MinVersion, ALPN: s.ALPN}
	var validity validityFindings
	if s.Hostname != "" {
		t.SNI = s.Hostname
	}
	for _, san := range s.SubjectAltNames {
		t.SANs = append(t.SANs, model.SAN{Type: san.Type, Value: san.Value})
	}
	if len(t.SANs) == 0 {
		t.SANs = []model.SAN{{Type: "DNS", Value: t.SNI}}
	}
	var cas []*x509.Certificate
	if s.CACertificates != nil {
		if data := ctx.Material(p, *s.CACertificates, "spec.caCertificates.file"); data != nil {
			var err error
			if cas, err = parseCertificates(data); err != nil {
				v.Errorf("spec.caCertificates.file", "%s: %v", s.CACertificates.File, err)
			} else {
				t.CA = data
				for i, c := range cas {
					validity.check(ctx.Now, "spec.caCertificates.file", s.CACertificates.File, fmt.Sprintf("CA certificate %d", i+1), c,
						"no chain through it verifies: replace it or remove it from the bundle",
						"no chain through it verifies before then: check the issuer's clock, or remove it until it is valid")
				}
			}
		}
	}
	if s.CRL != nil {
		if data := ctx.Material(p, *s.CRL, "spec.crl.file"); data != nil {
			crls, err := parseCRLs(data)
			if err != nil {
				v.Errorf("spec.crl.file", "%s: %v", s.CRL.File, err)
			} else {
				t.CRL, t.CRLLeafOnly = data, s.OnlyVerifyLeafCertCRL
				for _, crl := range crls {
					// BoringSSL fails verification with a CRL past its
					// nextUpdate (X509_V_ERR_CRL_HAS_EXPIRED): every
					// handshake it applies to would fail.
					if !crl.NextUpdate.IsZero() && crl.NextUpdate.Before(ctx.Now) {
						v.Errorf("spec.crl.file", "%s: the CRL issued by %q expired on %s (its nextUpdate): Envoy would fail every handshake it checks against it; fetch a current CRL from that CA and replace the file", s.CRL.File, crl.Issuer.String(), stamp(crl.NextUpdate))
					}
				}
				if !s.OnlyVerifyLeafCertCRL {
					for _, ca := range cas {
						if !hasCRLFor(crls, ca) {
							v.Errorf("spec.crl.file", "%s has no CRL issued by CA %q of caCertificates: Envoy would then refuse every connection; add that CA's CRL or set onlyVerifyLeafCertCRL: true", s.CRL.File, ca.Subject.String())
						}
					}
				}
			}
		}
		if s.CACertificates == nil {
			v.Errorf("spec.crl", "needs caCertificates: Envoy checks CRLs against the CAs they were issued by")
		}
	}
	if s.Pins != nil {
		t.SPKIPins = s.Pins.SPKI
		for _, h := range s.Pins.CertificateHashes {
			t.CertHashes = append(t.CertHashes, strings.ToLower(strings.ReplaceAll(h, ":", "")))
		}
	}
	if c := s.ClientCertificate; c != nil {
		cert := ctx.Material(p, c.Certificate, "spec.clientCertificate.certificate.file")
		key := ctx.Material(p, c.PrivateKey, "spec.clientCertificate.privateKey.file")
		if cert != nil {
			// X509KeyPair skips a block it cannot decode, as pem.Decode does.
			chain, err := parseClientChain(cert)
			if err != nil {
				v.Errorf("spec.clientCertificate.certificate.file", "%s: %v", c.Certificate.File, err)
				cert = nil
			}
			for i, cc := range chain {
				what := fmt.Sprintf("chain certificate %d", i+1)
				if i == 0 {
					what = "the client certificate"
				}
				validity.check(ctx.Now, "spec.clientCertificate.certificate.file", c.Certificate.File, what, cc,
					"the backend will refuse it: renew it and replace the file",
					"the backend will refuse it before then: check the issuer's clock")
			}
		}
		if cert != nil && key != nil {
			if _, err := tls.X509KeyPair(cert, key); err != nil {
				// The error of X509KeyPair never includes key material.
				v.Errorf("spec.clientCertificate", "%s and %s are not a valid certificate and matching private key: %v", c.Certificate.File, c.PrivateKey.File, err)
			} else {
				t.ClientCert, t.ClientKey = cert, key
			}
		}
	}
	b.TLSPolicy = t
	validity.report(ctx.Config, model.RefOf(p))
}

// ConditionCertificatesValid is the condition type on a BackendTLSPolicy
// some of whose certificates are outside their validity period. Envoy loads
// them anyway, so the policy is served (Accepted stays true); the condition
// says which handshakes will fail.
const ConditionCertificatesValid = "CertificatesValid"

// validityFindings collects the certificates of one policy outside their
// validity period, for one CertificatesValid condition.
type validityFindings struct {
	reason string
	msgs   []string
}

func (f *validityFindings) check(now time.Time, path, file, what string, c *x509.Certificate, expiredHint, earlyHint string) {
	switch {
	case now.After(c.NotAfter):
		f.add("CertificateExpired", fmt.Sprintf("%s: %s: %s %q expired on %s (valid from %s): %s", path, file, what, c.Subject.String(), stamp(c.NotAfter), stamp(c.NotBefore), expiredHint))
	case now.Before(c.NotBefore):
		f.add("CertificateNotYetValid", fmt.Sprintf("%s: %s: %s %q is not valid before %s (until %s): %s", path, file, what, c.Subject.String(), stamp(c.NotBefore), stamp(c.NotAfter), earlyHint))
	}
}

func (f *validityFindings) add(reason, msg string) {
	// An expired certificate is the more urgent reason.
	if f.reason == "" || reason == "CertificateExpired" {
		f.reason = reason
	}
	f.msgs = append(f.msgs, msg)
}

// report adds the condition once per policy (lowering runs once per target,
// on the same files).
func (f *validityFindings) report(cfg *model.Config, pref model.Ref) {
	if len(f.msgs) == 0 {
		return
	}
	for _, c := range cfg.Conditions {
		if c.Object == pref.String() && c.Type == ConditionCertificatesValid {
			return
		}
	}
	cfg.Conditions = append(cfg.Conditions, model.Condition{
		Object: pref.String(), Type: ConditionCertificatesValid, Status: false, Reason: f.reason,
		Message: strings.Join(f.msgs, "; "),
	})
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// pemBlocks decodes every PEM block of data, strictly. Go's pem.Decode
// silently skips a block it cannot decode (bad base64, a missing END line)
// and goes on with the next, where Envoy (BoringSSL's PEM reader) refuses
// the whole file: so every "-----BEGIN" must start a block that decodes
// and ends before the next one begins. Text outside blocks is allowed, as
// it is for Envoy (bundles often carry comments).
func pemBlocks(data []byte) ([]*pem.Block, error) {
	begin := []byte("-----BEGIN")
	var out []*pem.Block
	for off := 0; ; {
		i := bytes.Index(data[off:], begin)
		if i < 0 {
			return out, nil
		}
		start := off + i
		block, rest := pem.Decode(data[start:])
		consumed := len(data) - start - len(rest)
		next := bytes.Index(data[start+len(begin):], begin)
		if block == nil || (next >= 0 && consumed > next+len(begin)) {
			return nil, fmt.Errorf("the PEM block at line %d cannot be decoded (corrupted or truncated?): Envoy would refuse the whole file", 1+bytes.Count(data[:start], []byte("\n")))
		}
		out = append(out, block)
		off = start + consumed
	}
}

// parseCertificates requires at least one certificate and nothing else.
func parseCertificates(data []byte) ([]*x509.Certificate, error) {
	return certificateBlocks(data, "only CERTIFICATE blocks belong in a CA bundle")
}

// certificateBlocks reads certificates only, each block decodable and each
// DER a certificate; a block of another type is refused with why.
func certificateBlocks(data []byte, onlyCertificates string) ([]*x509.Certificate, error) {
	blocks, err := pemBlocks(data)
	if err != nil {
		return nil, err
	}
	var out []*x509.Certificate
	for _, block := range blocks {
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("contains a %q block; %s", block.Type, onlyCertificates)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %v", len(out)+1, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no PEM certificate found")
	}
	return out, nil
}

func parseCRLs(data []byte) ([]*x509.RevocationList, error) {
	blocks, err := pemBlocks(data)
	if err != nil {
		return nil, err
	}
	var out []*x509.RevocationList
	for _, block := range blocks {
		if block.Type != "X509 CRL" {
			return nil, fmt.Errorf("contains a %q block; expected X509 CRL", block.Type)
		}
		crl, err := x509.ParseRevocationList(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("CRL %d: %v", len(out)+1, err)
		}
		out = append(out, crl)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no PEM CRL found")
	}
	return out, nil
}

// hasCRLFor reports whether one of the CRLs was issued by ca (same subject,
// valid signature).
func hasCRLFor(crls []*x509.RevocationList, ca *x509.Certificate) bool {
	for _, crl := range crls {
		if bytes.Equal(crl.RawIssuer, ca.RawSubject) && crl.CheckSignatureFrom(ca) == nil {
			return true
		}
	}
	return false
}

// parseClientChain checks a client certificate file: certificates only
// (leaf first), each block decodable and each DER a certificate.
func parseClientChain(data []byte) ([]*x509.Certificate, error) {
	return certificateBlocks(data, "only the certificate chain belongs here (the key goes in privateKey)")
}

// ParseCABundle reads a PEM bundle of CA certificates as strictly as
// Envoy does, for other files of CAs (a gateway listener's client CA).
func ParseCABundle(data []byte) ([]*x509.Certificate, error) { return parseCertificates(data) }

// ParseCertificateChain reads a PEM certificate chain (leaf first), for
// other certificate files (a gateway listener's server certificate).
func ParseCertificateChain(data []byte) ([]*x509.Certificate, error) {
	return certificateBlocks(data, "only the certificate chain belongs here (the key goes in privateKey)")
}
