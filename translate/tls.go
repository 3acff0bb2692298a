package translate

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"

	"github.com/tollgate-dev/tollgate/model"
)

// UpstreamTLSTransportSocket originates TLS to a backend: SNI is the
// backend's hostname and the certificate must chain to the system trust
// bundle and carry the hostname as a DNS SAN (Envoy applies wildcard
// semantics to DNS SANs, so *.openai.com certificates match).
func UpstreamTLSTransportSocket(cfg *model.Config, b *model.BackendConfig) (*corev3.TransportSocket, error) {
	ctx, err := toAny(UpstreamTLSContext(cfg, b))
	if err != nil {
		return nil, err
	}
	return &corev3.TransportSocket{
		Name:       wellknown.TransportSocketTLS,
		ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: ctx},
	}, nil
}

// UpstreamTLSContext is the TLS client configuration for a backend.
func UpstreamTLSContext(cfg *model.Config, b *model.BackendConfig) *tlsv3.UpstreamTlsContext {
	return &tlsv3.UpstreamTlsContext{
		Sni: b.Hostname,
		CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsParams: &tlsv3.TlsParameters{
				TlsMinimumProtocolVersion: tlsv3.TlsParameters_TLSv1_2,
			},
			AlpnProtocols: alpn(b.Protocol),
			ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
				TrustedCa: &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: cfg.Settings.SystemCABundle}},
				MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{
					SanType: tlsv3.SubjectAltNameMatcher_DNS,
					Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: b.Hostname}},
				}},
			}},
		},
	}
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
