package translate_test

import (
	"strings"
	"testing"

	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"github.com/stretchr/testify/require"

	"github.com/tollgate-dev/tollgate/translate"
)

// The stages of the pipeline, in the order README's "The pipeline" gives
// and pipeline.go's httpFilters writes down. Every HTTP filter tollgate
// emits belongs to exactly one; a new filter must be placed here.
var pipelineStages = []struct {
	stage string
	match func(name string) bool
}{
	{"body for routing", oneOf("tollgate.body.sanitize", "tollgate.body.limit", "tollgate.body.route")},
	{"access control", func(n string) bool {
		return n == "envoy.filters.http.rbac" || strings.HasPrefix(n, "envoy.filters.http.ext_authz/")
	}},
	{"attribution", func(n string) bool {
		return oneOf("tollgate.attribution.identity", "tollgate.attribution.metadata")(n) || strings.HasPrefix(n, "tollgate.attribution.source_cidr.")
	}},
	{"input guard rails", oneOf("tollgate.guardrails.clamp")},
	{"payload processors", func(n string) bool { return strings.HasPrefix(n, "tollgate.processor.") }},
	{"token accounting", oneOf("tollgate.body", "tollgate.body.sse")},
	{"rate limits", oneOf("tollgate.local_ratelimit", "tollgate.ratelimit.requests", "tollgate.ratelimit.tokens")},
	{"router", oneOf("envoy.filters.http.router")},
}

// The stages of a backend's hop (per attempt, on the backend the attempt
// goes to): model rename, then schema translation, then the router.
var hopStages = []struct {
	stage string
	match func(name string) bool
}{
	{"model rename", oneOf("tollgate.model_map")},
	{"schema translation", func(n string) bool { return strings.HasPrefix(n, "tollgate.schema") }},
	{"router", oneOf("envoy.filters.http.router")},
}

// And of a backend cluster's upstream filters: strip the workload's
// credentials, inject the backend's, encode.
var upstreamStages = []struct {
	stage string
	match func(name string) bool
}{
	{"credential strip", oneOf("envoy.filters.http.header_mutation")},
	{"credential injection", oneOf("envoy.filters.http.credential_injector", "envoy.filters.http.aws_request_signing")},
	{"codec", oneOf("envoy.filters.http.upstream_codec")},
}

func oneOf(names ...string) func(string) bool {
	return func(n string) bool {
		for _, m := range names {
			if n == m {
				return true
			}
		}
		return false
	}
}

type stageList = []struct {
	stage string
	match func(name string) bool
}

// stageOrder checks that filters run through stages in order, every filter
// in a known stage, and returns the stages seen.
func stageOrder(t *testing.T, where string, stages stageList, filters []*hcmv3.HttpFilter) []string {
	t.Helper()
	last := -1
	var seen []string
	for _, f := range filters {
		idx := -1
		for i, s := range stages {
			if s.match(f.GetName()) {
				idx = i
				break
			}
		}
		require.NotEqual(t, -1, idx, "%s: filter %q belongs to no pipeline stage: place it in pipeline.go's order and in this test", where, f.GetName())
		require.GreaterOrEqual(t, idx, last, "%s: filter %q (%s) runs after a filter of stage %q", where, f.GetName(), stages[idx].stage, stages[max(last, 0)].stage)
		if idx != last {
			seen = append(seen, stages[idx].stage)
		}
		last = idx
	}
	return seen
}

// TestPipelineOrder asserts, on every golden case and example, that the
// generated filter chains follow the one pipeline order: the listeners'
// HTTP filters, the hops' and the backend clusters' upstream filters. It
// counts the stages it saw, and fails when a stage was never exercised, so
// that a case losing its filters cannot make it pass.
func TestPipelineOrder(t *testing.T) {
	saw := map[string]bool{}
	for name, cfg := range credentialSources(t) {
		out, err := translate.Translate(cfg)
		require.NoError(t, err, name)
		for _, g := range out.Gateways {
			for _, l := range g.Listeners {
				for _, fc := range l.GetFilterChains() {
					for _, f := range fc.GetFilters() {
						hcm := &hcmv3.HttpConnectionManager{}
						require.NoError(t, f.GetTypedConfig().UnmarshalTo(hcm))
						stages := pipelineStages
						kind := "listener"
						if l.GetInternalListener() != nil {
							stages, kind = hopStages, "hop"
						}
						for _, s := range stageOrder(t, name+" "+l.GetName(), stages, hcm.GetHttpFilters()) {
							saw[kind+": "+s] = true
						}
					}
				}
			}
			for _, c := range g.Clusters {
				opts := c.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
				if opts == nil {
					continue
				}
				po := &httpv3.HttpProtocolOptions{}
				require.NoError(t, opts.UnmarshalTo(po))
				for _, s := range stageOrder(t, name+" "+c.GetName(), upstreamStages, po.GetHttpFilters()) {
					saw["upstream: "+s] = true
				}
			}
		}
	}
	for _, s := range pipelineStages {
		require.True(t, saw["listener: "+s.stage], "no golden case or example exercises the %q stage", s.stage)
	}
	for _, want := range []string{"hop: model rename", "hop: router", "upstream: credential strip", "upstream: credential injection", "upstream: codec"} {
		require.True(t, saw[want], "no golden case or example exercises %q", want)
	}
}
