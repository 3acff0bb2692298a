package translate

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"

	xdscorev3 "github.com/cncf/xds/go/xds/core/v3"
	xdsmatcherv3 "github.com/cncf/xds/go/xds/type/matcher/v3"
	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	mutationrulesv3 "github.com/envoyproxy/go-control-plane/envoy/config/common/mutation_rules/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matchingv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/matching/v3"
	bufferv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/buffer/v3"
	compositev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/composite/v3"
	headermutationv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/header_mutation/v3"
	transformv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/transform/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/tollgate-dev/tollgate/model"
)

// Reading the body for routing. The model a request asks for, its prompt
// and its requested output tokens live in the JSON body, which Envoy's
// route table cannot see. So the first filters of the chain put them into
// request headers and make Envoy choose the route again:
//
//  1. tollgate.body.sanitize (header_mutation) removes any such header a
//     workload sent, on every request, JSON or not;
//  2. tollgate.body.limit (buffer) holds the whole body, up to the
//     gateway's or route's maxRequestBodySize, and answers 413 above it;
//  3. tollgate.body.route (transform, Envoy 1.37+) parses the body once
//     and sets ModelHeader from the body's model, PromptHeader from its
//     prompt fields and one header per output-token field, then clears
//     the route cache (TransformFilter::handleCompleteRequestBody in
//     source/extensions/filters/http/transform/transform.cc calls
//     clearRouteCache after its header mutations).
//
// Every later filter — access control, guard rails, payload processors,
// rate limits, the router — therefore acts on the route the model
// selects: a filter that read its per-route configuration earlier would
// decide on another route's rules, and none does. A body that is not JSON,
// or has no model, sets no header: such a request matches only rules
// without a model condition (TransformFilter::handleCompleteBody returns
// before any header mutation when the body does not parse; the formatter
// of %REQUEST_BODY(model)% yields nothing for a missing key, and
// AppendMutation::evaluateHeaders in source/common/http/header_mutation.cc
// adds no header for an empty value). The transform filter only reads
// requests whose content type contains application/json
// (TransformFilter::decodeHeaders).
//
// Bedrock and Gemini carry the model in the path (/model/{modelId}/converse,
// /v1beta/models/{model}:generateContent): on rules whose clients speak
// one of them (their primary backend does), model conditions and guard
// rails match the path too (pathModels).
const (
	// ModelHeader carries the body's model, for route matching and for the
	// backends' hops (model maps). Hop routes remove it; a direct backend
	// behind a fail-over aggregate may see it (it only repeats the body's
	// model).
	ModelHeader = "x-tollgate-model"
	// PromptHeader carries the JSON text of the prompt fields, for the
	// guard rails' prompt patterns. Every route removes it.
	PromptHeader = "x-tollgate-prompt"

	filterBodySanitize = "tollgate.body.sanitize"
	filterBodyLimit    = "tollgate.body.limit"
	filterBodyRoute    = "tollgate.body.route"
	filterClamp        = "tollgate.guardrails.clamp"
	filterModelMap     = "tollgate.model_map"
	typeTransform      = "envoy.filters.http.transform"
	typeBuffer         = "envoy.filters.http.buffer"
)

// outputField is a body field in which a request asks for a number of
// output tokens, and the header the body filter copies it to.
type outputField struct {
	path   string // %REQUEST_BODY(...)% key: nested keys separated by ':'
	header string
	// clampable: a top-level field, which a MERGE body transformation
	// can replace without dropping its siblings (a nested object would
	// be replaced whole by Struct::MergeFrom).
	clampable bool
	// schemas are the client schemas whose requests use the field.
	schemas []string
}

var outputFields = []outputField{
	{"max_tokens", "x-tollgate-max-tokens", true, []string{model.SchemaOpenAI, model.SchemaAnthropic, model.SchemaBedrockConverse}}, // OpenAI chat, Anthropic, Bedrock InvokeModel with an Anthropic body
	{"max_completion_tokens", "x-tollgate-max-completion-tokens", true, []string{model.SchemaOpenAI}},                               // OpenAI chat
	{"max_output_tokens", "x-tollgate-max-output-tokens", true, []string{model.SchemaOpenAI}},                                       // OpenAI responses
	{"generationConfig:maxOutputTokens", "x-tollgate-max-output-gemini", false, []string{model.SchemaGemini}},                       // Gemini
	{"inferenceConfig:maxTokens", "x-tollgate-max-output-bedrock", false, []string{model.SchemaBedrockConverse}},                    // Bedrock Converse
}

func (f outputField) usedBy(schema string) bool { return slices.Contains(f.schemas, schema) }

// promptFields are the body fields that carry a prompt: OpenAI chat
// (messages), Anthropic (messages, system), OpenAI responses (input,
// instructions), Gemini (contents, systemInstruction), completions
// (prompt).
var promptFields = []string{"messages", "system", "input", "instructions", "contents", "systemInstruction", "prompt"}

// bodyHeaders are every header the body filters may set; a workload's own
// are removed first.
func bodyHeaders() []string {
	hs := []string{ModelHeader, PromptHeader}
	for _, f := range outputFields {
		hs = append(hs, f.header)
	}
	return append(hs, ClientSchemaHeader)
}

// bodyNeeds is what a listener's routes need read from request bodies.
type bodyNeeds struct {
	model, prompt, output bool
	// clamp: a route clamps requested output tokens (clampFilter).
	clamp bool
	// limit is the listener's body size limit (the gateway's
	// maxRequestBodySize, else the largest retry buffer of its routes).
	limit uint64
}

func (n bodyNeeds) reads() bool { return n.model || n.prompt || n.output }

func bodyNeedsOf(g *model.GatewayConfig, l *model.ListenerConfig) bodyNeeds {
	var n bodyNeeds
	gateBody := false
	if gr := g.GuardRails; gr != nil && gr.MaxRequestBody != nil {
		n.limit, gateBody = *gr.MaxRequestBody, true
	}
	routeBody := false
	for _, r := range l.Routes {
		// A Parent-mode gateway enforces no guard rails: its parent does.
		if gr := model.EffectiveGuardRails(g, r); gr != nil && g.Parent == nil {
			n.model = n.model || len(gr.AllowModels) > 0 || len(gr.DenyModels) > 0
			n.prompt = n.prompt || len(gr.DenyPrompts) > 0
			n.output = n.output || gr.MaxOutputTokens != nil
			n.clamp = n.clamp || gr.MaxOutputTokens != nil && gr.MaxOutputTokens.Action == model.CapClamp
			routeBody = routeBody || gr.MaxRequestBody != nil
		}
		for _, rule := range r.Rules {
			for _, m := range rule.Matches {
				n.model = n.model || m.Model != nil
			}
			for _, t := range Targets(g, rule) {
				for _, b := range t.Members {
					n.model = n.model || len(b.ModelMap) > 0
				}
			}
		}
		if !gateBody {
			if lim := *EffectiveRetry(g, r).BufferLimit; lim > n.limit {
				n.limit = lim
			}
		}
	}
	if !n.reads() && !gateBody && !routeBody {
		return bodyNeeds{}
	}
	if n.limit == 0 {
		n.limit = *EffectiveRetry(g, nil).BufferLimit
	}
	return n
}

// bodyRouteFilters are the first filters of the pipeline (see the comment
// at the top of this file). Nil when no route reads the body or limits
// its size.
func bodyRouteFilters(n bodyNeeds) []*hcmv3.HttpFilter {
	if n.limit == 0 {
		return nil
	}
	sanitize := &headermutationv3.HeaderMutation{Mutations: &headermutationv3.Mutations{}}
	for _, h := range bodyHeaders() {
		sanitize.Mutations.RequestMutations = append(sanitize.Mutations.RequestMutations, &mutationrulesv3.HeaderMutation{Action: &mutationrulesv3.HeaderMutation_Remove{Remove: h}})
	}
	out := []*hcmv3.HttpFilter{
		{Name: filterBodySanitize, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(sanitize)}},
		// The buffer filter raises the stream's buffer limit to
		// max_request_bytes and answers 413 above it
		// (BufferFilter::decodeHeaders / decodeData in
		// source/extensions/filters/http/buffer/buffer_filter.cc).
		{Name: filterBodyLimit, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&bufferv3.Buffer{MaxRequestBytes: wrapperspb.UInt32(clampU32(n.limit))})}},
	}
	if !n.reads() {
		return out
	}
	var muts []*mutationrulesv3.HeaderMutation
	appendHeader := func(name, value string, action corev3.HeaderValueOption_HeaderAppendAction) {
		muts = append(muts, &mutationrulesv3.HeaderMutation{Action: &mutationrulesv3.HeaderMutation_Append{Append: &corev3.HeaderValueOption{
			Header: &corev3.HeaderValue{Key: name, Value: value}, AppendAction: action,
		}}})
	}
	if n.model {
		appendHeader(ModelHeader, "%REQUEST_BODY(model)%", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD)
	}
	if n.prompt {
		// One value per field that is present, each its JSON text
		// (BodyFormatterProvider::format serializes a non-string value
		// with Json::Utility::appendValueToString); a header matcher sees
		// the values joined with ','.
		for _, f := range promptFields {
			appendHeader(PromptHeader, "%REQUEST_BODY("+f+")%", corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD)
		}
	}
	if n.output {
		for _, f := range outputFields {
			appendHeader(f.header, "%REQUEST_BODY("+f.path+")%", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD)
		}
	}
	tr := &transformv3.TransformConfig{
		RequestTransformation: &transformv3.Transformation{HeadersMutations: muts},
		ClearRouteCache:       true,
	}
	return append(out, &hcmv3.HttpFilter{Name: filterBodyRoute, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(tr)}})
}

// clampFilter rewrites the output-token field of requests over a Clamp
// cap; it does nothing (an empty transform) except on the routes that
// carry its per-route configuration (TransformFilter::maybeInitializeRouteConfigs).
func clampFilter(n bodyNeeds) []*hcmv3.HttpFilter {
	if !n.clamp {
		return nil
	}
	return []*hcmv3.HttpFilter{{Name: filterClamp, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&transformv3.TransformConfig{})}}}
}

func clampU32(v uint64) uint32 {
	if v > math.MaxUint32 {
		return math.MaxUint32
	}
	return uint32(v)
}

// ---- model conditions -----------------------------------------------------

// modelHeaderMatcher matches ModelHeader against model conditions (any of
// them).
func modelHeaderMatcher(ms ...model.ModelMatch) *routev3.HeaderMatcher {
	sm := &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: regex(modelAlternation(ms))}}
	if len(ms) == 1 && (ms[0].Type == "" || ms[0].Type == model.MatchExact) {
		sm = exact(ms[0].Value)
	}
	return &routev3.HeaderMatcher{Name: ModelHeader, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: sm}}
}

func modelAlternation(ms []model.ModelMatch) string {
	parts := make([]string, len(ms))
	for i, m := range ms {
		parts[i] = m.ModelRegex()
	}
	return "(?:" + strings.Join(parts, "|") + ")"
}

// pathModel says where a schema's requests name their model in the path:
// Bedrock runtime /model/{modelId}/{action}; Gemini (the Gemini API and
// Vertex AI) .../models/{model}:{action}.
type pathModel struct {
	before, after string // regexes around the model segment
	segment       string // a model segment of any model
	// escapes are the percent-escapes a model segment may carry (SDKs
	// escape ':' in Bedrock ids, and '/' in ARNs).
	escapes map[rune]string
	// odd matches a model segment with any other percent-escape.
	odd string
	// prefixes are path prefixes a rule's own PathPrefix may have and
	// still match such paths ("" is any).
	prefixes []string
}

var pathModels = map[string]pathModel{
	model.SchemaBedrockConverse: {
		before: "/model/", after: "/(?:converse|converse-stream|invoke|invoke-with-response-stream)",
		segment: "[^/]+", escapes: map[rune]string{':': "(?::|%3[Aa])"},
		odd:      "[^/]*%(?:[014-9A-Fa-f][0-9A-Fa-f]|2[0-9A-Ea-e]|3[0-9B-Fb-f])[^/]*",
		prefixes: []string{"", "/model"},
	},
	model.SchemaGemini: {
		before: "/(?:[^?]*/)?models/", after: ":(?:generateContent|streamGenerateContent|countTokens)",
		segment: "[^/:]+", odd: "[^/:]*%[^/:]*", prefixes: nil, // any prefix: /v1beta, /v1/projects/...
	},
}

// pathModelOf is the path model of a rule's clients' schema, if their
// requests name the model in the path.
func pathModelOf(schema string) (pathModel, bool) {
	pm, ok := pathModels[schema]
	return pm, ok
}

// regex matches a path whose model matches the conditions (the whole path;
// pathMatcher adds the query).
func (pm pathModel) regex(ms []model.ModelMatch) string {
	parts := make([]string, len(ms))
	for i, m := range ms {
		switch m.Type {
		case model.MatchRegularExpression:
			parts[i] = "(?:" + m.Value + ")" // the README tells to write ':' as (:|%3A) for Bedrock
		default:
			re := regexp.QuoteMeta(m.Value)
			for r, alt := range pm.escapes {
				re = strings.ReplaceAll(re, string(r), alt)
			}
			if m.Type == model.MatchPrefix {
				re += pm.segment[:len(pm.segment)-1] + "*" // the rest of the segment
			}
			parts[i] = re
		}
	}
	return pm.before + "(?:" + strings.Join(parts, "|") + ")" + pm.after
}

// any matches a path that names any model.
func (pm pathModel) any() string { return pm.before + pm.segment + pm.after }

// oddEscape matches a path whose model segment carries a percent-escape
// other than those SDKs use: an id written that way could pass a model
// condition it should not (the provider decodes it), so guard rails
// refuse it.
func (pm pathModel) oddEscape() string { return pm.before + pm.odd + pm.after }

// compatible reports whether a match's own path condition leaves room
// for such paths, so that its model condition can also be matched there.
func (pm pathModel) compatible(m model.RouteMatch) bool {
	p := m.Path
	if p == nil {
		return true
	}
	if p.Type != "" && p.Type != model.MatchPathPrefix {
		return false
	}
	if pm.prefixes == nil {
		return true
	}
	v := strings.TrimSuffix(p.Value, "/")
	for _, ok := range pm.prefixes {
		if v == ok {
			return true
		}
	}
	return false
}

// ---- output caps ----------------------------------------------------------

// overCap matches an output-token header whose value is above limit (a
// header that is not an integer never matches: HeaderUtility's range
// match parses the value as int64).
func overCap(f outputField, limit uint64) *routev3.HeaderMatcher {
	return &routev3.HeaderMatcher{Name: f.header, HeaderMatchSpecifier: &routev3.HeaderMatcher_RangeMatch{RangeMatch: &typev3.Int64Range{
		Start: int64(limit) + 1, End: math.MaxInt64,
	}}}
}

// clampConfig is the per-route configuration of filterClamp for field f.
func clampConfig(f outputField, limit uint64) *transformv3.TransformConfig {
	body, err := structpb.NewStruct(map[string]any{f.path: float64(limit)})
	if err != nil {
		panic(err) // a number
	}
	return &transformv3.TransformConfig{RequestTransformation: &transformv3.Transformation{
		BodyTransformation: &transformv3.BodyTransformation{
			BodyFormat: &corev3.SubstitutionFormatString{Format: &corev3.SubstitutionFormatString_JsonFormat{JsonFormat: body}},
			Action:     transformv3.BodyTransformation_MERGE,
		},
		HeadersMutations: []*mutationrulesv3.HeaderMutation{{Action: &mutationrulesv3.HeaderMutation_Append{Append: &corev3.HeaderValueOption{
			Header: &corev3.HeaderValue{Key: f.header, Value: strconv.FormatUint(limit, 10)}, AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		}}}},
	}}
}

// ---- refusals -------------------------------------------------------------

// guardRefusal is a guard rail's answer, in the error shape of the
// clients of the rule (schema).
func guardRefusal(schema string, status uint32, errType, message string) *routev3.DirectResponseAction {
	var body map[string]any
	switch schema {
	case model.SchemaAnthropic:
		body = map[string]any{"type": "error", "error": map[string]any{"type": anthropicErrorType(status), "message": message}}
	case model.SchemaGemini:
		body = map[string]any{"error": map[string]any{"code": status, "message": message, "status": googleStatus(status)}}
	case model.SchemaBedrockConverse:
		body = map[string]any{"message": message}
	default:
		body = map[string]any{"error": map[string]any{"type": errType, "code": errType, "message": message, "param": nil}}
	}
	return &routev3.DirectResponseAction{
		Status: status,
		Body:   &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: jsonText(body) + "\n"}},
	}
}

func anthropicErrorType(status uint32) string {
	switch status {
	case 403:
		return "permission_error"
	case 413:
		return "request_too_large"
	}
	return "invalid_request_error"
}

func googleStatus(status uint32) string {
	if status == 403 {
		return "PERMISSION_DENIED"
	}
	return "INVALID_ARGUMENT"
}

// BodyTooLargeBody answers a request whose body is above the limit (the
// buffer filter's 413, rewritten by a local reply mapper).
var BodyTooLargeBody = map[string]any{
	"type": "error",
	"error": map[string]any{
		"type":    "request_too_large",
		"code":    "request_too_large",
		"message": "the request body is larger than this gateway route admits (GuardRailsPolicy maxRequestBodySize)",
	},
}

// guardEntries are the routes placed right before a route (base, complete
// with its access control): each matches what base matches plus a guard
// rail condition, and answers the refusal, or (Clamp) forwards like base
// with the output field rewritten. Placed right before base, each one sees
// exactly the requests base would see, and keeps base's access control
// (ExternalAuth decides before the guard rails). Refusals take no rate
// limit and run no payload processor: those are per-route, and a refusal
// route has neither.
//
// In order: prompt patterns; denied models; output caps that refuse; the
// allow list; output caps that clamp. Model conditions look at the body's
// model (ModelHeader) and, where base can match a Bedrock runtime path,
// at the model id in the path (a :path header matcher, which keeps base's
// own path condition). pathVariant is set for the Bedrock-path twin of a
// rule with a model condition (see RouteConfiguration), whose requests
// carry their model in the path only.
func guardEntries(cache *guardCache, g *model.GatewayConfig, r *model.RouteConfig, rule *model.RuleConfig, m model.RouteMatch, base *routev3.Route, pathVariant bool) []*routev3.Route {
	gr := model.EffectiveGuardRails(g, r)
	if gr == nil || base.GetRoute() == nil {
		return nil
	}
	schema := ruleSchema(rule)
	bodyModel := !pathVariant
	pm, inPath := pathModelOf(schema)
	pathModel := inPath && pm.compatible(m) && (m.Model == nil || pathVariant)
	var out []*routev3.Route
	entry := func(suffix string, extra ...*routev3.HeaderMatcher) *routev3.Route {
		e := proto.Clone(base).(*routev3.Route)
		e.Name = base.Name + "/" + suffix
		e.Match.Headers = append(e.Match.Headers, extra...)
		return e
	}
	// A refusal is built afresh rather than cloned from base: only its
	// match and its access control come from base (the per-filter
	// configurations are shared, output is never modified).
	var keep map[string]*anypb.Any
	for name, cfg := range base.TypedPerFilterConfig {
		if accessFilterName(name) || name == filterBodyLimit {
			if keep == nil {
				keep = map[string]*anypb.Any{}
			}
			keep[name] = cfg
		}
	}
	refuse := func(suffix string, status uint32, errType, msg string, extra ...*routev3.HeaderMatcher) {
		m := proto.Clone(base.Match).(*routev3.RouteMatch)
		m.Headers = append(m.Headers, extra...)
		dr := cache.refusal(schema, status, errType, msg)
		out = append(out, &routev3.Route{
			Name:                 base.Name + "/" + suffix,
			Match:                m,
			Action:               &routev3.Route_DirectResponse{DirectResponse: dr},
			TypedPerFilterConfig: keep,
		})
	}
	policy := func(field string) string {
		if p, ok := gr.Sources[field]; ok {
			return p.String()
		}
		return gr.Policy.String()
	}
	for i, p := range gr.DenyPrompts {
		refuse(fmt.Sprintf("deny-prompt/%d", i), 403, "prompt_not_allowed", fmt.Sprintf("the prompt matches a pattern the gateway refuses (%s)", policy("prompts.deny")),
			&routev3.HeaderMatcher{Name: PromptHeader, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: cache.prompt(p)}})
	}
	models := len(gr.DenyModels) > 0 || len(gr.AllowModels) > 0
	if pathModel && models {
		refuse("model-escape", 400, "invalid_model", "the model id in the path carries a percent-escape other than %3A or %2F; send it unescaped",
			pathMatcher(pm.oddEscape(), false))
	}
	if len(gr.DenyModels) > 0 {
		msg := fmt.Sprintf("this model is not allowed through the gateway (%s)", policy("models.deny"))
		if bodyModel {
			refuse("deny-model", 403, "model_not_allowed", msg, modelHeaderMatcher(gr.DenyModels...))
		}
		if pathModel {
			refuse("deny-model-path", 403, "model_not_allowed", msg, pathMatcher(pm.regex(gr.DenyModels), false))
		}
	}
	c := gr.MaxOutputTokens
	if c != nil {
		for _, f := range outputFields {
			if !f.usedBy(schema) || c.Action == model.CapClamp && f.clampable {
				continue
			}
			refuse("cap-"+strings.TrimPrefix(f.header, "x-tollgate-"), 400, "max_tokens_too_large",
				fmt.Sprintf("the request asks for more than %d output tokens in %s, the most the gateway allows (%s)", c.Limit, strings.ReplaceAll(f.path, ":", "."), policy("maxOutputTokens")),
				overCap(f, c.Limit))
		}
	}
	if len(gr.AllowModels) > 0 {
		msg := fmt.Sprintf("this model is not among the models the gateway allows (%s)", policy("models.allow"))
		if pathModel {
			// A Bedrock path whose model is not allowed (RE2 has no
			// negative lookahead; the inverted :path matcher is the "not").
			refuse("not-allowed-model-path", 403, "model_not_allowed", msg,
				pathMatcher(pm.any(), false), pathMatcher(pm.regex(gr.AllowModels), true))
		}
		if bodyModel {
			absent := []*routev3.HeaderMatcher{{Name: ModelHeader, HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: false}}}
			if pathModel {
				absent = append(absent, pathMatcher(pm.any(), true)) // judged by its path above
			}
			refuse("no-model", 403, "model_not_allowed",
				fmt.Sprintf("the request names no model (or its body is not JSON), and the gateway allows only listed models (%s)", policy("models.allow")),
				absent...)
			notAllowed := modelHeaderMatcher(gr.AllowModels...)
			notAllowed.InvertMatch = true
			refuse("not-allowed-model", 403, "model_not_allowed", msg, notAllowed)
		}
	}
	if c != nil && c.Action == model.CapClamp {
		for _, f := range outputFields {
			if !f.usedBy(schema) || !f.clampable {
				continue
			}
			e := entry("clamp-"+strings.TrimPrefix(f.header, "x-tollgate-"), overCap(f, c.Limit))
			if e.TypedPerFilterConfig == nil {
				e.TypedPerFilterConfig = map[string]*anypb.Any{}
			}
			e.TypedPerFilterConfig[filterClamp] = mustAny(clampConfig(f, c.Limit))
			out = append(out, e)
		}
	}
	return out
}

// pathMatcher matches the :path header (path and query) with a path
// regex; invert for "does not match".
func pathMatcher(pathRegex string, invert bool) *routev3.HeaderMatcher {
	return &routev3.HeaderMatcher{
		Name:                 ":path",
		HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: stringRegex(pathRegex + `(?:\?.*)?`)},
		InvertMatch:          invert,
	}
}

// guardCache shares, within one route configuration, what every route's
// guard rails repeat: refusal bodies and prompt matchers (the output is
// never modified after translation, so routes may share messages).
type guardCache struct {
	refusals map[string]*routev3.DirectResponseAction
	prompts  map[string]*matcherv3.StringMatcher
}

func newGuardCache() *guardCache {
	return &guardCache{refusals: map[string]*routev3.DirectResponseAction{}, prompts: map[string]*matcherv3.StringMatcher{}}
}

func (c *guardCache) refusal(schema string, status uint32, errType, msg string) *routev3.DirectResponseAction {
	key := fmt.Sprintf("%s\x00%d\x00%s\x00%s", schema, status, errType, msg)
	if dr, ok := c.refusals[key]; ok {
		return dr
	}
	dr := guardRefusal(schema, status, errType, msg)
	c.refusals[key] = dr
	return dr
}

func (c *guardCache) prompt(p string) *matcherv3.StringMatcher {
	if m, ok := c.prompts[p]; ok {
		return m
	}
	m := promptMatcher(p)
	c.prompts[p] = m
	return m
}

// promptMatcher finds a deny pattern anywhere in the prompt header: a
// plain string with a contains matcher (ignore_case for (?i)), anything
// else with model.PromptRegex, whose program size validation checked.
func promptMatcher(p string) *matcherv3.StringMatcher {
	if lit, fold, ok := model.PromptLiteral(p); ok {
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Contains{Contains: lit}, IgnoreCase: fold}
	}
	return stringRegex(model.PromptRegex(p))
}

func stringRegex(re string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: regex(re)}}
}

// jsonText renders a constant body (sorted keys, no HTML escaping).
func jsonText(v any) string {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(err) // a constant
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// accessFilterName reports whether a per-filter configuration belongs to
// access control (RBAC, an ExternalAuth service), which a guard rail's
// refusal keeps.
func accessFilterName(name string) bool {
	return name == filterRBAC || strings.HasPrefix(name, filterExtAuthz+"/")
}

// ruleSchema is the API schema a rule's clients speak: that of its
// primary backends (model.RuleConfig.ClientSchema), also when a region
// policy leaves them unserved; openai when the rule has none.
func ruleSchema(rule *model.RuleConfig) string {
	if s, ok := rule.ClientSchema(); ok {
		return s
	}
	return model.SchemaOpenAI
}

// ---- model maps -----------------------------------------------------------

// needsBodyHop reports whether a backend rewrites requests per attempt
// (model names, schema): it is then always reached through its hop, also
// when it is a rule's only backend.
func needsBodyHop(b *model.BackendConfig) bool {
	return len(b.ModelMap) > 0 || len(b.ClientSchemas) > 0
}

// modelMapFilter renames the model of requests on a backend's hop: a
// composite filter whose matcher looks ModelHeader up in the backend's
// map and runs, for a listed model, a transform filter that merges
// {"model": <to>} into the body (Struct::MergeFrom replaces the one
// field). The hop is a downstream connection manager, so the composite
// action builds the transform filter from its factory context
// (ExecuteFilterActionFactory::createActionFactoryCb in
// source/extensions/filters/http/composite/action.cc), and the matcher
// sees the request headers before the body arrives. Nil for a backend
// without a map, and for Bedrock, whose model is in the path
// (modelMapRoutes).
func modelMapFilter(b *model.BackendConfig) (*hcmv3.HttpFilter, error) {
	if len(b.ModelMap) == 0 || b.Schema == model.SchemaBedrockConverse {
		return nil, nil // Bedrock bodies carry no model (Gemini's do once translated from another schema)
	}
	tree := &xdsmatcherv3.Matcher_MatcherTree_MatchMap{Map: map[string]*xdsmatcherv3.Matcher_OnMatch{}}
	for _, mm := range b.ModelMap {
		body, err := structpb.NewStruct(map[string]any{"model": mm.To})
		if err != nil {
			return nil, err
		}
		tr := &transformv3.TransformConfig{RequestTransformation: &transformv3.Transformation{BodyTransformation: &transformv3.BodyTransformation{
			BodyFormat: &corev3.SubstitutionFormatString{Format: &corev3.SubstitutionFormatString_JsonFormat{JsonFormat: body}},
			Action:     transformv3.BodyTransformation_MERGE,
		}}}
		action, err := toAny(&compositev3.ExecuteFilterAction{TypedConfig: &corev3.TypedExtensionConfig{Name: typeTransform, TypedConfig: mustAny(tr)}})
		if err != nil {
			return nil, err
		}
		tree.Map[mm.From] = &xdsmatcherv3.Matcher_OnMatch{OnMatch: &xdsmatcherv3.Matcher_OnMatch_Action{Action: &xdscorev3.TypedExtensionConfig{
			Name: "rename-" + mm.From, TypedConfig: action,
		}}}
	}
	input, err := toAny(&matcherv3.HttpRequestHeaderMatchInput{HeaderName: ModelHeader})
	if err != nil {
		return nil, err
	}
	cfg, err := toAny(&matchingv3.ExtensionWithMatcher{
		ExtensionConfig: &corev3.TypedExtensionConfig{Name: "envoy.filters.http.composite", TypedConfig: mustAny(&compositev3.Composite{})},
		XdsMatcher: &xdsmatcherv3.Matcher{MatcherType: &xdsmatcherv3.Matcher_MatcherTree_{MatcherTree: &xdsmatcherv3.Matcher_MatcherTree{
			Input:    &xdscorev3.TypedExtensionConfig{Name: "model", TypedConfig: input},
			TreeType: &xdsmatcherv3.Matcher_MatcherTree_ExactMatchMap{ExactMatchMap: tree},
		}}},
	})
	if err != nil {
		return nil, err
	}
	return &hcmv3.HttpFilter{Name: filterModelMap, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: cfg}}, nil
}

// modelMapRoutes rename the model of a backend's requests in the path, for
// the schemas that carry it there: Bedrock /model/<from>/<action> →
// /model/<to>/<action>, Gemini .../models/<from>:<action> →
// .../models/<to>:<action>; one hop route per mapping, each like the hop's
// default route (def) otherwise.
func modelMapRoutes(b *model.BackendConfig, def *routev3.Route) []*routev3.Route {
	pm, ok := pathModelOf(b.Schema)
	if !ok {
		return nil
	}
	var out []*routev3.Route
	for i, mm := range b.ModelMap {
		r := proto.Clone(def).(*routev3.Route)
		r.Name = fmt.Sprintf("%s/model-map/%d", def.Name, i)
		r.Match = &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: regex(pm.regex([]model.ModelMatch{{Value: mm.From}}))}}
		// The segment ends at the path's next '/' (Bedrock) or ':' (Gemini).
		r.GetRoute().RegexRewrite = &matcherv3.RegexMatchAndSubstitute{
			Pattern:      regex("^(" + pm.before + ")" + pm.segment),
			Substitution: `\1` + mm.To,
		}
		out = append(out, r)
	}
	return out
}

// withoutHeader drops the matchers of one header.
func withoutHeader(hs []*routev3.HeaderMatcher, name string) []*routev3.HeaderMatcher {
	out := hs[:0:0]
	for _, h := range hs {
		if h.Name != name {
			out = append(out, h)
		}
	}
	return out
}

// routeOnlyHeaders are the body headers a forwarding route removes before
// the request leaves it: all of them, except ModelHeader (and the client
// schema) when a backend's hop reads it further on.
func routeOnlyHeaders(g *model.GatewayConfig, rule *model.RuleConfig) []string {
	hops := false
	for _, t := range Targets(g, rule) {
		for _, b := range t.Members {
			hops = hops || needsBodyHop(b)
		}
	}
	var out []string
	for _, h := range bodyHeaders() {
		if hops && (h == ModelHeader || h == ClientSchemaHeader) {
			continue
		}
		out = append(out, h)
	}
	return out
}

// applyBodyLimit gives a route with its own maxRequestBodySize its limit
// (BufferPerRoute). It is the route Envoy matched before it read the body,
// so a limit on a rule that only a model condition selects applies from
// the route the request matches without its model.
func applyBodyLimit(route *routev3.Route, g *model.GatewayConfig, r *model.RouteConfig) {
	if r.GuardRails == nil || r.GuardRails.MaxRequestBody == nil {
		return
	}
	if route.TypedPerFilterConfig == nil {
		route.TypedPerFilterConfig = map[string]*anypb.Any{}
	}
	route.TypedPerFilterConfig[filterBodyLimit] = mustAny(&bufferv3.BufferPerRoute{Override: &bufferv3.BufferPerRoute_Buffer{Buffer: &bufferv3.Buffer{
		MaxRequestBytes: wrapperspb.UInt32(clampU32(*r.GuardRails.MaxRequestBody)),
	}}})
}

// bodyTooLargeMapper gives the 413 of a body above the limit a JSON body.
// Local reply mappers see only Envoy's own replies (a provider's 413
// passes as it is); the buffer filter's and the stream buffer's overflow
// both answer 413 with details request_payload_too_large.
func bodyTooLargeMapper() *hcmv3.ResponseMapper {
	body, err := structpb.NewStruct(BodyTooLargeBody)
	if err != nil {
		panic(err) // a constant
	}
	return &hcmv3.ResponseMapper{
		Filter: &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_StatusCodeFilter{StatusCodeFilter: &accesslogv3.StatusCodeFilter{
			Comparison: &accesslogv3.ComparisonFilter{Op: accesslogv3.ComparisonFilter_EQ, Value: &corev3.RuntimeUInt32{DefaultValue: 413, RuntimeKey: "tollgate.body_too_large"}},
		}}},
		BodyFormatOverride: &corev3.SubstitutionFormatString{Format: &corev3.SubstitutionFormatString_JsonFormat{JsonFormat: body}},
	}
}
