package translate

import (
	"sort"

	mutationrulesv3 "github.com/envoyproxy/go-control-plane/envoy/config/common/mutation_rules/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/tollgate-dev/tollgate/model"
)

// PayloadProcessors: one ext_proc filter per PayloadProcessor that a
// route of the listener uses, disabled on the listener and enabled by the
// routes of its policy only, like the ExternalAuth services
// (externalauth.go).
//
// How a disabled filter is enabled per route: the connection manager
// builds a stream's filter chain after the route is chosen, skipping a
// filter when options.filterDisabled(name) says so and otherwise falling
// back to the HttpFilter's own disabled flag
// (FilterChainUtility::createFilterChainForFactories in
// source/common/http/filter_chain_helper.cc). filterDisabled is the
// route's PerFilterConfigs::disabled (RouteEntryImplBase::filterDisabled
// in source/common/router/config_impl.cc), and PerFilterConfigs'
// constructor (source/common/router/per_filter_config.cc) records any
// typed_per_filter_config entry that is not a FilterConfig{disabled: true}
// as enabled ("If a filter is explicitly configured we treat it as
// enabled"). So each route of the policy carries an ExtProcPerRoute; a
// bare FilterConfig{disabled: false} would not do, since a FilterConfig
// without config is refused ("Empty route/virtual host per filter
// configuration").

// ProcessorFilterName is the HTTP filter of a PayloadProcessor.
func ProcessorFilterName(policy model.Ref) string {
	return "tollgate.processor." + policy.Namespace + "." + policy.Name
}

// Initial metadata on each processor stream: which route and policy ask,
// as ExternalAuth tells its service (check_settings.context_extensions).
const (
	ProcessorRouteMetadata  = "x-tollgate-route"
	ProcessorPolicyMetadata = "x-tollgate-policy"
)

// processorFilters are the ext_proc filters of a listener's
// PayloadProcessors, in pipeline order (see pipeline.go): by policy.
func processorFilters(l *model.ListenerConfig) []*hcmv3.HttpFilter {
	var out []*hcmv3.HttpFilter
	for _, p := range listenerProcessors(l) {
		out = append(out, &hcmv3.HttpFilter{
			Name:       ProcessorFilterName(p.Policy),
			ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(ExtProc(p))},
			// Enabled only on the routes of its policy (their
			// ExtProcPerRoute), so that a route never sends its traffic
			// to a processor it was not written for.
			Disabled: true,
		})
	}
	return out
}

// listenerProcessors lists the PayloadProcessors of the listener's routes,
// one per policy, by policy.
func listenerProcessors(l *model.ListenerConfig) []*model.ProcessorSettings {
	seen := map[model.Ref]bool{}
	var out []*model.ProcessorSettings
	for _, r := range l.Routes {
		for _, p := range r.Processors {
			if !seen[p.Policy] {
				seen[p.Policy] = true
				out = append(out, p)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Policy.Less(out[j].Policy) })
	return out
}

// applyProcessors enables a route's PayloadProcessors on its Envoy route:
// forwarding routes only (a direct response has nothing to process).
func applyProcessors(route *routev3.Route, r *model.RouteConfig) {
	if route.GetRoute() == nil || len(r.Processors) == 0 {
		return
	}
	if route.TypedPerFilterConfig == nil {
		route.TypedPerFilterConfig = map[string]*anypb.Any{}
	}
	for _, p := range r.Processors {
		route.TypedPerFilterConfig[ProcessorFilterName(p.Policy)] = mustAny(ExtProcPerRoute(r, p))
	}
}

// ExtProcPerRoute enables a processor on a route and tells it, in the
// stream's initial metadata, which route and policy ask (merged into the
// GrpcService's initial_metadata: Filter::mergePerRouteConfig in
// source/extensions/filters/http/ext_proc/ext_proc.cc).
func ExtProcPerRoute(r *model.RouteConfig, p *model.ProcessorSettings) *extprocv3.ExtProcPerRoute {
	return &extprocv3.ExtProcPerRoute{Override: &extprocv3.ExtProcPerRoute_Overrides{Overrides: &extprocv3.ExtProcOverrides{
		GrpcInitialMetadata: []*corev3.HeaderValue{
			{Key: ProcessorRouteMetadata, Value: ForwardedRouteValue(r)},
			{Key: ProcessorPolicyMetadata, Value: p.Policy.String()},
		},
	}}}
}

// ProcessorBackends are the backends running a listener's processors,
// which need clusters like any backend a route reaches. An unavailable
// one gets none: its processor's stream then fails to open, and its
// routes fail closed (or pass, with failOpen).
func ProcessorBackends(l *model.ListenerConfig) []*model.BackendConfig {
	var out []*model.BackendConfig
	for _, p := range listenerProcessors(l) {
		if p.Backend.Unavailable == "" {
			out = append(out, p.Backend)
		}
	}
	return out
}

var bodyModes = map[string]extprocv3.ProcessingMode_BodySendMode{
	model.ProcessorBodyNone:               extprocv3.ProcessingMode_NONE,
	model.ProcessorBodyBuffered:           extprocv3.ProcessingMode_BUFFERED,
	model.ProcessorBodyStreamed:           extprocv3.ProcessingMode_STREAMED,
	model.ProcessorBodyBufferedPartial:    extprocv3.ProcessingMode_BUFFERED_PARTIAL,
	model.ProcessorBodyFullDuplexStreamed: extprocv3.ProcessingMode_FULL_DUPLEX_STREAMED,
}

func sendMode(send bool) extprocv3.ProcessingMode_HeaderSendMode {
	if send {
		return extprocv3.ProcessingMode_SEND
	}
	return extprocv3.ProcessingMode_SKIP
}

// ProcessingMode is the phases a processor sees. Header and trailer modes
// are always explicit (SEND or SKIP), never DEFAULT, whose meaning differs
// between headers (sent) and trailers (skipped).
func ProcessingMode(p *model.ProcessorSettings) *extprocv3.ProcessingMode {
	return &extprocv3.ProcessingMode{
		RequestHeaderMode:   sendMode(p.RequestHeaders),
		RequestBodyMode:     bodyModes[p.RequestBody],
		RequestTrailerMode:  sendMode(p.RequestTrailers),
		ResponseHeaderMode:  sendMode(p.ResponseHeaders),
		ResponseBodyMode:    bodyModes[p.ResponseBody],
		ResponseTrailerMode: sendMode(p.ResponseTrailers),
	}
}

// ProcessorMutationRules are the header mutations a processor may make.
// Envoy checks each set or remove in this order (Checker::isAllowed in
// source/extensions/filters/common/mutation_rules/mutation_rules.cc):
// disallow_expression refuses, then allow_expression admits, then
// disallow_all refuses, then the routing headers (host, :authority,
// :method, :scheme) are refused, then, with disallow_system, every
// pseudo-header, then x-envoy-*; anything else is allowed. So:
//   - the protected headers (model.ProcessorProtectedHeaders: tollgate's,
//     Envoy's, credentials, host, pseudo-headers) lead the
//     disallow_expression, where no allow expression can reach them;
//   - a policy's allow list is the allow_expression with disallow_all,
//     which makes it the only headers allowed;
//   - disallow_system is set anyway (it also covers :path and :status).
//
// disallow_is_error (a policy's onDisallowed: Refuse) turns a refused
// mutation into a 500 for the request (Checker::check returns FAIL; the
// filter answers with an immediate 500, Filter::onReceiveMessage in
// ext_proc.cc); otherwise the mutation is skipped.
func ProcessorMutationRules(p *model.ProcessorSettings) *mutationrulesv3.HeaderMutationRules {
	rules := &mutationrulesv3.HeaderMutationRules{
		DisallowSystem:     wrapperspb.Bool(true),
		DisallowExpression: regex(model.ProcessorDenyExpression(p.DenyHeaders)),
		DisallowIsError:    wrapperspb.Bool(p.RefuseDisallowed),
	}
	if len(p.AllowHeaders) > 0 {
		rules.AllowExpression = regex(model.ProcessorAllowExpression(p.AllowHeaders))
		rules.DisallowAll = wrapperspb.Bool(true)
	}
	return rules
}

// ProcessorWithheldHeaders are the request headers a processor never
// sees: the workload's credentials (which the router strips only later,
// when it sends the request) and cookies. A redactor or a guard rail has
// no use for them, and a processor is another party.
var ProcessorWithheldHeaders = append(append([]string{}, model.WorkloadCredentialHeaders...), "proxy-authorization", "cookie")

// ExtProc is the ext_proc filter of one PayloadProcessor.
//
// route_cache_action is RETAIN: a processor's header mutation never makes
// Envoy pick the route again (DecodingProcessorState::clearRouteCache in
// source/extensions/filters/http/ext_proc/processor_state.cc clears it
// only for DEFAULT with clear_route_cache, or CLEAR), so it cannot move a
// request past the access control and the limits of the route it was
// admitted on.
func ExtProc(p *model.ProcessorSettings) *extprocv3.ExternalProcessor {
	ep := &extprocv3.ExternalProcessor{
		GrpcService:      backendGRPCService(p.Backend),
		FailureModeAllow: p.FailOpen,
		ProcessingMode:   ProcessingMode(p),
		MessageTimeout:   durationpb.New(p.MessageTimeout),
		StatPrefix:       p.Policy.Namespace + "." + p.Policy.Name,
		RouteCacheAction: extprocv3.ExternalProcessor_RETAIN,
		ForwardRules: &extprocv3.HeaderForwardingRules{
			DisallowedHeaders: &matcherv3.ListStringMatcher{},
		},
	}
	for _, h := range ProcessorWithheldHeaders {
		ep.ForwardRules.DisallowedHeaders.Patterns = append(ep.ForwardRules.DisallowedHeaders.Patterns, exact(h))
	}
	if p.ObserveOnly {
		// Answers are ignored, so mutation rules and the timeout have
		// nothing to apply to (Filter::onReceiveMessage returns early).
		ep.ObservabilityMode = true
		return ep
	}
	ep.MutationRules = ProcessorMutationRules(p)
	ep.DisableImmediateResponse = !p.ImmediateResponse
	if p.MaxMessageTimeout > 0 {
		ep.MaxMessageTimeout = durationpb.New(p.MaxMessageTimeout)
	}
	return ep
}
