package translate

import (
	"fmt"
	"slices"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	aipmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ai_protocol_manager/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	transcoderv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/http/ai_filters/transcoder/v3"
	aiv3 "github.com/envoyproxy/go-control-plane/envoy/type/ai/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/tollgate-dev/tollgate/model"
)

// Provider schemas. A rule's clients speak the schema of its primary
// backends (model.RuleConfig.ClientSchema); a fail-over backend of another
// schema gets their requests translated, and its responses translated
// back, in its hop (hop.go), by Envoy's ai_protocol_manager HTTP filter
// and its transcoder AI filter (Envoy 1.40, alpha; see the Requirement in
// requirements.go). model.SchemasTranslatable says which pairs Envoy's
// transcoder covers; the config refuses every other one.
//
// How Envoy's engine behaves, and so what tollgate must do around it
// (source/extensions/filters/http/ai_protocol_manager/transcoding_engine.cc
// and source/extensions/http/ai_filters/transcoder/filter.cc):
//   - It translates through a canonical form, OpenAI chat completions: a
//     transcoder with request TO_IR converts the route's declared request
//     (client) schema into it, one with request FROM_IR converts it into
//     the target (response.llm_protocol) schema; on the response the same
//     filters run the other way round (TranscoderFilter::transcodeRequest,
//     ::responseLeg). Envoy's own ai-transcoder sandbox lists the two
//     transcoders in that order (TO_IR/FROM_IR, then FROM_IR/TO_IR).
//   - Only the Gemini pack names the request path (its envelope,
//     /v1beta/models/{model}:generateContent, or :streamGenerateContent
//     ?alt=sse when the body streams: renderRequestPath); TO_IR of a
//     Gemini request lifts the model and stream flag from the path into
//     the body (liftFromRequestPath). For OpenAI and Anthropic targets the
//     path is left as the client sent it, so the hop's route rewrites it.
//     The router applies the route's rewrite to the path as the filter
//     left it (the filter holds the headers until the body is read), as
//     the sandbox's Vertex route relies on.
//   - A request that does not translate is answered 400 by Envoy
//     (TranscoderFilter::decode); a response or SSE event that does not
//     translate is forwarded untranslated (::encodeUnary, ::encodeSSE).
//   - It cannot read a compressed response, so the hop's translating
//     routes remove accept-encoding (as the sandbox's virtual host does).

// ClientSchemaHeader tells a backend's hop which schema the client of the
// request speaks, so that it translates for that client. The outer route
// sets it; the hop's route removes it.
const ClientSchemaHeader = "x-tollgate-client-schema"

// filterSchema is the hop's ai_protocol_manager filter; its per-route
// configuration is keyed by this name.
const (
	filterSchema    = "tollgate.schema"
	typeTranscoder  = "envoy.http.ai_filters.transcoder"
	headerEncoding  = "accept-encoding"
	untranslatedMsg = "this path cannot be translated to the schema of the fail-over backend: only chat requests (OpenAI /v1/chat/completions, Anthropic /v1/messages, Gemini :generateContent and :streamGenerateContent) are translated"
)

// schemaProtocols are the Envoy LLMProtocols of the schemas the
// transcoder covers (envoy/type/ai/v3/llm_protocol.proto).
var schemaProtocols = map[string]aiv3.LLMProtocol{
	model.SchemaOpenAI:    aiv3.LLMProtocol_OPENAI_CHAT_COMPLETIONS,
	model.SchemaAnthropic: aiv3.LLMProtocol_ANTHROPIC_MESSAGES,
	model.SchemaGemini:    aiv3.LLMProtocol_GEMINI_GENERATE_CONTENT,
}

// geminiPathRegex matches a Gemini API or Vertex AI generateContent path:
// /v1beta/models/{model}:generateContent,
// /v1/projects/{p}/locations/{l}/publishers/google/models/{model}:streamGenerateContent.
// Envoy reads the model as the segment after the last "models/" up to
// the ':' (parseRequestPath in transcoding_engine.cc). Route path
// matching excludes the query (?alt=sse).
const geminiPathRegex = `^/(?:[^/]+/)*models/([^/:]+):(?:generateContent|streamGenerateContent)$`

// schemaEndpoint is a schema's chat endpoint: the requests of its clients
// that are translated (clientPath), and the path a translated request must
// reach a backend of the schema on (upstreamPath; empty when Envoy's
// transcoder writes the path itself).
type schemaEndpoint struct {
	exactPath    string // client path, exact; or
	pathRegex    string // client path, RE2
	upstreamPath string
}

var schemaEndpoints = map[string]schemaEndpoint{
	model.SchemaOpenAI:    {exactPath: "/v1/chat/completions", upstreamPath: "/v1/chat/completions"},
	model.SchemaAnthropic: {exactPath: "/v1/messages", upstreamPath: "/v1/messages"},
	model.SchemaGemini:    {pathRegex: geminiPathRegex},
}

// routeMatch matches the schema's chat endpoint.
func (e schemaEndpoint) routeMatch() *routev3.RouteMatch {
	if e.exactPath != "" {
		return &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: e.exactPath}}
	}
	return &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: regex(e.pathRegex)}}
}

// upstreamRewrite is how the hop's route rewrites a translated request's
// path for backend b, or nil when Envoy's transcoder writes it.
func upstreamRewrite(b *model.BackendConfig) *matcherv3.RegexMatchAndSubstitute {
	if p := schemaEndpoints[b.Schema].upstreamPath; p != "" {
		return &matcherv3.RegexMatchAndSubstitute{Pattern: regex(`^.*$`), Substitution: p}
	}
	return nil
}

// clientSchemaMatcher matches requests of clients speaking schema.
func clientSchemaMatcher(schema string) *routev3.HeaderMatcher {
	return &routev3.HeaderMatcher{Name: ClientSchemaHeader, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
		MatchPattern: &matcherv3.StringMatcher_Exact{Exact: schema},
	}}}
}

// applyClientSchema sets ClientSchemaHeader on a route whose rule can
// reach a backend speaking another schema than its clients.
func applyClientSchema(route *routev3.Route, g *model.GatewayConfig, rule *model.RuleConfig) {
	client, ok := rule.ClientSchema()
	if !ok {
		return
	}
	translated := false
	for _, wb := range ServedBackends(g, rule) {
		if wb.Backend.Schema != client && slices.Contains(wb.Backend.ClientSchemas, client) {
			translated = true
		}
	}
	if !translated {
		return
	}
	// A workload must not choose: its own value is removed, and the
	// removal runs before the additions (HeaderParser::evaluateHeaders in
	// source/common/router/header_parser.cc).
	if !slices.Contains(route.RequestHeadersToRemove, ClientSchemaHeader) {
		route.RequestHeadersToRemove = append(route.RequestHeadersToRemove, ClientSchemaHeader)
	}
	route.RequestHeadersToAdd = append(route.RequestHeadersToAdd, &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: ClientSchemaHeader, Value: client},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	})
}

// hopSchema is what a backend's hop adds to translate for clients of other
// schemas (b.ClientSchemas): HTTP filters before its router, and routes
// before its default one.
func hopSchema(b *model.BackendConfig) ([]*hcmv3.HttpFilter, []*routev3.Route, error) {
	if len(b.ClientSchemas) == 0 {
		return nil, nil, nil
	}
	target, ok := schemaProtocols[b.Schema]
	if !ok {
		return nil, nil, fmt.Errorf("%s: Envoy's transcoder cannot translate to schema %s", b.Ref, b.Schema)
	}
	var routes []*routev3.Route
	toIR := false
	for _, client := range b.ClientSchemas {
		source, ok := schemaProtocols[client]
		if !ok || !model.SchemasTranslatable(client, b.Schema) || client == b.Schema {
			return nil, nil, fmt.Errorf("%s: Envoy's transcoder cannot translate from schema %s to %s", b.Ref, client, b.Schema)
		}
		if client != model.SchemaOpenAI {
			toIR = true
		}
		perRoute, err := toAny(&aipmv3.AiProtocolManagerPerRoute{
			Request:  &aipmv3.RequestPerRoute{LlmProtocol: source},
			Response: &aipmv3.ResponsePerRoute{LlmProtocol: target},
		})
		if err != nil {
			return nil, nil, err
		}
		action := &routev3.RouteAction{
			ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: ClusterName(b)},
			Timeout:          durationpb.New(0),
			RetryPolicy:      hopRetryPolicy(),
			RegexRewrite:     upstreamRewrite(b),
		}
		if b.Hostname != "" {
			action.HostRewriteSpecifier = &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: b.Hostname}
		}
		m := schemaEndpoints[client].routeMatch()
		m.Headers = []*routev3.HeaderMatcher{clientSchemaMatcher(client)}
		routes = append(routes, &routev3.Route{
			Name:                   HopName(b) + "/schema/" + client,
			Match:                  m,
			Action:                 &routev3.Route_Route{Route: action},
			RequestHeadersToRemove: []string{ClientSchemaHeader, ModelHeader, headerEncoding},
			TypedPerFilterConfig:   map[string]*anypb.Any{filterSchema: perRoute},
		})
	}
	// Any other request of a translated client (embeddings, files, model
	// lists, ...) must not reach the backend in the client's schema: a
	// marked refusal, which the outer route retries on the next backend
	// (hop.go, RefusalHeader), and otherwise answers the client.
	for _, client := range b.ClientSchemas {
		refusal := guardRefusal(client, 503, "untranslatable_path", untranslatedMsg)
		routes = append(routes, &routev3.Route{
			Name: HopName(b) + "/schema/" + client + "/untranslated",
			Match: &routev3.RouteMatch{
				PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"},
				Headers:       []*routev3.HeaderMatcher{clientSchemaMatcher(client)},
			},
			Action: &routev3.Route_DirectResponse{DirectResponse: refusal},
			ResponseHeadersToAdd: []*corev3.HeaderValueOption{{
				Header:       &corev3.HeaderValue{Key: RefusalHeader, Value: "1"},
				AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
			}, {
				Header:       &corev3.HeaderValue{Key: "content-type", Value: "application/json"},
				AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
			}},
		})
	}

	// Request legs run in list order, response legs in reverse: client →
	// IR → backend, and backend → IR → client (Envoy's ai-transcoder
	// sandbox, envoy.yaml). A leg whose dialect is the IR (OpenAI) does
	// nothing (transcodeRequest / transcodeResponse / findStreamGrammar in
	// transcoding_engine.cc return early for kIrProtocol), so the client
	// leg is left out when every client speaks OpenAI, and the backend leg
	// when the backend does.
	var legs []*corev3.TypedExtensionConfig
	if toIR {
		legs = append(legs, &corev3.TypedExtensionConfig{Name: typeTranscoder, TypedConfig: mustAny(&transcoderv3.Transcoder{
			RequestHandling:  transcoderv3.Transcoder_TO_IR,
			ResponseHandling: transcoderv3.Transcoder_FROM_IR,
		})})
	}
	if b.Schema != model.SchemaOpenAI {
		legs = append(legs, &corev3.TypedExtensionConfig{Name: typeTranscoder, TypedConfig: mustAny(&transcoderv3.Transcoder{
			RequestHandling:  transcoderv3.Transcoder_FROM_IR,
			ResponseHandling: transcoderv3.Transcoder_TO_IR,
		})})
	}
	manager, err := toAny(&aipmv3.AiProtocolManager{
		// Its presence turns request processing on, for the routes with
		// per-route configuration only (parse_unconfigured_routes off): the
		// hop's default route is left alone.
		RequestHandling: &aipmv3.RequestHandling{},
		Filters:         legs,
	})
	if err != nil {
		return nil, nil, err
	}
	filters := []*hcmv3.HttpFilter{{Name: filterSchema, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: manager}}}
	return filters, routes, nil
}
