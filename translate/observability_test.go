package translate_test

import (
	"regexp"
	"slices"
	"strings"
	"testing"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	statsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stats/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/translate"
)

func hcmOf(t *testing.T, l *listenerv3.Listener) *hcmv3.HttpConnectionManager {
	t.Helper()
	for _, fc := range l.GetFilterChains() {
		for _, f := range fc.GetFilters() {
			hcm := &hcmv3.HttpConnectionManager{}
			if f.GetTypedConfig().MessageIs(hcm) {
				require.NoError(t, f.GetTypedConfig().UnmarshalTo(hcm))
				return hcm
			}
		}
	}
	return nil
}

// secretFormatRE matches a substitution command that reads a header that
// carries a credential, a cookie, or the path with its query string.
var secretFormatRE = func() *regexp.Regexp {
	var hs []string
	for _, h := range append(slices.Clone(model.WorkloadCredentialHeaders), "cookie", "proxy-authorization") {
		hs = append(hs, regexp.QuoteMeta(h))
	}
	return regexp.MustCompile(`(?i)%(REQ|REQUEST_HEADER|RESP|RESPONSE_HEADER|TRAILER)\((` + strings.Join(hs, "|") + `)[)?:]` +
		`|%REQ\(:PATH\)|%REQ\(X-ENVOY-ORIGINAL-PATH|%PATH%|%PATH\(WQ|%REQUEST_HEADERS%|%RESPONSE_HEADERS%`)
}()

// TestObservabilityNeverRecordsSecrets guards the README's promise that no
// access log, metric or span of an ObservabilityPolicy records the query
// string or a credential header, on every golden case and example: every
// substitution format in a listener's access loggers and tracing is read.
func TestObservabilityNeverRecordsSecrets(t *testing.T) {
	for _, bad := range []string{"%REQ(Authorization)%", "%REQ(x-api-key)%", "%REQUEST_HEADER(x-goog-api-key)%", "%REQ(:PATH)%", "%PATH%", "%PATH(WQ:ORIG)%", "%REQ(cookie)%"} {
		require.True(t, secretFormatRE.MatchString(bad), bad)
	}
	for _, ok := range []string{"%PATH(NQ)%", "%REQ(X-REQUEST-ID)%", "%REQ(USER-AGENT)%", "%REQ(:AUTHORITY)%"} {
		require.False(t, secretFormatRE.MatchString(ok), ok)
	}
	checked := 0
	for name, cfg := range credentialSources(t) {
		out, err := translate.Translate(cfg)
		require.NoError(t, err, name)
		for _, g := range out.Gateways {
			for _, l := range g.Listeners {
				hcm := hcmOf(t, l)
				if hcm == nil {
					continue
				}
				for _, part := range []any{hcm.GetAccessLog(), hcm.GetTracing()} {
					var js []byte
					switch p := part.(type) {
					case []*accesslogv3.AccessLog:
						for _, a := range p {
							b, err := protojson.Marshal(a)
							require.NoError(t, err)
							js = append(js, b...)
						}
					case *hcmv3.HttpConnectionManager_Tracing:
						if p == nil {
							continue
						}
						js, err = protojson.Marshal(p)
						require.NoError(t, err)
					}
					checked++
					require.Falsef(t, secretFormatRE.Match(js), "%s gateway %s listener %s records a secret or the query string: %s",
						name, g.Key, l.GetName(), secretFormatRE.Find(js))
				}
			}
		}
	}
	require.NotZero(t, checked)
}

// TestObservabilityCollectorsHaveClusters: an OTLP exporter whose cluster
// does not exist makes Envoy refuse the whole listener, so every gRPC
// cluster a listener names (collectors, authorization services) is among
// its gateway's clusters, or the bootstrap's SPIRE agent.
func TestObservabilityCollectorsHaveClusters(t *testing.T) {
	clusterRE := regexp.MustCompile(`"clusterName":"([^"]+)"`)
	checked := 0
	for name, cfg := range credentialSources(t) {
		out, err := translate.Translate(cfg)
		require.NoError(t, err, name)
		for _, g := range out.Gateways {
			have := map[string]bool{translate.SPIREAgentCluster: true}
			for _, c := range g.Clusters {
				have[c.GetName()] = true
			}
			for _, l := range g.Listeners {
				hcm := hcmOf(t, l)
				if hcm == nil {
					continue
				}
				js, err := protojson.Marshal(&hcmv3.HttpConnectionManager{AccessLog: hcm.GetAccessLog(), Tracing: hcm.GetTracing()})
				require.NoError(t, err)
				for _, m := range clusterRE.FindAllSubmatch(js, -1) {
					checked++
					require.Truef(t, have[string(m[1])], "%s gateway %s listener %s sends to cluster %s, which it does not have", name, g.Key, l.GetName(), m[1])
				}
			}
		}
	}
	require.NotZero(t, checked, "no collector was checked")
}

func observed(t *testing.T, file string) (*model.Config, *translate.Output) {
	t.Helper()
	cfg, errs := loadCase(t, file)
	require.Empty(t, errs)
	out, err := translate.Translate(cfg)
	require.NoError(t, err)
	return cfg, out
}

func statsConfigs(t *testing.T, logs []*accesslogv3.AccessLog) ([]*statsv3.Config, []*accesslogv3.AccessLog) {
	t.Helper()
	var cfgs []*statsv3.Config
	var withFilters []*accesslogv3.AccessLog
	for _, a := range logs {
		c := &statsv3.Config{}
		if a.GetTypedConfig().MessageIs(c) {
			require.NoError(t, a.GetTypedConfig().UnmarshalTo(c))
			cfgs = append(cfgs, c)
			withFilters = append(withFilters, a)
		}
	}
	return cfgs, withFilters
}

func tagNames(c *statsv3.Config_Counter) []string {
	var out []string
	for _, tg := range c.GetStat().GetTags() {
		out = append(out, tg.GetName())
	}
	return out
}

// TestMetricsCountEveryRequestOnceAndTokensByType reads the stats loggers
// the way Envoy runs them: the two request counters have complementary
// filters (usage reported or not), so each request is counted once; only
// the accounted one has the request model, the workload's own input; each
// token counter is filtered on the very metadata key it adds, so it never
// formats a missing value (which Envoy logs as an error).
func TestMetricsCountEveryRequestOnceAndTokensByType(t *testing.T) {
	_, out := observed(t, "testdata/in/observability-json.yaml")
	g := out.Gateway("egress")
	require.NotNil(t, g)
	for _, l := range g.Listeners {
		hcm := hcmOf(t, l)
		cfgs, logs := statsConfigs(t, hcm.GetAccessLog())
		require.Len(t, cfgs, 4, l.GetName())

		// Requests: accounted (input_tokens present) and not (absent or null).
		for i, accounted := range []bool{true, false} {
			c, f := cfgs[i], logs[i].GetFilter().GetMetadataFilter()
			//lint:ignore SA1019 the field tollgate sets for Envoy 1.37 (see statsAccessLogs)
			require.Equal(t, translate.RequestsStatPrefix, c.GetStatPrefix())
			require.Len(t, c.GetCounters(), 1)
			ctr := c.GetCounters()[0]
			require.Equal(t, translate.RequestsCounter, ctr.GetStat().GetName())
			require.EqualValues(t, 1, ctr.GetValueFixed().GetValue())
			require.Equal(t, translate.MetadataNamespace, f.GetMatcher().GetFilter())
			require.Equal(t, translate.MetaInputTokens, f.GetMatcher().GetPath()[0].GetKey())
			require.Equal(t, !accounted, f.GetMatchIfKeyNotFound().GetValue())
			require.Equal(t, accounted, f.GetMatcher().GetValue().GetPresentMatch())
			require.Equal(t, !accounted, f.GetMatcher().GetValue().GetNullMatch() != nil)
			require.Equal(t, accounted, slices.Contains(tagNames(ctr), translate.TagRequestModel))
			for _, want := range []string{translate.TagGateway, translate.TagRoute, translate.TagBackend, translate.TagProvider,
				translate.TagNamespace, translate.TagServiceAccount, translate.TagResponseModel, translate.TagStatus} {
				require.Contains(t, tagNames(ctr), want)
			}
		}
		// Tokens, by type.
		for i, typ := range map[int]string{2: "input", 3: "output"} {
			c, f := cfgs[i], logs[i].GetFilter().GetMetadataFilter()
			ctr := c.GetCounters()[0]
			//lint:ignore SA1019 the field tollgate sets for Envoy 1.37 (see statsAccessLogs)
			require.Equal(t, translate.TokensStatPrefix, c.GetStatPrefix())
			require.Equal(t, translate.TokensCounter, ctr.GetStat().GetName())
			key := f.GetMatcher().GetPath()[0].GetKey()
			require.Equal(t, translate.MetadataFormat(key), ctr.GetValueFormat(), "the counter adds the key its filter requires")
			require.False(t, f.GetMatchIfKeyNotFound().GetValue())
			require.True(t, f.GetMatcher().GetValue().GetPresentMatch())
			var tokenType string
			for _, tg := range ctr.GetStat().GetTags() {
				if tg.GetName() == translate.TagTokenType {
					tokenType = tg.GetValueFormat()
				}
			}
			require.Equal(t, typ, tokenType)
			require.Equal(t, map[string]string{"input": translate.MetaInputTokens, "output": translate.MetaOutputTokens}[typ], key)
		}
	}
}

// TestAttributionIsNeverReadFromAHeader: who called and what it cost come
// from the tollgate metadata only, in the logs and in every metric tag; no
// metric tag reads a request header at all.
func TestAttributionIsNeverReadFromAHeader(t *testing.T) {
	attribution := map[string]string{
		"spiffe_id": translate.MetaSPIFFEID, "namespace": translate.MetaNamespace, "service_account": translate.MetaServiceAccount,
		"request_model": translate.MetaRequestModel, "response_model": translate.MetaResponseModel,
		"input_tokens": translate.MetaInputTokens, "output_tokens": translate.MetaOutputTokens, "cached_tokens": translate.MetaCachedTokens,
	}
	seen := 0
	for _, f := range translate.AttributionLogFields(model.Ref{Kind: model.KindGateway, Namespace: "default", Name: "egress"}, true) {
		if key, ok := attribution[f.Name()]; ok {
			seen++
			require.Equal(t, translate.MetadataFormat(key), f.Format(), f.Name())
		}
	}
	require.Equal(t, len(attribution), seen)
	_, out := observed(t, "testdata/in/observability-otel.yaml")
	cfgs, _ := statsConfigs(t, hcmOf(t, out.Gateway("platform/egress").Listeners[0]).GetAccessLog())
	require.NotEmpty(t, cfgs)
	for _, c := range cfgs {
		for _, ctr := range c.GetCounters() {
			for _, tg := range ctr.GetStat().GetTags() {
				require.NotRegexp(t, `%REQ|%REQUEST_HEADER|%DOWNSTREAM_PEER`, tg.GetValueFormat(), tg.GetName())
			}
		}
	}
}

// TestDefaultLogStaysWithoutAPolicyLog: without an ObservabilityPolicy,
// or with one that has only metrics and tracing, the listener keeps the
// default stdout log; with an access log of its own the policy replaces it.
func TestDefaultLogStaysWithoutAPolicyLog(t *testing.T) {
	defaultLog := func(logs []*accesslogv3.AccessLog) bool {
		for _, a := range logs {
			s := &streamv3.StdoutAccessLog{}
			if a.GetTypedConfig().MessageIs(s) {
				require.NoError(t, a.GetTypedConfig().UnmarshalTo(s))
				if _, ok := s.GetLogFormat().GetJsonFormat().GetFields()["gateway"]; !ok {
					return true
				}
			}
		}
		return false
	}
	l := &model.ListenerConfig{Listener: model.Listener{Name: "http", Port: 10080, Protocol: "HTTP"}}
	logs := translate.AccessLogs(l)
	require.Len(t, logs, 1)
	require.True(t, defaultLog(logs))
	require.Nil(t, translate.Tracing(l))

	l.Observability = &model.ObservabilitySettings{Gateway: model.Ref{Kind: model.KindGateway, Namespace: "default", Name: "egress"}, Metrics: true}
	logs = translate.AccessLogs(l)
	require.True(t, defaultLog(logs), "metrics alone keep the default log")
	require.Len(t, logs, 5)

	l.Observability.JSONLog = &model.JSONAccessLog{Path: model.PathStdout}
	logs = translate.AccessLogs(l)
	require.False(t, defaultLog(logs), "the policy's log replaces the default")
	require.Len(t, logs, 5)
}

// TestTracingSamplesAndRedactsTheURL: samplingPercent caps random and
// overall sampling alike, and the http.url tag is replaced by one without
// the query string.
func TestTracingSamplesAndRedactsTheURL(t *testing.T) {
	_, out := observed(t, "testdata/in/observability-otel.yaml")
	hcm := hcmOf(t, out.Gateway("platform/egress").Listeners[0])
	tr := hcm.GetTracing()
	require.NotNil(t, tr)
	require.Equal(t, 5.0, tr.GetRandomSampling().GetValue())
	require.Equal(t, 5.0, tr.GetOverallSampling().GetValue())
	var url string
	for _, tag := range tr.GetCustomTags() {
		if tag.GetTag() == "http.url" {
			url = tag.GetValue()
		}
	}
	require.Contains(t, url, "%PATH(NQ)%")
}

// TestClustersNameTheirBackendAndProvider: on an observed gateway each
// cluster a route sends to carries the backend and provider it stands for;
// a gateway without a policy is unchanged.
func TestClustersNameTheirBackendAndProvider(t *testing.T) {
	_, out := observed(t, "testdata/in/observability-json.yaml")
	meta := map[string]map[string]string{}
	for _, c := range out.Gateway("egress").Clusters {
		if m := c.GetMetadata().GetFilterMetadata()[translate.MetadataNamespace]; m != nil {
			meta[c.GetName()] = map[string]string{}
			for k, v := range m.GetFields() {
				meta[c.GetName()][k] = v.GetStringValue()
			}
		}
	}
	require.Equal(t, map[string]map[string]string{
		"backend/default/vllm":                  {"backend": "default/vllm"},
		"failover/default/openai,default/azure": {"backend": "default/openai,default/azure", "provider": "openai,azure-openai"},
	}, meta)
	for _, c := range out.Gateway("other").Clusters {
		require.Nil(t, c.GetMetadata(), c.GetName())
	}
}
