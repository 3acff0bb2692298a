package translate

import (
	"regexp"
	"sort"
	"strconv"
	"strings"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	celv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/filters/cel/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	rbacfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/tollgate-dev/tollgate/model"
)

// Access control: who may use a route. Two policies decide it, and a
// request must satisfy both: the EgressPolicy allowedSources of every
// backend the rule reaches, and the route's ExternalAuth. Both become one
// per-route config of the listener's RBAC filter, a DENY-action RBAC with
// one policy per reason to refuse, each named after the policy (and rule)
// it comes from; the listener's local reply mapper turns the refusal into
// a JSON 403 that names it. An ExternalAuth service is an ext_authz filter
// per policy, disabled on every route but that policy's.

const (
	filterExtAuthz = "envoy.filters.http.ext_authz"
	// celFilter is the access log filter extension that evaluates a CEL
	// expression (envoy.extensions.access_loggers.filters.cel.v3).
	celFilter = "envoy.access_loggers.extension_filters.cel"
)

// accessFilters are the listener's access control filters, in the
// pipeline's order: RBAC (EgressPolicy sources, ExternalAuth rules) first,
// so that a refused client never reaches an authorization service; then
// one ext_authz filter per ExternalAuth with a service, by name. Each is
// present only when some route of the listener needs it.
func accessFilters(l *model.ListenerConfig) []*hcmv3.HttpFilter {
	var filters []*hcmv3.HttpFilter
	if needsRBAC(l) {
		// The listener-level config enforces nothing: each route brings
		// its own (RBACPerRoute), and a route without one is open.
		filters = append(filters, &hcmv3.HttpFilter{
			Name:       filterRBAC,
			ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&rbacfilterv3.RBAC{})},
		})
	}
	for _, ea := range authServices(l) {
		filters = append(filters, &hcmv3.HttpFilter{
			Name:       ExtAuthzFilterName(ea.Policy),
			ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(ExtAuthz(ea.Service))},
			// Enabled only on the routes of its policy (their
			// ExtAuthzPerRoute), so a new route is never sent to a
			// service it was not written for.
			Disabled: true,
		})
	}
	return filters
}

// authServices lists the ExternalAuths with a service on the listener's
// routes, one per policy, by policy.
func authServices(l *model.ListenerConfig) []*model.ExternalAuthSettings {
	seen := map[model.Ref]bool{}
	var out []*model.ExternalAuthSettings
	for _, r := range l.Routes {
		if ea := r.ExternalAuth; ea != nil && ea.Service != nil && !seen[ea.Policy] {
			seen[ea.Policy] = true
			out = append(out, ea)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Policy.Less(out[j].Policy) })
	return out
}

// AuthServiceBackends are the backends of the listener's authorization
// services, which need clusters like any backend a route reaches.
func AuthServiceBackends(l *model.ListenerConfig) []*model.BackendConfig {
	var out []*model.BackendConfig
	for _, ea := range authServices(l) {
		if ea.Service.Backend.Unavailable == "" {
			out = append(out, ea.Service.Backend)
		}
	}
	return out
}

// ExtAuthz is the ext_authz filter of one authorization service. A gRPC
// service also gets the client's verified certificate (the check request's
// source.principal is its URI SAN either way).
func ExtAuthz(s *model.AuthService) *extauthzv3.ExtAuthz {
	b := s.Backend
	ea := &extauthzv3.ExtAuthz{
		TransportApiVersion: corev3.ApiVersion_V3,
		FailureModeAllow:    s.FailOpen,
	}
	if s.GRPC {
		ea.IncludePeerCertificate = true
		gs := backendGRPCService(b)
		gs.Timeout = durationpb.New(s.Timeout)
		ea.Services = &extauthzv3.ExtAuthz_GrpcService{GrpcService: gs}
	} else {
		scheme := "http://"
		if b.TLS {
			scheme = "https://"
		}
		ea.Services = &extauthzv3.ExtAuthz_HttpService{HttpService: &extauthzv3.HttpService{
			ServerUri: &corev3.HttpUri{
				Uri:              scheme + authority(b),
				HttpUpstreamType: &corev3.HttpUri_Cluster{Cluster: ClusterName(b)},
				Timeout:          durationpb.New(s.Timeout),
			},
			PathPrefix: s.PathPrefix,
		}}
	}
	if len(s.Headers) > 0 {
		m := &matcherv3.ListStringMatcher{}
		for _, h := range s.Headers {
			m.Patterns = append(m.Patterns, exact(h))
		}
		ea.AllowedHeaders = m
	}
	// The body filters run first (body.go): the service may see the
	// request's model (x-tollgate-model), never its prompt.
	ea.DisallowedHeaders = &matcherv3.ListStringMatcher{Patterns: []*matcherv3.StringMatcher{exact(PromptHeader)}}
	return ea
}

func authority(b *model.BackendConfig) string {
	host := b.Hostname
	if host == "" && len(b.Addresses) > 0 {
		host = b.Addresses[0].IP
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return host + ":" + strconv.FormatUint(uint64(b.Port), 10)
}

// applyAccess adds a route's access control: its RBAC (EgressPolicy
// sources, ExternalAuth rules) and its ExternalAuth service.
func applyAccess(route *routev3.Route, l *model.ListenerConfig, r *model.RouteConfig, rule *model.RuleConfig) error {
	per := map[string]*anypb.Any{}
	if rbac := AccessRBAC(l, r, rule); rbac != nil {
		a, err := toAny(rbac)
		if err != nil {
			return err
		}
		per[filterRBAC] = a
	}
	if ea := r.ExternalAuth; ea != nil && ea.Service != nil {
		a, err := toAny(&extauthzv3.ExtAuthzPerRoute{Override: &extauthzv3.ExtAuthzPerRoute_CheckSettings{
			CheckSettings: &extauthzv3.CheckSettings{ContextExtensions: map[string]string{
				// A gRPC service learns which route and policy ask.
				"tollgate.route":  ForwardedRouteValue(r),
				"tollgate.policy": ea.Policy.String(),
			}},
		}})
		if err != nil {
			return err
		}
		per[ExtAuthzFilterName(ea.Policy)] = a
	}
	if len(per) == 0 {
		return nil
	}
	if route.TypedPerFilterConfig == nil {
		route.TypedPerFilterConfig = map[string]*anypb.Any{}
	}
	for k, v := range per {
		route.TypedPerFilterConfig[k] = v
	}
	return nil
}

// needsAccessRBAC reports whether a rule of a route restricts its clients.
func needsAccessRBAC(r *model.RouteConfig, rule *model.RuleConfig) bool {
	return len(rule.AllowedSources) > 0 || (r.ExternalAuth != nil && len(r.ExternalAuth.Rules) > 0)
}

// Names of the RBAC policies, which Envoy reports in the response code
// details of a refusal (rbac_access_denied_matched_policy[<name>]), and so
// in the 403's body: the object and the field that refused the client.
func egressPolicyName(s model.SourceRestriction) string {
	return s.Policy.String() + ":spec.allowedSources"
}

func denyRuleName(p model.Ref, index int) string {
	return p.String() + ":spec.rules[" + strconv.Itoa(index) + "]"
}

func notAllowedName(p model.Ref) string { return p.String() + ":not-allowed" }

// AccessRBAC is a rule's per-route RBAC, nil when nothing restricts it. The
// action is DENY, with one policy per reason to refuse:
//   - per restricted backend: the client's address is in none of the
//     EgressPolicy's CIDRs;
//   - per ExternalAuth deny rule: the client matches one of its entries;
//   - when the ExternalAuth has allow rules: the client matches none of
//     their entries.
//
// A request is refused when any policy matches, so it must satisfy every
// EgressPolicy and the ExternalAuth.
func AccessRBAC(l *model.ListenerConfig, r *model.RouteConfig, rule *model.RuleConfig) *rbacfilterv3.RBACPerRoute {
	if !needsAccessRBAC(r, rule) {
		return nil
	}
	policies := map[string]*rbacv3.Policy{}
	add := func(name string, principals ...*rbacv3.Principal) {
		policies[name] = &rbacv3.Policy{
			Permissions: []*rbacv3.Permission{{Rule: &rbacv3.Permission_Any{Any: true}}},
			Principals:  principals,
		}
	}
	for _, s := range rule.AllowedSources {
		add(egressPolicyName(s), notID(anyOf(cidrPrincipals(s.CIDRs))))
	}
	if ea := r.ExternalAuth; ea != nil {
		var allowed []*rbacv3.Principal
		hasAllow := false
		for _, ar := range ea.Rules {
			var entries []*rbacv3.Principal
			for _, src := range ar.From {
				entries = append(entries, SourcePrincipal(l.Identity, src))
			}
			if ar.Action == model.AccessDeny {
				add(denyRuleName(ea.Policy, ar.Index), entries...)
				continue
			}
			hasAllow = true
			allowed = append(allowed, entries...)
		}
		if hasAllow {
			add(notAllowedName(ea.Policy), notID(anyOf(allowed)))
		}
	}
	return &rbacfilterv3.RBACPerRoute{Rbac: &rbacfilterv3.RBAC{Rules: &rbacv3.RBAC{
		Action:   rbacv3.RBAC_DENY,
		Policies: policies,
	}}}
}

// SourcePrincipal matches one from entry: every field it sets.
func SourcePrincipal(p model.IdentityPattern, s model.AccessSource) *rbacv3.Principal {
	var all []*rbacv3.Principal
	if id := s.SPIFFEID; id != nil {
		switch {
		case id.Exact != "":
			all = append(all, principalName(exact(id.Exact)))
		case id.Prefix != "":
			all = append(all, principalName(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: id.Prefix}}))
		default:
			all = append(all, principalName(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: regex(PatternRegex(id.Pattern))}}))
		}
	}
	switch {
	case s.Namespace != "" || s.ServiceAccount != "":
		all = append(all, principalName(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: regex(p.Regex(s.TrustDomain, s.Namespace, s.ServiceAccount))}}))
	case s.TrustDomain != "":
		// Any ID of the trust domain, whether or not it follows the
		// listener's pattern.
		all = append(all, principalName(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "spiffe://" + s.TrustDomain + "/"}}))
	}
	if len(s.SourceCIDRs) > 0 {
		all = append(all, anyOf(cidrPrincipals(s.SourceCIDRs)))
	}
	if len(all) == 1 {
		return all[0]
	}
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_AndIds{AndIds: &rbacv3.Principal_Set{Ids: all}}}
}

// PatternRegex is the anchored RE2 expression of a SPIFFE ID pattern in
// which "*" stands for one whole segment.
func PatternRegex(pattern string) string {
	parts := strings.Split(pattern, "*")
	for i, p := range parts {
		parts[i] = regexp.QuoteMeta(p)
	}
	return "^" + strings.Join(parts, model.SPIFFESegment) + "$"
}

// principalName matches the verified client certificate's identity. Envoy
// matches principal_name against each URI SAN of the peer certificate
// (then DNS SANs, then the subject): a SPIFFE SVID has exactly one URI SAN,
// its ID. Without a verified certificate nothing matches.
func principalName(m *matcherv3.StringMatcher) *rbacv3.Principal {
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_Authenticated_{Authenticated: &rbacv3.Principal_Authenticated{PrincipalName: m}}}
}

func cidrPrincipals(cidrs []string) []*rbacv3.Principal {
	var out []*rbacv3.Principal
	for _, c := range cidrs {
		// The connection's peer, not X-Forwarded-For: workloads talk to
		// the gateway directly, and a header is theirs to forge.
		out = append(out, &rbacv3.Principal{Identifier: &rbacv3.Principal_DirectRemoteIp{DirectRemoteIp: cidrRange(c)}})
	}
	return out
}

func anyOf(ps []*rbacv3.Principal) *rbacv3.Principal {
	if len(ps) == 1 {
		return ps[0]
	}
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_OrIds{OrIds: &rbacv3.Principal_Set{Ids: ps}}}
}

func notID(p *rbacv3.Principal) *rbacv3.Principal {
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_NotId{NotId: p}}
}

// AccessDeniedDetailsPrefix starts the response code details of every RBAC
// refusal: RoleBasedAccessControlFilter::decodeHeaders
// (source/extensions/filters/http/rbac/rbac_filter.cc) sends the 403 with
// Filters::Common::RBAC::responseDetail(policy_id)
// (source/extensions/filters/common/rbac/utility.cc), i.e.
// rbac_access_denied_matched_policy[<policy>]. It sets no response flag,
// and it sets its dynamic metadata only after sendLocalReply, when the
// local reply mapper has already run; the details are set before
// (FilterManager::sendLocalReply), so they are what the mapper can match.
const AccessDeniedDetailsPrefix = "rbac_access_denied_matched_policy["

// AccessDeniedBody is the JSON body of a refused request. Its details name
// the policy and field that refused it, e.g.
// rbac_access_denied_matched_policy[ExternalAuth/team-a/inference:spec.rules[0]].
var AccessDeniedBody = map[string]any{
	"error": map[string]any{
		"type":    "access_denied",
		"code":    403,
		"message": "the gateway's access policy does not admit this client to this route",
		"details": "%RESPONSE_CODE_DETAILS%",
	},
}

// localReplyConfig rewrites the body of the RBAC filter's refusals (only
// those: their response code details, matched with a CEL filter, since
// the access log filters have no response code details matcher) into
// AccessDeniedBody. Other local replies, ext_authz refusals included (the
// service's own answer), keep theirs. Nil when the listener has no RBAC.
func localReplyConfig(l *model.ListenerConfig, n rateLimitNeeds, b bodyNeeds) *hcmv3.LocalReplyConfig {
	var mappers []*hcmv3.ResponseMapper
	if needsRBAC(l) {
		mappers = append(mappers, accessDeniedMapper())
	}
	if b.limit > 0 {
		mappers = append(mappers, bodyTooLargeMapper()) // body.go
	}
	mappers = append(mappers, rateLimitMappers(n)...)
	if len(mappers) == 0 {
		return nil
	}
	return &hcmv3.LocalReplyConfig{Mappers: mappers}
}

func accessDeniedMapper() *hcmv3.ResponseMapper {
	body, err := structpb.NewStruct(AccessDeniedBody)
	if err != nil {
		panic(err) // a constant
	}
	cel := mustAny(&celv3.ExpressionFilter{Expression: "response.code_details.startsWith('" + AccessDeniedDetailsPrefix + "')"})
	return &hcmv3.ResponseMapper{
		Filter: &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_ExtensionFilter{ExtensionFilter: &accesslogv3.ExtensionFilter{
			Name:       celFilter,
			ConfigType: &accesslogv3.ExtensionFilter_TypedConfig{TypedConfig: cel},
		}}},
		BodyFormatOverride: &corev3.SubstitutionFormatString{
			Format: &corev3.SubstitutionFormatString_JsonFormat{JsonFormat: body},
		},
	}
}

// backendGRPCService reaches a gRPC service (authorization, rate limit,
// OTLP collector) run by a backend, through the backend's cluster.
func backendGRPCService(b *model.BackendConfig) *corev3.GrpcService {
	return &corev3.GrpcService{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{
		ClusterName: ClusterName(b),
		Authority:   b.Hostname,
	}}}
}
