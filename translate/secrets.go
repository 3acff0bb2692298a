package translate

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"github.com/tollgate-dev/tollgate/model"
)

// Secrets lists the SDS secrets a backend's cluster refers to. Secret values
// live only here: clusters carry names, so rotating a key or a certificate
// changes SDS and nothing else.
func Secrets(cfg *model.Config, b *model.BackendConfig) []*tlsv3.Secret {
	var out []*tlsv3.Secret
	if c := b.Credential; c != nil {
		switch c.Kind {
		case model.CredentialAPIKey:
			out = append(out, genericSecret(CredentialSecretName(b), c.Secret))
		case model.CredentialOAuth2:
			out = append(out, genericSecret(OAuth2ClientSecretName(b), c.OAuth2.ClientSecret))
		}
	}
	if t := b.TLSPolicy; t != nil {
		vc := &tlsv3.CertificateValidationContext{
			VerifyCertificateSpki: t.SPKIPins,
			VerifyCertificateHash: t.CertHashes,
		}
		if t.CA != nil {
			vc.TrustedCa = inlineBytes(t.CA)
		} else {
			vc.TrustedCa = &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: cfg.Settings.SystemCABundle}}
		}
		if t.CRL != nil {
			vc.Crl = inlineBytes(t.CRL)
			vc.OnlyVerifyLeafCertCrl = t.CRLLeafOnly
		}
		out = append(out, &tlsv3.Secret{
			Name: ValidationSecretName(b),
			Type: &tlsv3.Secret_ValidationContext{ValidationContext: vc},
		})
		if t.ClientCert != nil {
			out = append(out, &tlsv3.Secret{
				Name: ClientCertSecretName(b),
				Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
					CertificateChain: inlineBytes(t.ClientCert),
					PrivateKey:       inlineBytes(t.ClientKey),
				}},
			})
		}
	}
	return out
}

func genericSecret(name string, value []byte) *tlsv3.Secret {
	return &tlsv3.Secret{
		Name: name,
		Type: &tlsv3.Secret_GenericSecret{GenericSecret: &tlsv3.GenericSecret{
			Secret: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: value}},
		}},
	}
}

func inlineBytes(b []byte) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: b}}
}

// sdsConfig refers to a secret served on the ADS stream.
func sdsConfig(name string) *tlsv3.SdsSecretConfig {
	return &tlsv3.SdsSecretConfig{Name: name, SdsConfig: adsConfigSource()}
}
