package translate

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"

	"github.com/tollgate-dev/tollgate/model"
)

// UpstreamTLSTransportSocket originates TLS to a backend: SNI is the
// backend's hostname and the certificate must chain to the system trust
// bundle and carry the hostname as a DNS SAN (Envoy applies wildcard
// semantics to DNS SANs, so *.openai.com certificates match).
func UpstreamTLSTransportSocket(cfg *model.Config, b *model.BackendConfig) (*corev3.TransportSocket, error) {
	return tlsTransportSocket(UpstreamTLSContext(cfg, b))
}

// tlsTransportSocket wraps a TLS context (upstream or downstream) in
// Envoy's TLS transport socket.
func tlsTransportSocket(ctx proto.Message) (*corev3.TransportSocket, error) {
	a, err := toAny(ctx)
	if err != nil {
		return nil, err
	}
	return &corev3.TransportSocket{
		Name:       wellknown.TransportSocketTLS,
		ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: a},
	}, nil
}

// UpstreamTLSContext is the TLS client configuration for a backend. Without
// a BackendTLSPolicy it trusts the system bundle and expects the hostname as
// a DNS SAN. With one, the trust material (CA, CRL, pins) and the client
// certificate come over SDS, while the SANs stay here.
func UpstreamTLSContext(cfg *model.Config, b *model.BackendConfig) *tlsv3.UpstreamTlsContext {
	t := b.TLSPolicy
	if t == nil {
		return &tlsv3.UpstreamTlsContext{
			Sni: b.Hostname,
			CommonTlsContext: &tlsv3.CommonTlsContext{
				TlsParams:     tlsParams(""),
				AlpnProtocols: alpn(b.Protocol),
				ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
					TrustedCa:                 &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: cfg.Settings.SystemCABundle}},
					MatchTypedSubjectAltNames: sanMatchers([]model.SAN{{Type: "DNS", Value: b.Hostname}}),
				}},
			},
		}
	}
	protocols := t.ALPN
	if len(protocols) == 0 {
		protocols = alpn(b.Protocol)
	}
	ctx := &tlsv3.UpstreamTlsContext{
		Sni: t.SNI,
		CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsParams:     tlsParams(t.MinVersion),
			AlpnProtocols: protocols,
			ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
				DefaultValidationContext:         &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: sanMatchers(t.SANs)},
				ValidationContextSdsSecretConfig: sdsConfig(ValidationSecretName(b)),
			}},
		},
	}
	if t.ClientCert != nil {
		ctx.CommonTlsContext.TlsCertificateSdsSecretConfigs = []*tlsv3.SdsSecretConfig{sdsConfig(ClientCertSecretName(b))}
	}
	return ctx
}

func tlsParams(min string) *tlsv3.TlsParameters {
	v := tlsv3.TlsParameters_TLSv1_2
	if min == "TLSv1_3" {
		v = tlsv3.TlsParameters_TLSv1_3
	}
	return &tlsv3.TlsParameters{TlsMinimumProtocolVersion: v}
}

func sanMatchers(sans []model.SAN) []*tlsv3.SubjectAltNameMatcher {
	out := make([]*tlsv3.SubjectAltNameMatcher, 0, len(sans))
	for _, s := range sans {
		out = append(out, sanMatcher(s.Type, &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s.Value}}))
	}
	return out
}

// sanMatcher matches a URI SAN for type "URI", else a DNS SAN.
func sanMatcher(typ string, m *matcherv3.StringMatcher) *tlsv3.SubjectAltNameMatcher {
	t := tlsv3.SubjectAltNameMatcher_DNS
	if typ == "URI" {
		t = tlsv3.SubjectAltNameMatcher_URI
	}
	return &tlsv3.SubjectAltNameMatcher{SanType: t, Matcher: m}
}

func alpn(protocol string) []string {
	switch protocol {
	case model.ProtocolAuto:
		return []string{"h2", "http/1.1"}
	case model.ProtocolHTTP2:
		return []string{"h2"}
	}
	return []string{"http/1.1"}
}
