package translate

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	ratelimitconfv3 "github.com/envoyproxy/go-control-plane/envoy/config/ratelimit/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	commonratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	localratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/local_ratelimit/v3"
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ratelimit/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	metadatav3 "github.com/envoyproxy/go-control-plane/envoy/type/metadata/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rlsconfv3 "github.com/envoyproxy/go-control-plane/ratelimit/config/ratelimit/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/tollgate-dev/tollgate/model"
)

// Rate limits (RateLimitPolicy). Two instances of Envoy's global rate
// limit filter ask the gateway's rate limit service: one for request
// limits (fail open by default), one for token budgets (fail closed by
// default); failure_mode_deny is a filter setting, not a route one.
// Neither has limits of its own at the listener: each route brings its
// descriptors in RateLimitPerRoute.rate_limits, the only place Envoy
// honours hits_addend and apply_on_stream_done
// (Filter::populateRateLimitDescriptors in
// source/extensions/filters/http/ratelimit/ratelimit.cc; the descriptors
// are built by RateLimitPolicy::populateDescriptors in
// source/extensions/filters/common/ratelimit_config/ratelimit_config.cc).
//
// Token accounting, per limit type, every request of a limited route:
//
//	output  admission: + max output tokens (reserved, never refunded)
//	input   admission: + 0 (refused once the counter is over);
//	        stream end: + the provider's reported input tokens
//	total   admission: + max output tokens; stream end: + input tokens
//
// The stream-end descriptors are sent from Filter::onDestroy (the same
// file) with apply_on_stream_done, fire-and-forget, with the metadata the
// response path wrote (body.go). The README derives the overshoot bound.
const (
	filterRateLimitRequests = "tollgate.ratelimit.requests"
	filterRateLimitTokens   = "tollgate.ratelimit.tokens"
	filterLocalRateLimit    = "tollgate.local_ratelimit"
)

// Descriptor keys: the first entry of every descriptor names the limit
// (policy namespace, policy name, limit name), so that no two policies or
// namespaces share a counter; the others split it.
const (
	DescriptorLimit          = "limit"
	DescriptorSPIFFEID       = "spiffe_id"
	DescriptorNamespace      = "namespace"
	DescriptorServiceAccount = "service_account"
	DescriptorSourceCIDR     = "source_cidr"
	DescriptorModel          = "model"
	DescriptorRoute          = "route"
	// DescriptorBackend is Envoy's destination_cluster action's key: the
	// cluster the route picked (the backend's, or its fail-over group's).
	DescriptorBackend = "destination_cluster"

	// NoIdentity is the value of an identity key for a client that
	// presented no certificate (Optional client validation), or whose ID
	// does not follow the listener's identity pattern: such clients share
	// one counter.
	NoIdentity = "none"
	// UnknownModel is the model key of a request whose body names none.
	UnknownModel = "unknown"
)

// RateLimitDomain is the gateway's domain at the rate limit service.
func RateLimitDomain(g *model.GatewayConfig) string { return "tollgate/" + model.GatewayKey(g.Ref) }

// LimitID is the first descriptor entry's value of a limit.
func LimitID(l model.RateLimit) string {
	return l.Policy.Namespace + "/" + l.Policy.Name + "/" + l.Name
}

// EffectiveRateLimitsOf are the rate limits of one rule on a gateway: the
// gateway's, those of every backend the rule may send a request to (a
// request counts against each), and the route's, merged by name. Nil when
// none applies.
func EffectiveRateLimitsOf(g *model.GatewayConfig, r *model.RouteConfig, rule *model.RuleConfig) *model.EffectiveRateLimits {
	scopes := []*model.RateLimitSettings{g.RateLimits}
	served := ServedBackends(g, rule)
	bs := make([]*model.BackendConfig, 0, len(served))
	for _, wb := range served {
		bs = append(bs, wb.Backend)
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].Ref.String() < bs[j].Ref.String() })
	for _, b := range bs {
		scopes = append(scopes, b.RateLimits)
	}
	scopes = append(scopes, r.RateLimits)
	e := model.MergeRateLimits(scopes...)
	if e == nil {
		return nil
	}
	if g.RateLimits != nil && g.RateLimits.DefaultMaxOutputTokens != nil {
		e.DefaultMaxOutputTokens = *g.RateLimits.DefaultMaxOutputTokens
	} else {
		e.DefaultMaxOutputTokens = model.DefaultMaxOutputTokens
	}
	if g.Parent != nil || g.RateLimitService == nil {
		e.Limits = nil // refused by the policy's check; local limits remain
	}
	if len(e.Limits) == 0 && e.Local == nil {
		return nil
	}
	return e
}

// listenerRateLimits walks the effective limits of every served rule of
// the listener.
func listenerRateLimits(g *model.GatewayConfig, l *model.ListenerConfig, fn func(r *model.RouteConfig, rule *model.RuleConfig, e *model.EffectiveRateLimits)) {
	if g == nil {
		return
	}
	for _, r := range l.Routes {
		for _, rule := range r.Rules {
			if ServedBackends(g, rule) == nil {
				continue
			}
			if e := EffectiveRateLimitsOf(g, r, rule); e != nil {
				fn(r, rule, e)
			}
		}
	}
}

// rateLimitNeeds says which rate limit filters a listener needs.
type rateLimitNeeds struct {
	requests, tokens, local, usage, body, identity bool
	cidrGroups                                     []cidrGrouping
	// defaultMaxOutput is the gateway's output reservation of a body
	// that asks for no maximum (json_to_metadata is listener-wide).
	defaultMaxOutput uint64
}

func rateLimitNeedsOf(g *model.GatewayConfig, l *model.ListenerConfig) rateLimitNeeds {
	n := rateLimitNeeds{defaultMaxOutput: model.DefaultMaxOutputTokens}
	if g != nil && g.RateLimits != nil && g.RateLimits.DefaultMaxOutputTokens != nil {
		n.defaultMaxOutput = *g.RateLimits.DefaultMaxOutputTokens
	}
	seen := map[string]bool{}
	listenerRateLimits(g, l, func(_ *model.RouteConfig, _ *model.RuleConfig, e *model.EffectiveRateLimits) {
		n.local = n.local || e.Local != nil
		for _, lim := range e.Limits {
			if lim.Tokens() {
				n.tokens, n.body = true, true
			} else {
				n.requests = true
			}
			if lim.HasKey(model.KeyModel) {
				n.body = true
			}
			for _, k := range lim.Keys {
				n.identity = n.identity || model.IdentityKey(k)
			}
			if lim.HasKey(model.KeySourceCIDR) {
				cg := groupingOf(lim)
				if !seen[cg.header] {
					seen[cg.header] = true
					n.cidrGroups = append(n.cidrGroups, cg)
				}
			}
		}
		n.usage = n.usage || e.NeedsUsage()
	})
	sort.Slice(n.cidrGroups, func(i, j int) bool { return n.cidrGroups[i].header < n.cidrGroups[j].header })
	if l.Observability != nil {
		// Attribution logs and counts who called which model and what
		// it used: the same metadata.
		n.body, n.usage, n.identity = true, true, true
	}
	return n
}

// rls reports whether the listener asks the rate limit service.
func (n rateLimitNeeds) rls() bool { return n.requests || n.tokens }

// rateLimitFilters are the listener's rate limit filters, in the
// pipeline's order: the per-Envoy limit first (it costs no call), then
// requests, then tokens.
func rateLimitFilters(g *model.GatewayConfig, l *model.ListenerConfig, n rateLimitNeeds) []*hcmv3.HttpFilter {
	var out []*hcmv3.HttpFilter
	if n.local {
		out = append(out, &hcmv3.HttpFilter{
			Name: filterLocalRateLimit,
			// No token bucket here: without one the listener-level
			// config limits nothing, and each route brings its own.
			ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&localratelimitv3.LocalRateLimit{StatPrefix: "tollgate_local_ratelimit"})},
		})
	}
	svc := g.RateLimitService
	if svc == nil {
		return out
	}
	add := func(name string, failOpen bool, prefix string) {
		out = append(out, &hcmv3.HttpFilter{
			Name:       name,
			ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(rateLimitFilter(g, svc, failOpen, prefix))},
		})
	}
	if n.requests {
		add(filterRateLimitRequests, svc.FailOpenRequests, "requests")
	}
	if n.tokens {
		add(filterRateLimitTokens, svc.FailOpenTokens, "tokens")
	}
	return out
}

func rateLimitFilter(g *model.GatewayConfig, svc *model.RateLimitService, failOpen bool, prefix string) *ratelimitv3.RateLimit {
	return &ratelimitv3.RateLimit{
		Domain:          RateLimitDomain(g),
		Timeout:         durationpb.New(svc.Timeout),
		FailureModeDeny: !failOpen,
		// A budget the gateway cannot check is a 503 (the service is
		// unavailable), not Envoy's default 500.
		StatusOnError: &typev3.HttpStatus{Code: typev3.StatusCode_ServiceUnavailable},
		RateLimitService: &ratelimitconfv3.RateLimitServiceConfig{
			GrpcService:         backendGRPCService(svc.Backend),
			TransportApiVersion: corev3.ApiVersion_V3,
		},
		// x-ratelimit-limit/-remaining/-reset on refusals and on admitted
		// responses (XRateLimitHeaderUtils::create in
		// source/extensions/filters/http/ratelimit/ratelimit_headers.cc).
		EnableXRatelimitHeaders: ratelimitv3.RateLimit_DRAFT_VERSION_03,
		StatPrefix:              prefix,
	}
}

// applyRateLimits puts the rule's limits on its route as per-route configs
// of the rate limit filters.
func applyRateLimits(route *routev3.Route, g *model.GatewayConfig, r *model.RouteConfig, rule *model.RuleConfig) {
	e := EffectiveRateLimitsOf(g, r, rule)
	if e == nil {
		return
	}
	var requests, tokens []*routev3.RateLimit
	for _, lim := range e.Limits {
		if lim.HasKey(model.KeySourceCIDR) {
			// The address group header is for the rate limit filters
			// only: the router removes it (its finalizeRequestHeaders
			// runs after every decoder filter).
			route.RequestHeadersToRemove = append(route.RequestHeadersToRemove, groupingOf(lim).header)
		}
		acts := limitActions(lim, r)
		switch lim.Counts {
		case model.CountRequests:
			requests = append(requests, &routev3.RateLimit{Actions: acts})
		case model.CountOutputTokens:
			tokens = append(tokens, reserveOutput(acts))
		case model.CountInputTokens:
			tokens = append(tokens,
				&routev3.RateLimit{Actions: acts, HitsAddend: &routev3.RateLimit_HitsAddend{Number: wrapperspb.UInt64(0)}},
				settleInput(acts))
		case model.CountTotalTokens:
			tokens = append(tokens, reserveOutput(acts), settleInput(acts))
		}
	}
	if route.TypedPerFilterConfig == nil {
		route.TypedPerFilterConfig = map[string]*anypb.Any{}
	}
	if len(requests) > 0 {
		route.TypedPerFilterConfig[filterRateLimitRequests] = mustAny(&ratelimitv3.RateLimitPerRoute{RateLimits: requests})
	}
	if len(tokens) > 0 {
		route.TypedPerFilterConfig[filterRateLimitTokens] = mustAny(&ratelimitv3.RateLimitPerRoute{RateLimits: tokens})
	}
	if lc := e.Local; lc != nil {
		route.TypedPerFilterConfig[filterLocalRateLimit] = mustAny(LocalRateLimit(lc))
	}
	route.RequestHeadersToRemove = dedupe(route.RequestHeadersToRemove)
}

func reserveOutput(acts []*routev3.RateLimit_Action) *routev3.RateLimit {
	return &routev3.RateLimit{Actions: acts, HitsAddend: &routev3.RateLimit_HitsAddend{Format: MetadataFormat(MetaMaxOutputTokens)}}
}

func settleInput(acts []*routev3.RateLimit_Action) *routev3.RateLimit {
	return &routev3.RateLimit{Actions: acts, ApplyOnStreamDone: true, HitsAddend: &routev3.RateLimit_HitsAddend{Format: MetadataFormat(MetaInputTokens)}}
}

// LocalRateLimit is a route's per-Envoy token bucket: Requests tokens,
// all refilled every Unit.
func LocalRateLimit(lc *model.LocalRateLimit) *localratelimitv3.LocalRateLimit {
	all := &corev3.RuntimeFractionalPercent{DefaultValue: &typev3.FractionalPercent{Numerator: 100, Denominator: typev3.FractionalPercent_HUNDRED}}
	return &localratelimitv3.LocalRateLimit{
		StatPrefix: "tollgate_local_ratelimit",
		TokenBucket: &typev3.TokenBucket{
			MaxTokens:     uint32(lc.Requests),
			TokensPerFill: wrapperspb.UInt32(uint32(lc.Requests)),
			FillInterval:  durationpb.New(model.UnitDuration(lc.Unit)),
		},
		// Without both, the filter neither checks nor enforces
		// (LocalRateLimit proto: filter_enabled, filter_enforced).
		FilterEnabled:           &corev3.RuntimeFractionalPercent{DefaultValue: all.DefaultValue, RuntimeKey: "tollgate.local_ratelimit.enabled"},
		FilterEnforced:          &corev3.RuntimeFractionalPercent{DefaultValue: all.DefaultValue, RuntimeKey: "tollgate.local_ratelimit.enforced"},
		EnableXRatelimitHeaders: commonratelimitv3.XRateLimitHeadersRFCVersion_DRAFT_VERSION_03,
		// The bucket is full again after one unit at the latest.
		ResponseHeadersToAdd: []*corev3.HeaderValueOption{{
			Header:       &corev3.HeaderValue{Key: "retry-after", Value: retryAfter(lc.Unit)},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		}},
	}
}

// limitActions are the descriptor entries of one limit on a route, in
// model.RateLimitKeys order (the rate limit service's descriptor tree
// follows the same order: RateLimitConfigOf).
func limitActions(lim model.RateLimit, r *model.RouteConfig) []*routev3.RateLimit_Action {
	acts := []*routev3.RateLimit_Action{genericKey(DescriptorLimit, LimitID(lim))}
	for _, k := range lim.Keys {
		switch k {
		case model.KeySPIFFEID:
			acts = append(acts, metadataAction(DescriptorSPIFFEID, MetaSPIFFEID, NoIdentity))
		case model.KeyNamespace:
			acts = append(acts, metadataAction(DescriptorNamespace, MetaNamespace, NoIdentity))
		case model.KeyServiceAccount:
			acts = append(acts, metadataAction(DescriptorServiceAccount, MetaServiceAccount, NoIdentity))
		case model.KeySourceCIDR:
			// The header the listener's ip_tagging filter set for this
			// grouping; a client in no group has none, and the
			// descriptor is then not sent (RequestHeadersAction without
			// skip_if_absent).
			acts = append(acts, &routev3.RateLimit_Action{ActionSpecifier: &routev3.RateLimit_Action_RequestHeaders_{RequestHeaders: &routev3.RateLimit_Action_RequestHeaders{
				HeaderName: groupingOf(lim).header, DescriptorKey: DescriptorSourceCIDR,
			}}})
		case model.KeyModel:
			acts = append(acts, metadataAction(DescriptorModel, MetaRequestModel, UnknownModel))
		case model.KeyRoute:
			acts = append(acts, genericKey(DescriptorRoute, r.Ref.Namespace+"/"+r.Ref.Name))
		case model.KeyBackend:
			acts = append(acts, &routev3.RateLimit_Action{ActionSpecifier: &routev3.RateLimit_Action_DestinationCluster_{DestinationCluster: &routev3.RateLimit_Action_DestinationCluster{}}})
		}
	}
	return acts
}

func genericKey(key, value string) *routev3.RateLimit_Action {
	return &routev3.RateLimit_Action{ActionSpecifier: &routev3.RateLimit_Action_GenericKey_{GenericKey: &routev3.RateLimit_Action_GenericKey{
		DescriptorKey: key, DescriptorValue: value,
	}}}
}

func metadataAction(descriptorKey, metaKey, def string) *routev3.RateLimit_Action {
	return &routev3.RateLimit_Action{ActionSpecifier: &routev3.RateLimit_Action_Metadata{Metadata: &routev3.RateLimit_Action_MetaData{
		DescriptorKey: descriptorKey,
		MetadataKey: &metadatav3.MetadataKey{
			Key:  MetadataNamespace,
			Path: []*metadatav3.MetadataKey_PathSegment{{Segment: &metadatav3.MetadataKey_PathSegment_Key{Key: metaKey}}},
		},
		DefaultValue: def,
		Source:       routev3.RateLimit_Action_MetaData_DYNAMIC,
	}}}
}

// cidrGrouping is one limit's address groups: a listener ip_tagging filter
// tags each client with its group in header.
type cidrGrouping struct {
	header string
	groups map[string][]string
}

func groupingOf(lim model.RateLimit) cidrGrouping {
	names := make([]string, 0, len(lim.SourceCIDRs))
	for n := range lim.SourceCIDRs {
		names = append(names, n)
	}
	sort.Strings(names)
	h := sha256.New()
	for _, n := range names {
		fmt.Fprintf(h, "%s=%s;", n, strings.Join(lim.SourceCIDRs[n], ","))
	}
	return cidrGrouping{header: "x-tollgate-source-cidr-" + hex.EncodeToString(h.Sum(nil))[:12], groups: lim.SourceCIDRs}
}

// RateLimitConfigOf is what the gateway's rate limit service counts: one
// descriptor tree per limit in use on the gateway, under the gateway's
// domain. Nil when the gateway has none.
func RateLimitConfigOf(g *model.GatewayConfig) *rlsconfv3.RateLimitConfig {
	if g.RateLimitService == nil {
		return nil
	}
	limits := map[string]model.RateLimit{}
	for _, l := range g.Listeners {
		listenerRateLimits(g, l, func(_ *model.RouteConfig, _ *model.RuleConfig, e *model.EffectiveRateLimits) {
			for _, lim := range e.Limits {
				limits[LimitID(lim)] = lim
			}
		})
	}
	ids := make([]string, 0, len(limits))
	for id := range limits {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	domain := RateLimitDomain(g)
	out := &rlsconfv3.RateLimitConfig{Name: domain, Domain: domain}
	for _, id := range ids {
		out.Descriptors = append(out.Descriptors, limitDescriptor(limits[id]))
	}
	return out
}

func limitDescriptor(lim model.RateLimit) *rlsconfv3.RateLimitDescriptor {
	root := &rlsconfv3.RateLimitDescriptor{Key: DescriptorLimit, Value: LimitID(lim)}
	leaf := root
	for _, k := range lim.Keys {
		d := &rlsconfv3.RateLimitDescriptor{Key: descriptorKeyOf(k)}
		leaf.Descriptors = []*rlsconfv3.RateLimitDescriptor{d}
		leaf = d
	}
	leaf.RateLimit = &rlsconfv3.RateLimitPolicy{
		Name:            LimitID(lim),
		Unit:            rlsUnit(lim.Unit),
		RequestsPerUnit: uint32(lim.Amount),
	}
	leaf.ShadowMode = lim.Shadow
	return root
}

func descriptorKeyOf(k string) string {
	switch k {
	case model.KeySPIFFEID:
		return DescriptorSPIFFEID
	case model.KeyNamespace:
		return DescriptorNamespace
	case model.KeyServiceAccount:
		return DescriptorServiceAccount
	case model.KeySourceCIDR:
		return DescriptorSourceCIDR
	case model.KeyModel:
		return DescriptorModel
	case model.KeyRoute:
		return DescriptorRoute
	case model.KeyBackend:
		return DescriptorBackend
	}
	panic("unknown rate limit key " + k)
}

func rlsUnit(u string) rlsconfv3.RateLimitUnit {
	switch u {
	case model.PerSecond:
		return rlsconfv3.RateLimitUnit_SECOND
	case model.PerMinute:
		return rlsconfv3.RateLimitUnit_MINUTE
	case model.PerHour:
		return rlsconfv3.RateLimitUnit_HOUR
	case model.PerDay:
		return rlsconfv3.RateLimitUnit_DAY
	}
	panic("unknown rate limit unit " + u)
}

// ValidateRateLimitConfig applies the checks envoyproxy/ratelimit's loader
// makes before it accepts a configuration (rateLimitConfigImpl.loadConfig
// and rateLimitDescriptor.loadDescriptors in src/config/config_impl.go):
// the ratelimit module's protos carry no validation rules of their own.
// A configuration that fails them would be NACKed by every ratelimit
// instance of the gateway.
func ValidateRateLimitConfig(c *rlsconfv3.RateLimitConfig) error {
	if c.GetDomain() == "" {
		return fmt.Errorf("rate limit config %q: empty domain", c.GetName())
	}
	var walk func(prefix string, ds []*rlsconfv3.RateLimitDescriptor) error
	walk = func(prefix string, ds []*rlsconfv3.RateLimitDescriptor) error {
		seen := map[string]bool{}
		for _, d := range ds {
			if d.GetKey() == "" {
				return fmt.Errorf("%s: descriptor with an empty key", prefix)
			}
			k := d.GetKey()
			if d.GetValue() != "" {
				k += "_" + d.GetValue()
				if strings.HasSuffix(d.GetValue(), "*") {
					return fmt.Errorf("%s%s: a value ending in * is a wildcard at the rate limit service", prefix, k)
				}
			}
			if seen[k] {
				return fmt.Errorf("duplicate descriptor composite key %q", prefix+k)
			}
			seen[k] = true
			if rl := d.GetRateLimit(); rl != nil {
				switch {
				case rl.GetUnlimited() && rl.GetUnit() != rlsconfv3.RateLimitUnit_UNKNOWN:
					return fmt.Errorf("%s%s: a unit on an unlimited rate limit", prefix, k)
				case !rl.GetUnlimited() && rl.GetUnit() == rlsconfv3.RateLimitUnit_UNKNOWN:
					return fmt.Errorf("%s%s: a rate limit without a unit", prefix, k)
				}
			}
			if err := walk(prefix+k+".", d.GetDescriptors()); err != nil {
				return err
			}
		}
		return nil
	}
	return walk(c.GetDomain()+".", c.GetDescriptors())
}

// usageLimitPolicy names the first policy, by identity, whose input or
// total token limit reaches the listener, else its ObservabilityPolicy,
// with the setting that reads streamed usage.
func usageLimitPolicy(g *model.GatewayConfig, l *model.ListenerConfig) (object, setting string) {
	var names []string
	listenerRateLimits(g, l, func(_ *model.RouteConfig, _ *model.RuleConfig, e *model.EffectiveRateLimits) {
		for _, lim := range e.Limits {
			if lim.Counts == model.CountInputTokens || lim.Counts == model.CountTotalTokens {
				names = append(names, lim.Policy.String())
			}
		}
	})
	sort.Strings(names)
	if len(names) > 0 {
		return names[0], "tokens.input and tokens.total"
	}
	if o := l.Observability; o != nil {
		return o.Policy.String(), "the policy (token attribution of streamed responses)"
	}
	return "", ""
}
