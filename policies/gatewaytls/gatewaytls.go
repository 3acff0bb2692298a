// Package gatewaytls lowers the files a Gateway's HTTPS listeners name (the
// server certificate and key, the client CA bundle) into the listeners'
// effective TLS settings. The store reads the files (model.Gateway
// implements model.MaterialUser) and watches them, so replacing one is an
// SDS push. SPIFFE sources name nothing here: their certificates and
// bundles are on each Envoy's SPIRE agent, out of tollgate's sight.
package gatewaytls

import (
	"crypto/tls"
	"fmt"
	"strings"
	"time"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/policies/backendtls"
	"github.com/tollgate-dev/tollgate/policies/policy"
)

// ConditionCertificatesValid is the condition type on a Gateway whose
// listener certificate is outside its validity period: Envoy serves it
// anyway, and clients refuse it.
const ConditionCertificatesValid = "CertificatesValid"

// Lower fills in the file contents of every HTTPS listener of cfg and
// reports the files that cannot be used.
func Lower(cfg *model.Config, materials model.Materials, now time.Time) model.Violations {
	var errs model.Violations
	for _, g := range cfg.Gateways {
		v := model.NewValidator(g.Gateway, &errs)
		ctx := policy.Context{Config: cfg, Materials: materials, Now: now, Validator: v}
		var findings []string
		for i, l := range g.Listeners {
			if l.TLS == nil {
				continue
			}
			p := fmt.Sprintf("spec.listeners[%d].tls", i)
			findings = append(findings, lowerListener(ctx, g.Gateway, p, l)...)
		}
		if len(findings) > 0 {
			cfg.Conditions = append(cfg.Conditions, model.Condition{
				Object: g.Ref.String(), Type: ConditionCertificatesValid, Status: false, Reason: "CertificateNotValidNow",
				Message: strings.Join(findings, "; "),
			})
		}
	}
	return errs
}

func lowerListener(ctx policy.Context, g *model.Gateway, p string, l *model.ListenerConfig) []string {
	var findings []string
	t, v := l.Listener.TLS, ctx.Validator
	if t.Certificate != nil && t.PrivateKey != nil {
		cert := ctx.Material(g, *t.Certificate, p+".certificate.file")
		key := ctx.Material(g, *t.PrivateKey, p+".privateKey.file")
		if cert != nil {
			chain, err := backendtls.ParseCertificateChain(cert)
			if err != nil {
				v.Errorf(p+".certificate.file", "%s: %v", t.Certificate.File, err)
				cert = nil
			} else if leaf := chain[0]; ctx.Now.After(leaf.NotAfter) || ctx.Now.Before(leaf.NotBefore) {
				findings = append(findings, fmt.Sprintf("%s.certificate.file: %s: the server certificate %q is valid from %s until %s: clients will refuse it; renew it and replace the file",
					p, t.Certificate.File, leaf.Subject.String(), stamp(leaf.NotBefore), stamp(leaf.NotAfter)))
			}
		}
		if cert != nil && key != nil {
			if _, err := tls.X509KeyPair(cert, key); err != nil {
				// The error of X509KeyPair never includes key material.
				v.Errorf(p, "%s and %s are not a valid certificate and matching private key: %v", t.Certificate.File, t.PrivateKey.File, err)
			} else {
				l.TLS.CertificateChain, l.TLS.PrivateKey = cert, key
			}
		}
	}
	if c := t.ClientValidation; c != nil && c.CACertificates != nil {
		path := p + ".clientValidation.caCertificates.file"
		if data := ctx.Material(g, *c.CACertificates, path); data != nil {
			cas, err := backendtls.ParseCABundle(data)
			switch {
			case err != nil:
				v.Errorf(path, "%s: %v", c.CACertificates.File, err)
			default:
				usable := 0
				for _, ca := range cas {
					if !ctx.Now.After(ca.NotAfter) && !ctx.Now.Before(ca.NotBefore) {
						usable++
					}
				}
				if usable == 0 {
					v.Errorf(path, "%s has no usable certificate: each of its %d CA certificates is expired or not yet valid, so no client certificate would verify; replace the bundle", c.CACertificates.File, len(cas))
				} else {
					l.TLS.Client.CA = data
				}
			}
		}
	}
	return findings
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }
