package translate_test

import (
	"encoding/json"
	"os"
	"regexp"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	matchingv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/matching/v3"
	compositev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/composite/v3"
	transformv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/transform/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/translate"
)

// providerSample is a recorded request of testdata/providers.
type providerSample struct {
	Path string         `json:"path"`
	Body map[string]any `json:"body"`
}

func readSample(t *testing.T, name string) providerSample {
	t.Helper()
	data, err := os.ReadFile("testdata/providers/" + name)
	require.NoError(t, err)
	var s providerSample
	require.NoError(t, json.Unmarshal(data, &s))
	return s
}

// hopOf is the connection manager of a backend's hop listener.
func hopOf(t *testing.T, listeners []*listenerv3.Listener, b *model.BackendConfig) *hcmv3.HttpConnectionManager {
	t.Helper()
	for _, l := range listeners {
		if l.GetName() == translate.HopName(b) {
			hcm := &hcmv3.HttpConnectionManager{}
			require.NoError(t, l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(hcm))
			return hcm
		}
	}
	t.Fatalf("no hop for %s", b.Ref)
	return nil
}

// applyModelMap runs a hop's tollgate.model_map filter on a request the
// way Envoy would: the composite's matcher looks the model header up in
// its exact-match map (a model not listed runs nothing), and the action's
// transform MERGEs its JSON body format into the body, replacing the
// top-level keys it names (Struct::MergeFrom on the parsed body in
// TransformFilter::handleCompleteBody).
func applyModelMap(t *testing.T, hcm *hcmv3.HttpConnectionManager, modelHeader string, body map[string]any) (map[string]any, bool) {
	t.Helper()
	for _, f := range hcm.GetHttpFilters() {
		if f.GetName() != "tollgate.model_map" {
			continue
		}
		ewm := &matchingv3.ExtensionWithMatcher{}
		require.NoError(t, f.GetTypedConfig().UnmarshalTo(ewm))
		require.Equal(t, "x-tollgate-model", headerInput(t, ewm))
		onMatch, ok := ewm.GetXdsMatcher().GetMatcherTree().GetExactMatchMap().GetMap()[modelHeader]
		if !ok {
			return body, false
		}
		action := &compositev3.ExecuteFilterAction{}
		require.NoError(t, onMatch.GetAction().GetTypedConfig().UnmarshalTo(action))
		require.Equal(t, "envoy.filters.http.transform", action.GetTypedConfig().GetName())
		tr := &transformv3.TransformConfig{}
		require.NoError(t, action.GetTypedConfig().GetTypedConfig().UnmarshalTo(tr))
		bt := tr.GetRequestTransformation().GetBodyTransformation()
		require.Equal(t, transformv3.BodyTransformation_MERGE, bt.GetAction())
		js, err := protojson.Marshal(bt.GetBodyFormat().GetJsonFormat())
		require.NoError(t, err)
		var patch map[string]any
		require.NoError(t, json.Unmarshal(js, &patch))
		out := map[string]any{}
		for k, v := range body {
			out[k] = v
		}
		for k, v := range patch {
			out[k] = v
		}
		return out, true
	}
	return body, false
}

func headerInput(t *testing.T, ewm *matchingv3.ExtensionWithMatcher) string {
	t.Helper()
	var in struct {
		HeaderName string `json:"headerName"`
	}
	js, err := protojson.Marshal(ewm.GetXdsMatcher().GetMatcherTree().GetInput().GetTypedConfig())
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(js, &in))
	return in.HeaderName
}

// TestModelMapsRenameRecordedRequests applies the model maps tollgate
// generates to recorded provider requests: an OpenAI chat request failing
// over to Azure asks for the Azure deployment, a Bedrock Converse request
// goes to the mapped model id in its path, and nothing else of either
// request changes; a model not in the map passes as it is.
func TestModelMapsRenameRecordedRequests(t *testing.T) {
	cfg, errs := loadCase(t, "testdata/in/model-routing.yaml")
	require.Empty(t, errs)
	out, err := translate.Translate(cfg)
	require.NoError(t, err)
	gw := out.Gateways[0]
	byName := map[string]*model.BackendConfig{}
	for _, b := range cfg.Backends {
		byName[b.Ref.Name] = b
	}

	// OpenAI chat → Azure OpenAI (body model).
	azure := hopOf(t, gw.Listeners, byName["azure"])
	sample := readSample(t, "openai-chat.request.json")
	sample.Body["model"] = "gpt-4o"
	got, renamed := applyModelMap(t, azure, "gpt-4o", sample.Body)
	require.True(t, renamed)
	require.Equal(t, "corp-gpt4o-prod", got["model"])
	delete(got, "model")
	want := map[string]any{}
	for k, v := range sample.Body {
		if k != "model" {
			want[k] = v
		}
	}
	require.Equal(t, want, got, "the rename changes the model only")
	_, renamed = applyModelMap(t, azure, "gpt-4.1", sample.Body)
	require.False(t, renamed, "a model not in the map is sent as the client named it")

	// Bedrock Converse: the model id is in the path.
	bedrock := hopOf(t, gw.Listeners, byName["bedrock"])
	sample = readSample(t, "bedrock-converse.request.json")
	for _, path := range []string{"/model/claude-sonnet-4-5/converse", "/model/claude-sonnet-4-5/converse-stream", "/model/claude-sonnet-4-5/invoke"} {
		require.Equal(t, regexp.MustCompile(`^/model/[^/]*/`).ReplaceAllLiteralString(path, "/model/anthropic.claude-sonnet-4-5-20250929-v1:0/"), rewritePath(bedrock, path), path)
	}
	require.Empty(t, rewritePath(bedrock, "/model/claude-opus-4-1/converse"), "a model not in the map keeps its path")
	// Gemini, both the Gemini API's and Vertex AI's paths.
	gemini := hopOf(t, gw.Listeners, byName["gemini"])
	for path, want := range map[string]string{
		"/v1beta/models/gemini-pro-latest:generateContent":                                             "/v1beta/models/gemini-2.5-pro:generateContent",
		"/v1/projects/p/locations/eu/publishers/google/models/gemini-pro-latest:streamGenerateContent": "/v1/projects/p/locations/eu/publishers/google/models/gemini-2.5-pro:streamGenerateContent",
		"/v1beta/models/gemini-2.5-flash:generateContent":                                              "",
	} {
		require.Equal(t, want, rewritePath(gemini, path), path)
	}
	gs := readSample(t, "gemini-generate-content.request.json")
	require.Regexp(t, `/models/[^/:]+:generateContent$`, gs.Path, "the recorded Gemini request names its model in the path")

	_, renamed = applyModelMap(t, bedrock, "claude-sonnet-4-5", sample.Body)
	require.False(t, renamed, "a Bedrock body carries no model to rename")
	require.Regexp(t, `^/model/[^/]+/converse$`, sample.Path, "the recorded Bedrock request names its model in the path")
}

// rewritePath is the path a hop's first matching route with a path
// rewrite sends, or "" when no such route matches (the default route
// keeps the path). Envoy: RE2::GlobalReplace, whose substitution writes
// \1 for a group (Go's regexp writes ${1}).
func rewritePath(hcm *hcmv3.HttpConnectionManager, path string) string {
	for _, r := range hcm.GetRouteConfig().GetVirtualHosts()[0].GetRoutes() {
		re := r.GetMatch().GetSafeRegex().GetRegex()
		if re == "" || !regexp.MustCompile("^(?:"+re+")$").MatchString(path) {
			continue
		}
		rr := r.GetRoute().GetRegexRewrite()
		if rr == nil {
			return ""
		}
		sub := regexp.MustCompile(`\\([0-9])`).ReplaceAllString(rr.GetSubstitution(), `$${$1}`)
		return regexp.MustCompile(rr.GetPattern().GetRegex()).ReplaceAllString(path, sub)
	}
	return ""
}
