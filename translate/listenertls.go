package translate

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/tollgate-dev/tollgate/model"
)

// An HTTPS listener terminates TLS from workloads. Its certificate and
// trust bundle always come over SDS, never inline in the listener, so a
// rotation is an SDS push and never drains a listener:
//
//   - files on tollgate's host are secrets tollgate serves on the ADS
//     stream (listener-tls/…, listener-validation/…), like BackendTLSPolicy
//     material;
//   - SPIFFE sources are asked of the Envoy's local SPIRE agent through the
//     static cluster SPIREAgentCluster, under the agent's default names:
//     "default" for the SVID, "spiffe://<trust domain>" for one trust
//     domain's bundle, "ALL" for every bundle it has. The agent answers a
//     bundle with a validation context that carries Envoy's SPIFFE
//     certificate validator (envoy.tls.cert_validator.spiffe) with one
//     trust bundle per trust domain, so a federated peer is verified
//     against its own domain's bundle only.
//
// The SAN matchers stay in the listener (the default half of a combined
// validation context, which Envoy merges with the secret), so the agent's
// answer cannot widen them.

// DownstreamTLSTransportSocket is an HTTPS listener's transport socket.
func DownstreamTLSTransportSocket(l *model.ListenerConfig) (*corev3.TransportSocket, error) {
	return tlsTransportSocket(DownstreamTLSContext(l))
}

// DownstreamTLSContext is the TLS server configuration of an HTTPS
// listener. With client validation in Require mode a client without a valid
// certificate fails the handshake; in Optional mode it may present none,
// but one it presents must verify.
func DownstreamTLSContext(l *model.ListenerConfig) *tlsv3.DownstreamTlsContext {
	t := l.TLS
	cert := sdsConfig(ListenerCertSecretName(t, l))
	if t.SVIDName != "" {
		cert = spireSDSConfig(t.SVIDName)
	}
	ctx := &tlsv3.DownstreamTlsContext{
		CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsParams:                      tlsParams(""),
			AlpnProtocols:                  alpn(model.ProtocolAuto),
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{cert},
		},
	}
	if c := t.Client; c != nil {
		vc := sdsConfig(ListenerValidationSecretName(t, l))
		if c.SPIFFE() {
			vc = spireSDSConfig(c.BundleName)
		}
		ctx.RequireClientCertificate = wrapperspb.Bool(c.Require)
		ctx.CommonTlsContext.ValidationContextType = &tlsv3.CommonTlsContext_CombinedValidationContext{CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
			DefaultValidationContext:         &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: sanMatches(c.SANs)},
			ValidationContextSdsSecretConfig: vc,
		}}
	}
	return ctx
}

// ListenerSecrets are the SDS secrets tollgate serves for a listener's
// files; none for SPIFFE sources, which the agent serves.
func ListenerSecrets(l *model.ListenerConfig) []*tlsv3.Secret {
	t := l.TLS
	if t == nil {
		return nil
	}
	var out []*tlsv3.Secret
	if t.CertificateChain != nil {
		out = append(out, &tlsv3.Secret{
			Name: ListenerCertSecretName(t, l),
			Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
				CertificateChain: inlineBytes(t.CertificateChain),
				PrivateKey:       inlineBytes(t.PrivateKey),
			}},
		})
	}
	if c := t.Client; c != nil && c.CA != nil {
		out = append(out, &tlsv3.Secret{
			Name: ListenerValidationSecretName(t, l),
			Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{TrustedCa: inlineBytes(c.CA)}},
		})
	}
	return out
}

// spireSDSConfig refers to a secret the local SPIRE agent serves.
func spireSDSConfig(name string) *tlsv3.SdsSecretConfig {
	return &tlsv3.SdsSecretConfig{Name: name, SdsConfig: &corev3.ConfigSource{
		ResourceApiVersion: corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_ApiConfigSource{ApiConfigSource: &corev3.ApiConfigSource{
			ApiType:             corev3.ApiConfigSource_GRPC,
			TransportApiVersion: corev3.ApiVersion_V3,
			GrpcServices: []*corev3.GrpcService{{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{
				EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: SPIREAgentCluster},
			}}},
		}},
	}}
}

// sanMatches turns exact and prefix SAN matches into Envoy's matchers.
func sanMatches(sans []model.SANMatch) []*tlsv3.SubjectAltNameMatcher {
	out := make([]*tlsv3.SubjectAltNameMatcher, 0, len(sans))
	for _, s := range sans {
		m := &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s.Value}}
		if s.Prefix != "" {
			m = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: s.Prefix}}
		}
		out = append(out, sanMatcher(s.Type, m))
	}
	return out
}
