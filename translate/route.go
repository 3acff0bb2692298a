package translate

import (
	"sort"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/tollgate-dev/tollgate/model"
)

// RouteConfiguration builds the RDS resource of a listener: one virtual host
// per hostname the attached routes name ("*" for routes that name none), and
// in each the routes ordered by Gateway API precedence. A Parent-mode
// gateway gets the same hosts and order, every route forwarding to its
// parent (ChildRoute).
func RouteConfiguration(g *model.GatewayConfig, l *model.ListenerConfig) (*routev3.RouteConfiguration, error) {
	build := Route
	if g.Parent != nil {
		build = ChildRoute
	}
	byHost := map[string][]routeEntry{}
	for _, r := range l.Routes {
		hosts := r.Hostnames
		if len(hosts) == 0 {
			hosts = []string{"*"}
		}
		for _, rule := range r.Rules {
			matches := rule.Matches
			if len(matches) == 0 {
				matches = []model.RouteMatch{{}}
			}
			for i, m := range matches {
				e := routeEntry{route: r, rule: rule, match: m, matchIndex: i}
				for _, h := range dedupe(hosts) {
					byHost[h] = append(byHost[h], e)
				}
			}
		}
	}
	hosts := make([]string, 0, len(byHost))
	for h := range byHost {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	rc := &routev3.RouteConfiguration{
		Name: RouteConfigName(l),
		// Clusters come over CDS in the same snapshot; validating them here
		// would only delay route updates.
		ValidateClusters: wrapperspb.Bool(false),
	}
	// The routing headers of the body filters end at the route (body.go).
	readsBody := bodyNeedsOf(g, l).limit > 0
	guards := newGuardCache()
	for _, h := range hosts {
		entries := byHost[h]
		sort.SliceStable(entries, func(i, j int) bool { return entries[i].before(entries[j]) })
		vh := &routev3.VirtualHost{Name: VirtualHostName(h), Domains: []string{h}}
		for _, e := range entries {
			route, err := build(g, e.route, e.rule, e.match, e.matchIndex)
			if err != nil {
				return nil, err
			}
			// Who may use the route (externalauth.go).
			if err := applyAccess(route, l, e.route, e.rule); err != nil {
				return nil, err
			}
			if readsBody && route.GetRoute() != nil {
				route.RequestHeadersToRemove = append(route.RequestHeadersToRemove, routeOnlyHeaders(g, e.rule)...)
			}
			variants := []*routev3.Route{route}
			if pm, ok := pathModelOf(ruleSchema(e.rule)); ok && e.match.Model != nil && g.Parent == nil && pm.compatible(e.match) {
				// Bedrock and Gemini name the model in the path: the rule's
				// model condition matches there too, in a twin route.
				twin := proto.Clone(route).(*routev3.Route)
				twin.Name += "/model-path"
				twin.Match.Headers = append(withoutHeader(twin.Match.Headers, ModelHeader), pathMatcher(pm.regex([]model.ModelMatch{*e.match.Model}), false))
				variants = append(variants, twin)
			}
			for i, v := range variants {
				if g.Parent == nil {
					// Content guard rails, right before the route (body.go).
					vh.Routes = append(vh.Routes, guardEntries(guards, g, e.route, e.rule, e.match, v, i > 0)...)
				}
				vh.Routes = append(vh.Routes, v)
			}
		}
		rc.VirtualHosts = append(rc.VirtualHosts, vh)
	}
	return rc, nil
}

func dedupe(in []string) []string {
	seen := make(map[string]bool, len(in))
	out := in[:0:0]
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// routeEntry is one match of one rule, the unit Envoy routes on.
type routeEntry struct {
	route      *model.RouteConfig
	rule       *model.RuleConfig
	match      model.RouteMatch
	matchIndex int
}

// before orders entries by Gateway API precedence: exact paths, then
// regular expressions, then the longest prefix; then a method match; then
// more header matches; then more query matches; then route identity and
// rule order, which keeps the order stable.
func (a routeEntry) before(b routeEntry) bool {
	ar, br := pathRank(a.match.Path), pathRank(b.match.Path)
	if ar != br {
		return ar > br
	}
	if al, bl := pathLen(a.match.Path), pathLen(b.match.Path); al != bl {
		return al > bl
	}
	if (a.match.Method != "") != (b.match.Method != "") {
		return a.match.Method != ""
	}
	if (a.match.Model != nil) != (b.match.Model != nil) {
		return a.match.Model != nil // a model condition is more specific
	}
	if len(a.match.Headers) != len(b.match.Headers) {
		return len(a.match.Headers) > len(b.match.Headers)
	}
	if len(a.match.QueryParams) != len(b.match.QueryParams) {
		return len(a.match.QueryParams) > len(b.match.QueryParams)
	}
	if a.route != b.route {
		return a.route.Ref.Less(b.route.Ref)
	}
	if a.rule.Index != b.rule.Index {
		return a.rule.Index < b.rule.Index
	}
	return a.matchIndex < b.matchIndex
}

func pathRank(p *model.PathMatch) int {
	if p == nil {
		return 0
	}
	switch p.Type {
	case model.MatchExact:
		return 3
	case model.MatchRegularExpression:
		return 2
	}
	return 1
}

func pathLen(p *model.PathMatch) int {
	if p == nil {
		return 1 // "/"
	}
	return len(p.Value)
}

// Route builds the Envoy route of one match of a rule.
func Route(g *model.GatewayConfig, r *model.RouteConfig, rule *model.RuleConfig, m model.RouteMatch, matchIndex int) (*routev3.Route, error) {
	route := &routev3.Route{
		Name:  RouteName(r, rule, matchIndex),
		Match: RouteMatch(m),
	}
	if served := ServedBackends(g, rule); served != nil {
		route.Action = &routev3.Route_Route{Route: RouteAction(g, r, rule)}
		// The router keeps the body for a retry only up to this limit, then
		// gives retries up (Filter::decodeData in
		// source/common/router/router.cc, retry_or_shadow_abandoned); the
		// SigV4 signer reads the whole body within it too.
		route.RequestBodyBufferLimit = wrapperspb.UInt64(*EffectiveRetry(g, r).BufferLimit)
		route.RequestHeadersToRemove = stripCredentialsAtRoute(served)
		applyRateLimits(route, g, r, rule)
		applyProcessors(route, r)         // payloadprocessor.go
		applyClientSchema(route, g, rule) // schema.go
		applyBodyLimit(route, g, r)       // body.go
		if anyHop(Targets(g, rule)) || singleHop(Targets(g, rule)) {
			// Only this gateway's retries may read the mark of its hops'
			// refusals (RetryStateImpl::shouldRetryHeaders runs before
			// Filter::onUpstreamHeaders finalizes the response headers in
			// source/common/router/router.cc).
			route.ResponseHeadersToRemove = []string{RefusalHeader}
		}
	} else {
		route.Action = &routev3.Route_DirectResponse{DirectResponse: UnservedResponse(g, rule)}
	}
	return route, nil
}

// stripCredentialsAtRoute lists the workload credential headers a route
// removes itself when every backend it can reach injects its own
// credential. The backends' upstream filters already remove them per
// attempt; this second removal makes the route fail closed on a proxy that
// ignores upstream HTTP filters (an older or Envoy-compatible one): the
// provider then gets no key and answers 401, rather than getting the
// workload's. A rule that also reaches a backend without a credential keeps
// the headers, which that backend may need.
func stripCredentialsAtRoute(served []model.WeightedBackend) []string {
	for _, wb := range served {
		if wb.Backend.Credential == nil {
			return nil
		}
	}
	return model.WorkloadCredentialHeaders
}

// RouteMatch builds an Envoy match from a rule's match.
func RouteMatch(m model.RouteMatch) *routev3.RouteMatch {
	rm := &routev3.RouteMatch{}
	switch p := m.Path; {
	case p == nil:
		rm.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: "/"}
	case p.Type == model.MatchExact:
		rm.PathSpecifier = &routev3.RouteMatch_Path{Path: p.Value}
	case p.Type == model.MatchRegularExpression:
		rm.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: regex(p.Value)}
	default:
		// Gateway API prefixes match whole segments: /v1 matches /v1 and
		// /v1/chat, not /v1beta. path_separated_prefix does exactly that.
		v := strings.TrimSuffix(p.Value, "/")
		if v == "" {
			rm.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: "/"}
		} else {
			rm.PathSpecifier = &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: v}
		}
	}
	if m.Method != "" {
		rm.Headers = append(rm.Headers, &routev3.HeaderMatcher{
			Name:                 ":method",
			HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: exact(m.Method)},
		})
	}
	for _, h := range m.Headers {
		rm.Headers = append(rm.Headers, &routev3.HeaderMatcher{
			Name:                 strings.ToLower(h.Name),
			HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: stringMatch(h)},
		})
	}
	if m.Model != nil {
		rm.Headers = append(rm.Headers, modelHeaderMatcher(*m.Model))
	}
	for _, q := range m.QueryParams {
		rm.QueryParameters = append(rm.QueryParameters, &routev3.QueryParameterMatcher{
			Name:                         q.Name,
			QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_StringMatch{StringMatch: stringMatch(q)},
		})
	}
	return rm
}

func stringMatch(v model.ValueMatch) *matcherv3.StringMatcher {
	if v.Type == model.MatchRegularExpression {
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: regex(v.Value)}}
	}
	return exact(v.Value)
}

func exact(s string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}}
}

func regex(s string) *matcherv3.RegexMatcher {
	return &matcherv3.RegexMatcher{Regex: s}
}

// RouteAction sends a rule's traffic to its served backends (see
// ServedBackends), split by weight and failing over by priority (see
// Targets), with the retry policy of the route and its gateway. Each backend
// keeps its own Host header.
func RouteAction(g *model.GatewayConfig, r *model.RouteConfig, rule *model.RuleConfig) *routev3.RouteAction {
	targets := Targets(g, rule)
	failover := len(targets) > 0 && targets[0].aggregate()
	ra := &routev3.RouteAction{
		Timeout:     durationpb.New(rule.Timeout),
		RetryPolicy: RetryPolicy(EffectiveRetry(g, r), failover, failover && anyHop(targets)),
	}
	if rule.StreamIdleTimeout != nil {
		ra.IdleTimeout = durationpb.New(*rule.StreamIdleTimeout)
	}
	if len(targets) == 1 && !targets[0].aggregate() {
		b := targets[0].Members[0]
		ra.ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: ClusterName(b)}
		if needsBodyHop(b) {
			// Rewritten per attempt in its hop (body.go), also as the
			// only backend; the hop sets Host.
			ra.ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: HopName(b)}
		}
		if b.Hostname != "" {
			ra.HostRewriteSpecifier = &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: b.Hostname}
		}
		return ra
	}
	if !targets[0].aggregate() {
		// Plain weighted clusters: each backend's Host per weight.
		wc := &routev3.WeightedCluster{}
		for _, t := range targets {
			cw := &routev3.WeightedCluster_ClusterWeight{Name: t.Cluster, Weight: wrapperspb.UInt32(t.Weight)}
			if needsBodyHop(t.Members[0]) {
				cw.Name = HopName(t.Members[0])
			}
			if h := t.Members[0].Hostname; h != "" {
				cw.HostRewriteSpecifier = &routev3.WeightedCluster_ClusterWeight_HostRewriteLiteral{HostRewriteLiteral: h}
			}
			wc.Clusters = append(wc.Clusters, cw)
		}
		ra.ClusterSpecifier = &routev3.RouteAction_WeightedClusters{WeightedClusters: wc}
		return ra
	}
	// Behind an aggregate the backend is only known once a host is picked,
	// per attempt: Host becomes that host's hostname (every endpoint
	// carries its backend's), so a fail-over keeps each provider's Host.
	ra.HostRewriteSpecifier = &routev3.RouteAction_AutoHostRewrite{AutoHostRewrite: wrapperspb.Bool(true)}
	if len(targets) == 1 {
		ra.ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: targets[0].Cluster}
		return ra
	}
	wc := &routev3.WeightedCluster{}
	for _, t := range targets {
		wc.Clusters = append(wc.Clusters, &routev3.WeightedCluster_ClusterWeight{
			Name:   t.Cluster,
			Weight: wrapperspb.UInt32(t.Weight),
		})
	}
	ra.ClusterSpecifier = &routev3.RouteAction_WeightedClusters{WeightedClusters: wc}
	return ra
}
