package translate

import (
	"sort"
	"time"

	mutationv3 "github.com/envoyproxy/go-control-plane/envoy/config/common/mutation_rules/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	awsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/aws/v3"
	awssigningv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/aws_request_signing/v3"
	credinjectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/credential_injector/v3"
	headermutationv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/header_mutation/v3"
	upstreamcodecv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/upstream_codec/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	genericv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/http/injected_credentials/generic/v3"
	oauth2credv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/http/injected_credentials/oauth2/v3"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/tollgate-dev/tollgate/model"
)

// Upstream HTTP filter names.
const (
	filterHeaderMutation     = "envoy.filters.http.header_mutation"
	filterCredentialInjector = "envoy.filters.http.credential_injector"
	filterAWSRequestSigning  = "envoy.filters.http.aws_request_signing"
	filterUpstreamCodec      = "envoy.filters.http.upstream_codec"
)

// UpstreamHTTPFilters is a backend's upstream filter chain: it runs on the
// cluster, after routing, once per attempt. That is the one place where the
// destination is certain — also when a retry or fail-over moves the request
// to another backend — so credentials are handled here and nowhere else:
// the workload's own credential headers are removed, then this backend's
// credential is added. Nil when the backend injects nothing.
func UpstreamHTTPFilters(b *model.BackendConfig) ([]*hcmv3.HttpFilter, error) {
	c := b.Credential
	if c == nil {
		return nil, nil
	}
	var filters []*hcmv3.HttpFilter
	hm, err := toAny(credentialHeaderMutation(c))
	if err != nil {
		return nil, err
	}
	filters = append(filters, &hcmv3.HttpFilter{Name: filterHeaderMutation, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: hm}})
	switch c.Kind {
	case model.CredentialAPIKey, model.CredentialOAuth2:
		inj, err := credentialInjector(b)
		if err != nil {
			return nil, err
		}
		filters = append(filters, inj)
	case model.CredentialAWSSigV4:
		sign, err := toAny(awsSigning(c.AWS))
		if err != nil {
			return nil, err
		}
		filters = append(filters, &hcmv3.HttpFilter{Name: filterAWSRequestSigning, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: sign}})
	}
	codec := mustAny(&upstreamcodecv3.UpstreamCodec{})
	filters = append(filters, &hcmv3.HttpFilter{Name: filterUpstreamCodec, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: codec}})
	return filters, nil
}

// credentialHeaderMutation strips every header and query parameter
// workloads use for their own provider credentials, and adds the provider's
// non-secret headers: the preset's only when the workload sent none, the
// operator's always.
func credentialHeaderMutation(c *model.Credential) *headermutationv3.HeaderMutation {
	m := &headermutationv3.Mutations{}
	for _, h := range model.WorkloadCredentialHeaders {
		m.RequestMutations = append(m.RequestMutations, &mutationv3.HeaderMutation{Action: &mutationv3.HeaderMutation_Remove{Remove: h}})
	}
	for _, q := range model.WorkloadCredentialQueryParams {
		m.QueryParameterMutations = append(m.QueryParameterMutations, &corev3.KeyValueMutation{Remove: q})
	}
	m.RequestMutations = append(m.RequestMutations, headerAppends(c.DefaultHeaders, corev3.HeaderValueOption_ADD_IF_ABSENT)...)
	m.RequestMutations = append(m.RequestMutations, headerAppends(c.StaticHeaders, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD)...)
	// A provider's answer must never pass for Envoy's own refusal, which a
	// fail-over route retries (see hop.go).
	m.ResponseMutations = append(m.ResponseMutations, &mutationv3.HeaderMutation{Action: &mutationv3.HeaderMutation_Remove{Remove: RefusalHeader}})
	return &headermutationv3.HeaderMutation{Mutations: m}
}

func headerAppends(headers map[string]string, action corev3.HeaderValueOption_HeaderAppendAction) []*mutationv3.HeaderMutation {
	names := make([]string, 0, len(headers))
	for h := range headers {
		names = append(names, h)
	}
	sort.Strings(names)
	out := make([]*mutationv3.HeaderMutation, 0, len(names))
	for _, h := range names {
		out = append(out, &mutationv3.HeaderMutation{Action: &mutationv3.HeaderMutation_Append{Append: &corev3.HeaderValueOption{
			Header:       &corev3.HeaderValue{Key: h, Value: headers[h]},
			AppendAction: action,
		}}})
	}
	return out
}

func credentialInjector(b *model.BackendConfig) (*hcmv3.HttpFilter, error) {
	c := b.Credential
	var ext *corev3.TypedExtensionConfig
	switch c.Kind {
	case model.CredentialAPIKey:
		g, err := toAny(&genericv3.Generic{
			Credential:        sdsConfig(CredentialSecretName(b)),
			Header:            c.Header,
			HeaderValuePrefix: c.Prefix,
		})
		if err != nil {
			return nil, err
		}
		ext = &corev3.TypedExtensionConfig{Name: "envoy.http.injected_credentials.generic", TypedConfig: g}
	case model.CredentialOAuth2:
		o, err := toAny(&oauth2credv3.OAuth2{
			TokenEndpoint: &corev3.HttpUri{
				Uri:              c.OAuth2.TokenURL,
				HttpUpstreamType: &corev3.HttpUri_Cluster{Cluster: OAuth2ClusterName(b)},
				Timeout:          durationpb.New(10 * time.Second),
			},
			Scopes: c.OAuth2.Scopes,
			FlowType: &oauth2credv3.OAuth2_ClientCredentials_{ClientCredentials: &oauth2credv3.OAuth2_ClientCredentials{
				ClientId:     c.OAuth2.ClientID,
				ClientSecret: sdsConfig(OAuth2ClientSecretName(b)),
			}},
		})
		if err != nil {
			return nil, err
		}
		ext = &corev3.TypedExtensionConfig{Name: "envoy.http.injected_credentials.oauth2", TypedConfig: o}
	}
	cfg, err := toAny(&credinjectorv3.CredentialInjector{
		// The workload's header was removed just before; overwrite anyway,
		// so that nothing but this backend's credential can be sent.
		Overwrite: true,
		// Fail closed: without its credential a request is refused, not
		// sent anonymously.
		AllowRequestWithoutCredential: false,
		Credential:                    ext,
	})
	if err != nil {
		return nil, err
	}
	return &hcmv3.HttpFilter{Name: filterCredentialInjector, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: cfg}}, nil
}

// awsSigning signs with SigV4. Static keys, when given, are part of the
// filter config: Envoy's AWS signer cannot read them over SDS, so they
// travel in this backend's cluster only (and rotate with a cluster update).
// Without keys Envoy uses its host's credential chain.
func awsSigning(a *model.AWSCredential) *awssigningv3.AwsRequestSigning {
	s := &awssigningv3.AwsRequestSigning{ServiceName: a.Service, Region: a.Region}
	if a.AccessKeyID != nil {
		s.CredentialProvider = &awsv3.AwsCredentialProvider{InlineCredential: &awsv3.InlineCredentialProvider{
			AccessKeyId:     string(a.AccessKeyID),
			SecretAccessKey: string(a.SecretAccessKey),
			SessionToken:    string(a.SessionToken),
		}}
	}
	return s
}
