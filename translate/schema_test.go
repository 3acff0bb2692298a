package translate

// Tests of tollgate's own schema tables (paths, pairs, LLMProtocols, model
// and usage locations) against recorded provider samples in
// testdata/providers. Envoy's translation itself is Envoy's.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	aipmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ai_protocol_manager/v3"
	transcoderv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/http/ai_filters/transcoder/v3"
	aiv3 "github.com/envoyproxy/go-control-plane/envoy/type/ai/v3"
	"github.com/stretchr/testify/require"

	"github.com/tollgate-dev/tollgate/model"
)

type providerRequest struct {
	Path string         `json:"path"`
	Body map[string]any `json:"body"`
}

// requestFixtures are the request samples by schema.
var requestFixtures = map[string][]string{
	model.SchemaOpenAI:          {"openai-chat.request.json"},
	model.SchemaAnthropic:       {"anthropic-messages.request.json"},
	model.SchemaBedrockConverse: {"bedrock-converse.request.json"},
	model.SchemaGemini:          {"gemini-generate-content.request.json", "gemini-stream-generate-content.request.json"},
}

func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "providers", name))
	require.NoError(t, err)
	return b
}

func readRequest(t *testing.T, name string) providerRequest {
	var r providerRequest
	require.NoError(t, json.Unmarshal(readFixture(t, name), &r), name)
	require.NotEmpty(t, r.Path, name)
	return r
}

// routePathMatches evaluates a route match's path condition the way Envoy
// does: on the path without its query.
func routePathMatches(m *routev3.RouteMatch, path string) bool {
	p, _, _ := strings.Cut(path, "?")
	switch s := m.GetPathSpecifier().(type) {
	case *routev3.RouteMatch_Path:
		return p == s.Path
	case *routev3.RouteMatch_Prefix:
		return strings.HasPrefix(p, s.Prefix)
	case *routev3.RouteMatch_SafeRegex:
		return regexp.MustCompile(s.SafeRegex.GetRegex()).MatchString(p)
	}
	return false
}

func TestSchemaPairs(t *testing.T) {
	// Envoy's transcoder registers packs for these three only
	// (TranscodingEngine::createDefault); Bedrock Converse is no LLMProtocol.
	want := map[string]bool{
		"openai>anthropic": true, "anthropic>openai": true,
		"openai>gemini": true, "gemini>openai": true,
		"anthropic>gemini": true, "gemini>anthropic": true,
	}
	for _, c := range model.Schemas {
		for _, b := range model.Schemas {
			if c == b {
				require.True(t, model.SchemasTranslatable(c, b))
				continue
			}
			require.Equal(t, want[c+">"+b], model.SchemasTranslatable(c, b), "%s clients, %s backend", c, b)
		}
		_, hasProtocol := schemaProtocols[c]
		_, hasEndpoint := schemaEndpoints[c]
		require.Equal(t, c != model.SchemaBedrockConverse, hasProtocol, c)
		require.Equal(t, hasProtocol, hasEndpoint, c)
	}
	require.Equal(t, map[string]aiv3.LLMProtocol{
		model.SchemaOpenAI:    aiv3.LLMProtocol_OPENAI_CHAT_COMPLETIONS,
		model.SchemaAnthropic: aiv3.LLMProtocol_ANTHROPIC_MESSAGES,
		model.SchemaGemini:    aiv3.LLMProtocol_GEMINI_GENERATE_CONTENT,
	}, schemaProtocols)
}

// Every request sample is matched by the hop route for its schema, and by
// no other schema's.
func TestSchemaFixturePaths(t *testing.T) {
	for schema, files := range requestFixtures {
		for _, f := range files {
			r := readRequest(t, f)
			for other, e := range schemaEndpoints {
				require.Equal(t, other == schema, routePathMatches(e.routeMatch(), r.Path), "%s (%s) against the %s route", f, r.Path, other)
			}
		}
	}
}

// The model is where tollgate reads it: the body's model field (OpenAI,
// Anthropic), the Bedrock runtime and Gemini paths (pathModels), the Gemini path
// segment Envoy's transcoder lifts into the body (geminiPathRegex).
func TestSchemaFixtureModels(t *testing.T) {
	models := map[string]string{
		"openai-chat.request.json":                    "gpt-4o",
		"anthropic-messages.request.json":             "claude-sonnet-4-5",
		"bedrock-converse.request.json":               "anthropic.claude-3-5-sonnet-20240620-v1:0",
		"gemini-generate-content.request.json":        "gemini-2.5-flash",
		"gemini-stream-generate-content.request.json": "gemini-2.5-flash",
	}
	for schema, files := range requestFixtures {
		for _, f := range files {
			r := readRequest(t, f)
			want := models[f]
			path, _, _ := strings.Cut(r.Path, "?")
			switch schema {
			case model.SchemaOpenAI, model.SchemaAnthropic:
				require.Len(t, requestModelFields, 1)
				got, ok := walk(r.Body, requestModelFields[0])
				require.True(t, ok, f)
				require.Equal(t, want, got, f)
			case model.SchemaBedrockConverse, model.SchemaGemini:
				// tollgate's own path model (body.go) finds it, and only it.
				pm, ok := pathModelOf(schema)
				require.True(t, ok, schema)
				re := regexp.MustCompile("^" + pm.regex([]model.ModelMatch{{Value: want}}) + "$")
				require.True(t, re.MatchString(path), "%s: %s", f, path)
				other := regexp.MustCompile("^" + pm.regex([]model.ModelMatch{{Value: want + "-other"}}) + "$")
				require.False(t, other.MatchString(path), "%s: %s", f, path)
				require.True(t, regexp.MustCompile("^"+pm.any()+"$").MatchString(path), f)
				_, inBody := r.Body["model"]
				require.False(t, inBody, f)
				if schema == model.SchemaGemini {
					// The segment Envoy's transcoder lifts into the body.
					m := regexp.MustCompile(geminiPathRegex).FindStringSubmatch(path)
					require.NotNil(t, m, f)
					require.Equal(t, want, m[1], f)
				}
			}
		}
	}
}

// usageCounts walks doc with every response body rule's selectors
// (ResponseBodyRules, the rules of json_to_metadata and sse_to_metadata)
// and returns the numbers found, by metadata key.
func usageCounts(doc any) map[string]float64 {
	out := map[string]float64{}
	for _, r := range ResponseBodyRules() {
		var sel selector
		for _, s := range r.GetSelectors() {
			sel = append(sel, s.GetKey())
		}
		if v, ok := walk(doc, sel); ok {
			if n, ok := v.(float64); ok {
				out[r.GetOnPresent().GetKey()] = n
			}
		}
	}
	return out
}

func walk(doc any, sel selector) (any, bool) {
	for _, k := range sel {
		m, ok := doc.(map[string]any)
		if !ok {
			return nil, false
		}
		if doc, ok = m[k]; !ok {
			return nil, false
		}
	}
	return doc, doc != nil
}

// sseData are the JSON data: payloads of an SSE sample.
func sseData(t *testing.T, raw []byte) []any {
	var out []any
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "data:")
		if !ok {
			continue
		}
		line = strings.TrimSpace(line)
		if line == "[DONE]" {
			continue
		}
		var v any
		require.NoError(t, json.Unmarshal([]byte(line), &v), line)
		out = append(out, v)
	}
	require.NotEmpty(t, out)
	return out
}

func TestSchemaFixtureUsage(t *testing.T) {
	for _, c := range []struct {
		file          string
		sse           bool
		input, output float64
		// found is false for a shape tollgate's selectors do not read
		// (yet): Bedrock Converse reports usage.inputTokens/outputTokens,
		// and its stream is no SSE.
		found bool
	}{
		{"openai-chat.response.json", false, 24, 2, true},
		{"openai-chat.stream.sse", true, 24, 2, true},
		{"anthropic-messages.response.json", false, 19, 5, true},
		{"anthropic-messages.stream.sse", true, 19, 5, true},
		{"gemini-generate-content.response.json", false, 12, 1, true},
		{"gemini-stream-generate-content.stream.sse", true, 8, 1, true},
		{"bedrock-converse.response.json", false, 19, 5, false},
	} {
		raw := readFixture(t, c.file)
		var docs []any
		if c.sse {
			docs = sseData(t, raw)
		} else {
			var v any
			require.NoError(t, json.Unmarshal(raw, &v), c.file)
			docs = []any{v}
		}
		// Last value wins, as sse_to_metadata and json_to_metadata write
		// each key again on every event that has it.
		got := map[string]float64{}
		for _, d := range docs {
			for k, v := range usageCounts(d) {
				got[k] = v
			}
		}
		if !c.found {
			require.NotContains(t, got, MetaInputTokens, "%s: tollgate now reads this usage; flip found", c.file)
			continue
		}
		require.Equal(t, c.input, got[MetaInputTokens], c.file)
		require.Equal(t, c.output, got[MetaOutputTokens], c.file)
	}
}

func TestHopSchemaRoutes(t *testing.T) {
	anthropic := &model.BackendConfig{
		Ref: model.Ref{Kind: model.KindBackend, Namespace: model.DefaultNamespace, Name: "anthropic"}, Hostname: "api.anthropic.com", Port: 443,
		Schema: model.SchemaAnthropic, ClientSchemas: []string{model.SchemaOpenAI},
	}
	filters, routes, err := hopSchema(anthropic)
	require.NoError(t, err)
	require.Len(t, filters, 1)
	require.Len(t, routes, 2)

	openaiReq := readRequest(t, "openai-chat.request.json")
	tr := routes[0]
	require.True(t, routePathMatches(tr.GetMatch(), openaiReq.Path))
	require.Equal(t, ClientSchemaHeader, tr.GetMatch().GetHeaders()[0].GetName())
	require.Equal(t, "openai", tr.GetMatch().GetHeaders()[0].GetStringMatch().GetExact())
	require.Equal(t, ClusterName(anthropic), tr.GetRoute().GetCluster())
	require.Equal(t, "api.anthropic.com", tr.GetRoute().GetHostRewriteLiteral())
	require.Equal(t, "/v1/messages", tr.GetRoute().GetRegexRewrite().GetSubstitution())
	require.Contains(t, tr.GetRequestHeadersToRemove(), ClientSchemaHeader)
	require.Contains(t, tr.GetRequestHeadersToRemove(), "accept-encoding")
	per := &aipmv3.AiProtocolManagerPerRoute{}
	require.NoError(t, tr.GetTypedPerFilterConfig()[filterSchema].UnmarshalTo(per))
	require.Equal(t, aiv3.LLMProtocol_OPENAI_CHAT_COMPLETIONS, per.GetRequest().GetLlmProtocol())
	require.Equal(t, aiv3.LLMProtocol_ANTHROPIC_MESSAGES, per.GetResponse().GetLlmProtocol())

	refusal := routes[1]
	require.True(t, routePathMatches(refusal.GetMatch(), "/v1/embeddings"))
	require.Equal(t, uint32(503), refusal.GetDirectResponse().GetStatus())
	var marked bool
	for _, h := range refusal.GetResponseHeadersToAdd() {
		marked = marked || h.GetHeader().GetKey() == RefusalHeader
	}
	require.True(t, marked)

	// Only the backend leg: the IR is OpenAI's.
	mgr := &aipmv3.AiProtocolManager{}
	require.NoError(t, filters[0].GetTypedConfig().UnmarshalTo(mgr))
	require.NotNil(t, mgr.GetRequestHandling())
	require.Equal(t, [][2]transcoderv3.Transcoder_Direction{{transcoderv3.Transcoder_FROM_IR, transcoderv3.Transcoder_TO_IR}}, legs(t, mgr.GetFilters()))

	// A Gemini backend for Anthropic and OpenAI clients: both legs, client
	// leg first; Envoy writes the Gemini path, so no rewrite.
	gemini := &model.BackendConfig{
		Ref:    model.Ref{Kind: model.KindBackend, Namespace: model.DefaultNamespace, Name: "gemini"},
		Schema: model.SchemaGemini, ClientSchemas: []string{model.SchemaAnthropic, model.SchemaOpenAI},
	}
	filters, routes, err = hopSchema(gemini)
	require.NoError(t, err)
	require.Len(t, routes, 4)
	require.True(t, routePathMatches(routes[0].GetMatch(), readRequest(t, "anthropic-messages.request.json").Path))
	require.Nil(t, routes[0].GetRoute().GetRegexRewrite())
	require.NoError(t, filters[0].GetTypedConfig().UnmarshalTo(mgr))
	require.Equal(t, [][2]transcoderv3.Transcoder_Direction{
		{transcoderv3.Transcoder_TO_IR, transcoderv3.Transcoder_FROM_IR},
		{transcoderv3.Transcoder_FROM_IR, transcoderv3.Transcoder_TO_IR},
	}, legs(t, mgr.GetFilters()))

	// An untranslatable pair is an error, never a body the backend
	// cannot read.
	_, _, err = hopSchema(&model.BackendConfig{Schema: model.SchemaBedrockConverse, ClientSchemas: []string{model.SchemaOpenAI}})
	require.Error(t, err)
}

func legs(t *testing.T, fs []*corev3.TypedExtensionConfig) [][2]transcoderv3.Transcoder_Direction {
	var out [][2]transcoderv3.Transcoder_Direction
	for _, f := range fs {
		require.Equal(t, typeTranscoder, f.GetName())
		tc := &transcoderv3.Transcoder{}
		require.NoError(t, f.GetTypedConfig().UnmarshalTo(tc))
		out = append(out, [2]transcoderv3.Transcoder_Direction{tc.GetRequestHandling(), tc.GetResponseHandling()})
	}
	return out
}

func TestApplyClientSchema(t *testing.T) {
	openai := &model.BackendConfig{Ref: model.Ref{Kind: model.KindBackend, Namespace: model.DefaultNamespace, Name: "openai"}, Schema: model.SchemaOpenAI}
	anthropic := &model.BackendConfig{Ref: model.Ref{Kind: model.KindBackend, Namespace: model.DefaultNamespace, Name: "anthropic"}, Schema: model.SchemaAnthropic, ClientSchemas: []string{model.SchemaOpenAI}}
	rule := &model.RuleConfig{Backends: []model.WeightedBackend{{Backend: openai, Weight: 1}, {Backend: anthropic, Weight: 1, Priority: 1}}}
	g := &model.GatewayConfig{}
	r := &routev3.Route{}
	applyClientSchema(r, g, rule)
	require.Equal(t, []string{ClientSchemaHeader}, r.GetRequestHeadersToRemove())
	require.Len(t, r.GetRequestHeadersToAdd(), 1)
	require.Equal(t, "openai", r.GetRequestHeadersToAdd()[0].GetHeader().GetValue())
	require.Equal(t, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD, r.GetRequestHeadersToAdd()[0].GetAppendAction())

	same := &routev3.Route{}
	applyClientSchema(same, g, &model.RuleConfig{Backends: []model.WeightedBackend{{Backend: openai, Weight: 1}}})
	require.Empty(t, same.GetRequestHeadersToAdd())
}
