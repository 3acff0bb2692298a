package translate

import (
	"net/netip"
	"sort"
	"strconv"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	mutationrulesv3 "github.com/envoyproxy/go-control-plane/envoy/config/common/mutation_rules/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	jsonparserv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/content_parsers/json/v3"
	headermutationv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/header_mutation/v3"
	headertometadatav3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/header_to_metadata/v3"
	iptaggingv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ip_tagging/v3"
	jsontometadatav3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/json_to_metadata/v3"
	ssetometadatav3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/sse_to_metadata/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/tollgate-dev/tollgate/model"
)

// The pipeline: the one place the order of a listener's HTTP filters is
// written down (httpFilters). On the request path:
//
//  1. the body, read once for routing: a workload's routing headers are
//     removed, the body is held up to its size limit (413 above it), and
//     its model, prompt and requested output tokens become request
//     headers, after which Envoy chooses the route again (body.go). The
//     route every later filter acts on is therefore the one the model
//     selects, so model routing comes first: access control, guard rails,
//     processors and limits decided on a route chosen without the body
//     would apply another route's rules;
//  2. access control: RBAC (EgressPolicy sources, ExternalAuth rules),
//     then each ExternalAuth service (externalauth.go);
//  3. attribution: the verified client identity into metadata, client
//     address groups into headers (identityFilters, ipTagging);
//  4. input guard rails: model lists, prompt patterns and refused output
//     caps are routes that answer the refusal, placed before the route
//     they guard (guardEntries): the router answers them, and no later
//     filter acts on them, since processors and limits are per route; a
//     clamped output cap rewrites the body here (clampFilter);
//  5. payload processors that change the prompt (payloadprocessor.go);
//     they cannot re-route the request (a processor's route change would
//     skip the new route's access control);
//  6. token accounting reads the body as the processors left it, after
//     redaction: the model and requested output tokens into metadata
//     (json_to_metadata), and on the response the provider's reported
//     usage (json_to_metadata for JSON, sse_to_metadata for streams);
//  7. rate limits: per-Envoy, then requests, then token budgets
//     (ratelimit.go), so that a budget is charged only for a request
//     every earlier stage admitted;
//  8. the router; per attempt, on the backend the attempt goes to, its
//     hop renames the model and translates the schema (body.go,
//     schema.go), and its cluster's upstream filters inject its
//     credential (credentials.go).
//
// Encoder filters run in the reverse order: on the response, the hop
// translates back, then the usage filters read the provider's usage, then
// the processors see the response, and the rate limit filter settles the
// token budgets at the stream's end, when every filter above it has written
// its response metadata; the access log is written last.
func httpFilters(g *model.GatewayConfig, l *model.ListenerConfig, n rateLimitNeeds, b bodyNeeds) []*hcmv3.HttpFilter {
	var filters []*hcmv3.HttpFilter
	filters = append(filters, bodyRouteFilters(b)...)
	filters = append(filters, accessFilters(l)...)
	filters = append(filters, identityFilters(l, n)...)
	filters = append(filters, ipTagging(n)...)
	filters = append(filters, clampFilter(b)...)
	filters = append(filters, processorFilters(l)...)
	filters = append(filters, bodyFilters(n)...)
	filters = append(filters, rateLimitFilters(g, l, n)...)
	return append(filters, routerFilter())
}

const (
	filterIdentityMutation = "tollgate.attribution.identity"
	filterHeaderToMeta     = "tollgate.attribution.metadata"
	filterIPTagging        = "tollgate.attribution.source_cidr"
	filterJSONToMetadata   = "tollgate.body"
	filterSSEToMetadata    = "tollgate.body.sse"
	typeJSONContentParser  = "envoy.content_parsers.json"

	// ClientIDHeader carries the verified client identity from the
	// header mutation filter to the header-to-metadata filter, which
	// removes it: it never reaches the router. A value a workload sends
	// is removed first.
	ClientIDHeader = "x-tollgate-client-id"
)

// identityFilters put the verified client identity into metadata, on
// listeners that verify clients and whose limits are keyed by it. The
// identity is the verified peer certificate's URI SAN
// (%DOWNSTREAM_PEER_URI_SAN%, empty without a certificate, when the
// header is not added: AppendMutation::evaluateHeaders in
// source/common/http/header_mutation.cc), never a header the workload
// sent: the workload's own is removed before.
func identityFilters(l *model.ListenerConfig, n rateLimitNeeds) []*hcmv3.HttpFilter {
	if ok, _ := model.VerifiesClients(l); !ok || !n.identity {
		return nil
	}
	mutation := &headermutationv3.HeaderMutation{Mutations: &headermutationv3.Mutations{RequestMutations: []*mutationrulesv3.HeaderMutation{
		{Action: &mutationrulesv3.HeaderMutation_Remove{Remove: ClientIDHeader}},
		{Action: &mutationrulesv3.HeaderMutation_Append{Append: &corev3.HeaderValueOption{
			Header:       &corev3.HeaderValue{Key: ClientIDHeader, Value: "%DOWNSTREAM_PEER_URI_SAN%"},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		}}},
	}}}
	// A value the pattern does not match becomes "" and is not written
	// (HeaderToMetadataFilter::applyKeyValue skips empty values), so the
	// rate limit descriptor falls back to NoIdentity.
	capture := func(part string) *matcherv3.RegexMatchAndSubstitute {
		re := l.Identity.CaptureRegex(part)
		return &matcherv3.RegexMatchAndSubstitute{
			Pattern:      regex("^(?:" + re[1:len(re)-1] + "|.*)$"),
			Substitution: `\1`,
		}
	}
	kv := func(key string, rw *matcherv3.RegexMatchAndSubstitute) *headertometadatav3.Config_KeyValuePair {
		return &headertometadatav3.Config_KeyValuePair{MetadataNamespace: MetadataNamespace, Key: key, RegexValueRewrite: rw}
	}
	rules := []*headertometadatav3.Config_Rule{
		{Header: ClientIDHeader, OnHeaderPresent: kv(MetaSPIFFEID, nil)},
		{Header: ClientIDHeader, OnHeaderPresent: kv(MetaNamespace, capture(model.PartNamespace))},
		{Header: ClientIDHeader, OnHeaderPresent: kv(MetaServiceAccount, capture(model.PartServiceAccount)), Remove: true},
	}
	return []*hcmv3.HttpFilter{
		{Name: filterIdentityMutation, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(mutation)}},
		{Name: filterHeaderToMeta, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&headertometadatav3.Config{RequestRules: rules})}},
	}
}

// ipTagging tags each client with its address group, one filter and one
// header per grouping; SANITIZE replaces a header a workload sent. The
// router removes the headers (RouteRequestHeadersToRemove).
func ipTagging(n rateLimitNeeds) []*hcmv3.HttpFilter {
	var out []*hcmv3.HttpFilter
	for _, cg := range n.cidrGroups {
		names := make([]string, 0, len(cg.groups))
		for name := range cg.groups {
			names = append(names, name)
		}
		sort.Strings(names)
		cfg := &iptaggingv3.IPTagging{
			RequestType: iptaggingv3.IPTagging_BOTH,
			IpTagHeader: &iptaggingv3.IPTagging_IpTagHeader{Header: cg.header, Action: iptaggingv3.IPTagging_IpTagHeader_SANITIZE},
		}
		for _, name := range names {
			tag := &iptaggingv3.IPTagging_IPTag{IpTagName: name}
			for _, c := range cg.groups[name] {
				p := netip.MustParsePrefix(c)
				tag.IpList = append(tag.IpList, &corev3.CidrRange{AddressPrefix: p.Addr().String(), PrefixLen: wrapperspb.UInt32(uint32(p.Bits()))})
			}
			cfg.IpTags = append(cfg.IpTags, tag)
		}
		out = append(out, &hcmv3.HttpFilter{Name: filterIPTagging + "." + cg.header[len("x-tollgate-source-cidr-"):], ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(cfg)}})
	}
	return out
}

// selector is a JSON path in a body.
type selector []string

// The fields the body filters read, per provider API shape. The request's
// model and requested maximum output tokens: OpenAI chat completions
// (max_tokens, max_completion_tokens), OpenAI responses
// (max_output_tokens), Anthropic messages (max_tokens), Gemini
// (generationConfig.maxOutputTokens). Later entries win (JSON to metadata
// writes rules in order: Filter::processBody in
// source/extensions/filters/http/json_to_metadata/filter.cc).
var (
	requestModelFields = []selector{{"model"}}
	maxOutputFields    = []selector{{"max_tokens"}, {"max_completion_tokens"}, {"max_output_tokens"}, {"generationConfig", "maxOutputTokens"}}

	// Usage, in JSON responses and in SSE events: OpenAI (usage.prompt_tokens
	// ...; the responses API's response.completed event nests it in
	// response), Anthropic (usage.input_tokens; message_start nests it in
	// message), Gemini (usageMetadata).
	usageFields = map[string][]selector{
		MetaInputTokens: {{"usage", "prompt_tokens"}, {"usage", "input_tokens"}, {"message", "usage", "input_tokens"},
			{"response", "usage", "input_tokens"}, {"usageMetadata", "promptTokenCount"}},
		MetaOutputTokens: {{"usage", "completion_tokens"}, {"usage", "output_tokens"}, {"response", "usage", "output_tokens"},
			{"usageMetadata", "candidatesTokenCount"}},
		MetaTotalTokens: {{"usage", "total_tokens"}, {"response", "usage", "total_tokens"}, {"usageMetadata", "totalTokenCount"}},
		MetaCachedTokens: {{"usage", "prompt_tokens_details", "cached_tokens"}, {"usage", "cache_read_input_tokens"},
			{"usageMetadata", "cachedContentTokenCount"}},
		MetaResponseModel: {{"model"}, {"message", "model"}, {"response", "model"}, {"modelVersion"}},
	}
	usageKeys = []string{MetaInputTokens, MetaOutputTokens, MetaTotalTokens, MetaCachedTokens, MetaResponseModel}
)

func jsonRule(sel selector, key string, typ jsontometadatav3.JsonToMetadata_ValueType) *jsontometadatav3.JsonToMetadata_Rule {
	r := &jsontometadatav3.JsonToMetadata_Rule{OnPresent: &jsontometadatav3.JsonToMetadata_KeyValuePair{
		MetadataNamespace: MetadataNamespace, Key: key, Type: typ,
	}}
	for _, k := range sel {
		r.Selectors = append(r.Selectors, &jsontometadatav3.JsonToMetadata_Selector{Selector: &jsontometadatav3.JsonToMetadata_Selector_Key{Key: k}})
	}
	return r
}

func valueType(key string) jsontometadatav3.JsonToMetadata_ValueType {
	if key == MetaResponseModel || key == MetaRequestModel {
		return jsontometadatav3.JsonToMetadata_STRING
	}
	return jsontometadatav3.JsonToMetadata_NUMBER
}

// RequestBodyRules read the request's model and maximum output tokens;
// the first maximum's missing and error cases write the default, so that
// a body that asks for none, or is not JSON, is still reserved for.
func RequestBodyRules(defaultMaxOutput uint64) []*jsontometadatav3.JsonToMetadata_Rule {
	var rules []*jsontometadatav3.JsonToMetadata_Rule
	for _, s := range requestModelFields {
		rules = append(rules, jsonRule(s, MetaRequestModel, jsontometadatav3.JsonToMetadata_STRING))
	}
	def := &jsontometadatav3.JsonToMetadata_KeyValuePair{
		MetadataNamespace: MetadataNamespace, Key: MetaMaxOutputTokens,
		ValueType: &jsontometadatav3.JsonToMetadata_KeyValuePair_Value{Value: structpb.NewNumberValue(float64(defaultMaxOutput))},
	}
	for i, s := range maxOutputFields {
		r := jsonRule(s, MetaMaxOutputTokens, jsontometadatav3.JsonToMetadata_NUMBER)
		if i == 0 {
			r.OnMissing, r.OnError = def, def
		}
		rules = append(rules, r)
	}
	return append(rules, jsonRule(selector{"stream"}, MetaStream, jsontometadatav3.JsonToMetadata_PROTOBUF_VALUE))
}

// ResponseBodyRules read the provider's reported usage.
func ResponseBodyRules() []*jsontometadatav3.JsonToMetadata_Rule {
	var rules []*jsontometadatav3.JsonToMetadata_Rule
	for _, key := range usageKeys {
		for _, s := range usageFields[key] {
			rules = append(rules, jsonRule(s, key, valueType(key)))
		}
	}
	return rules
}

// jsonTypes: JSON to metadata compares the whole content-type value
// (Filter::requestContentTypeAllowed, same file), so the charset variant is
// listed, and a request without one is read too.
func jsonTypes() *jsontometadatav3.JsonToMetadata_MatchRules {
	return &jsontometadatav3.JsonToMetadata_MatchRules{
		AllowContentTypes:      []string{"application/json", "application/json; charset=utf-8", "application/json;charset=utf-8"},
		AllowEmptyContentType:  true,
		AllowContentTypesRegex: regex(`^application/(?:[a-z0-9.+-]+\+)?json(?:\s*;.*)?$`),
	}
}

// bodyFilters read the body where a limit needs it: the request's model and
// output reservation, the response's usage (streams: sse_to_metadata,
// Envoy 1.38+, which never holds the stream: Filter::encodeData in
// source/extensions/filters/http/sse_to_metadata/filter.cc).
func bodyFilters(n rateLimitNeeds) []*hcmv3.HttpFilter {
	if !n.body && !n.usage {
		return nil
	}
	j := &jsontometadatav3.JsonToMetadata{}
	if n.body {
		rules := jsonTypes()
		rules.Rules = RequestBodyRules(n.defaultMaxOutput)
		j.RequestRules = rules
	}
	if n.usage {
		rules := jsonTypes()
		rules.AllowEmptyContentType = false
		rules.Rules = ResponseBodyRules()
		j.ResponseRules = rules
	}
	out := []*hcmv3.HttpFilter{{Name: filterJSONToMetadata, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(j)}}}
	if n.usage {
		parser := &jsonparserv3.JsonContentParser{}
		for _, r := range ResponseBodyRules() {
			parser.Rules = append(parser.Rules, &jsonparserv3.JsonContentParser_RuleConfig{Rule: r})
		}
		sse := &ssetometadatav3.SseToMetadata{ResponseRules: &ssetometadatav3.SseToMetadata_ProcessingRules{
			ContentParser: &corev3.TypedExtensionConfig{Name: typeJSONContentParser, TypedConfig: mustAny(parser)},
			// Responses API events repeat the whole response: 64 KiB
			// rather than the 8 KiB default.
			MaxEventSize: wrapperspb.UInt32(64 << 10),
		}}
		out = append(out, &hcmv3.HttpFilter{Name: filterSSEToMetadata, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(sse)}})
	}
	return out
}

// RateLimitedBody is the JSON body of a request a limit refused, in the
// error shape of both OpenAI's clients (error.code, error.message) and
// Anthropic's (type: error, error.type).
var RateLimitedBody = map[string]any{
	"type": "error",
	"error": map[string]any{
		"type":    "rate_limit_error",
		"code":    "rate_limit_exceeded",
		"message": "a rate limit of the gateway refused this request; retry after the number of seconds in Retry-After",
		"details": "%RESPONSE_CODE_DETAILS%",
		"limit":   "%RESP(x-ratelimit-limit)%",
	},
}

// RateLimitUnavailableBody answers a request whose budget the gateway
// could not check (the rate limit service failed and the limit fails
// closed).
var RateLimitUnavailableBody = map[string]any{
	"type": "error",
	"error": map[string]any{
		"type":    "api_error",
		"code":    "rate_limit_service_unavailable",
		"message": "the gateway could not check this request's budget; retry later",
		"details": "%RESPONSE_CODE_DETAILS%",
	},
}

// rateLimitMappers rewrite the local replies of the rate limit filters:
// RL (RateLimited) is set by both the global and the local filter
// (Filter::complete in source/extensions/filters/http/ratelimit/ratelimit.cc,
// Filter::decodeHeaders in .../local_ratelimit/local_ratelimit.cc), RLSE
// by a failed check that fails closed. Retry-After is the reset of the
// limit nearest to exhaustion, from the x-ratelimit-reset header the
// filter added to the reply before the mapper runs
// (Utility::sendLocalReply calls modify_headers, then rewrite); a local
// limit adds its own (LocalRateLimit response_headers_to_add).
func rateLimitMappers(n rateLimitNeeds) []*hcmv3.ResponseMapper {
	if !n.requests && !n.tokens && !n.local {
		return nil
	}
	flag := func(f string) *accesslogv3.AccessLogFilter {
		return &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_ResponseFlagFilter{ResponseFlagFilter: &accesslogv3.ResponseFlagFilter{Flags: []string{f}}}}
	}
	body := func(m map[string]any) *corev3.SubstitutionFormatString {
		s, err := structpb.NewStruct(m)
		if err != nil {
			panic(err) // a constant
		}
		return &corev3.SubstitutionFormatString{Format: &corev3.SubstitutionFormatString_JsonFormat{JsonFormat: s}}
	}
	return []*hcmv3.ResponseMapper{
		{
			Filter:             flag("RL"),
			BodyFormatOverride: body(RateLimitedBody),
			HeadersToAdd: []*corev3.HeaderValueOption{{
				Header:       &corev3.HeaderValue{Key: "retry-after", Value: "%RESP(x-ratelimit-reset)%"},
				AppendAction: corev3.HeaderValueOption_ADD_IF_ABSENT,
			}},
		},
		{Filter: flag("RLSE"), BodyFormatOverride: body(RateLimitUnavailableBody)},
	}
}

func retryAfter(unit string) string {
	return strconv.Itoa(int(model.UnitDuration(unit).Seconds()))
}
