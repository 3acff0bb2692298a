// Package externalauth is the ExternalAuth policy: which clients may use a
// route, by their verified SPIFFE identity or their address, and an
// optional external authorization service.
package externalauth

import (
	"fmt"
	"net"
	"regexp"
	"strings"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/policies/policy"
)

// KindName is the YAML kind.
const KindName = "ExternalAuth"

// Kind registers the policy.
var Kind = policy.Kind{
	Name:        KindName,
	New:         func() model.Object { return &ExternalAuth{} },
	Scopes:      []string{model.KindHTTPRoute},
	ScopeReason: "who may call is decided per route, where the workload's request is matched; a gateway-wide rule would also gate routes it was not written for, and a backend is only known after the route is chosen",
	Lower:       lower,
}

// ExternalAuth admits or refuses the clients of the routes it targets.
type ExternalAuth struct {
	model.Base `yaml:",inline"`
	Spec       Spec `yaml:"spec"`
}

// Spec of an ExternalAuth.
type Spec struct {
	// TargetRefs are HTTPRoutes.
	TargetRefs []model.TargetRef `yaml:"targetRefs"`
	// Rules admit or refuse clients. Deny rules are checked first: a
	// client that matches one gets 403. Then, if any allow rule exists, a
	// client must match one of them, or it gets 403. No rules: every
	// client is admitted (the service, if set, still decides).
	Rules []Rule `yaml:"rules,omitempty"`
	// Service is an external authorization service asked about every
	// request the rules admit.
	Service *Service `yaml:"service,omitempty"`
}

// Rule is one allow or deny rule.
type Rule struct {
	// Action is Allow or Deny.
	Action string `yaml:"action"`
	// From are the clients the rule matches: any entry may match.
	From []Source `yaml:"from"`
}

// Source is one kind of client: every field that is set must match.
type Source struct {
	// SPIFFEID matches the client certificate's SPIFFE ID as a whole.
	SPIFFEID *SPIFFEID `yaml:"spiffeID,omitempty"`
	// TrustDomain is the ID's trust domain (its host).
	TrustDomain string `yaml:"trustDomain,omitempty"`
	// Namespace and ServiceAccount are read from the ID through the
	// listener's identity pattern (default
	// spiffe://{trustDomain}/ns/{namespace}/sa/{serviceAccount}).
	Namespace      string `yaml:"namespace,omitempty"`
	ServiceAccount string `yaml:"serviceAccount,omitempty"`
	// SourceCIDRs match the client's address as the gateway sees it (the
	// connection's peer); any of them.
	SourceCIDRs []string `yaml:"sourceCIDRs,omitempty"`
}

// SPIFFEID matches a SPIFFE ID; set exactly one field.
type SPIFFEID struct {
	// Exact is the whole ID, e.g. spiffe://corp.example/ns/ml/sa/agent.
	Exact string `yaml:"exact,omitempty"`
	// Prefix matches IDs that start with it; it must end in "/", so that
	// spiffe://corp.example/ns/ml/ does not also match .../ns/ml-test/.
	Prefix string `yaml:"prefix,omitempty"`
	// Pattern is an ID in which "*" stands for exactly one whole path
	// segment (or the trust domain), e.g. spiffe://corp.example/ns/*/sa/agent.
	Pattern string `yaml:"pattern,omitempty"`
}

// Service is an external authorization service (Envoy's ext_authz): set
// grpc or http.
type Service struct {
	// GRPC is a service speaking Envoy's gRPC authorization API
	// (envoy.service.auth.v3.Authorization); its Backend must speak HTTP/2.
	GRPC *GRPCService `yaml:"grpc,omitempty"`
	// HTTP is a service that gets a copy of the request's headers (no
	// body) and admits it with a 2xx.
	HTTP *HTTPService `yaml:"http,omitempty"`
	// Timeout bounds one check (default 1s).
	Timeout *model.Duration `yaml:"timeout,omitempty"`
	// FailOpen admits requests when the service cannot be reached or times
	// out. Default false: such requests get 403.
	FailOpen bool `yaml:"failOpen,omitempty"`
	// Headers are the request headers the service sees (case-insensitive
	// names). Unset: every header for gRPC; for HTTP, Envoy's default of
	// Host, Method, Path, Content-Length and Authorization.
	Headers []string `yaml:"headers,omitempty"`
}

// GRPCService names the Backend of a gRPC authorization service.
type GRPCService struct {
	BackendRef model.LocalRef `yaml:"backendRef"`
}

// HTTPService names the Backend of an HTTP authorization service.
type HTTPService struct {
	BackendRef model.LocalRef `yaml:"backendRef"`
	// PathPrefix is prepended to the request's path in the check request,
	// e.g. /authz.
	PathPrefix string `yaml:"pathPrefix,omitempty"`
}

// Targets implements model.Policy.
func (p *ExternalAuth) Targets() []model.TargetRef { return p.Spec.TargetRefs }

var (
	segmentRE     = regexp.MustCompile(`^` + model.SPIFFESegment + `$`)
	trustDomainRE = regexp.MustCompile(`^[a-z0-9._-]+$`)
	headerNameRE  = regexp.MustCompile(`^[A-Za-z0-9!#$%&'*+.^_|~-]+$`)
)

// Validate implements model.Object.
func (p *ExternalAuth) Validate(v *model.Validator) {
	s := &p.Spec
	model.ValidateTargetRefs(v, s.TargetRefs)
	if len(s.Rules) == 0 && s.Service == nil {
		v.Errorf("spec", "set rules, service or both (an ExternalAuth without either changes nothing)")
	}
	for i, r := range s.Rules {
		path := fmt.Sprintf("spec.rules[%d]", i)
		switch r.Action {
		case model.AccessAllow, model.AccessDeny:
		case "":
			v.Errorf(path+".action", "is required: Allow or Deny")
		default:
			v.Errorf(path+".action", "%q is not supported: use Allow or Deny", r.Action)
		}
		if len(r.From) == 0 {
			v.Errorf(path+".from", "at least one entry is required")
		}
		for j, f := range r.From {
			validateSource(v, fmt.Sprintf("%s.from[%d]", path, j), f)
		}
	}
	if sv := s.Service; sv != nil {
		validateService(v, sv)
	}
}

func validateSource(v *model.Validator, path string, f Source) {
	if f.SPIFFEID == nil && f.TrustDomain == "" && f.Namespace == "" && f.ServiceAccount == "" && f.SourceCIDRs == nil {
		v.Errorf(path, "set at least one of spiffeID, trustDomain, namespace, serviceAccount or sourceCIDRs (an empty entry would match every client)")
	}
	if id := f.SPIFFEID; id != nil {
		validateSPIFFEID(v, path+".spiffeID", id)
	}
	if f.TrustDomain != "" && !trustDomainRE.MatchString(f.TrustDomain) {
		v.Errorf(path+".trustDomain", "%q is not a trust domain: lowercase letters, digits, '.', '-' and '_' only", f.TrustDomain)
	}
	for name, val := range map[string]string{"namespace": f.Namespace, "serviceAccount": f.ServiceAccount} {
		if val != "" && !segmentRE.MatchString(val) {
			v.Errorf(path+"."+name, "%q is not one SPIFFE ID path segment: letters, digits, '.', '-' and '_' only", val)
		}
	}
	if f.SourceCIDRs != nil && len(f.SourceCIDRs) == 0 {
		v.Errorf(path+".sourceCIDRs", "at least one CIDR is required when set")
	}
	for k, c := range f.SourceCIDRs {
		if _, _, err := net.ParseCIDR(c); err != nil {
			v.Errorf(fmt.Sprintf("%s.sourceCIDRs[%d]", path, k), "%q is not a CIDR such as 10.0.0.0/8", c)
		}
	}
}

func validateSPIFFEID(v *model.Validator, path string, id *SPIFFEID) {
	set := 0
	for _, s := range []string{id.Exact, id.Prefix, id.Pattern} {
		if s != "" {
			set++
		}
	}
	if set != 1 {
		v.Errorf(path, "set exactly one of exact, prefix or pattern")
		return
	}
	switch {
	case id.Exact != "":
		if msg := checkID(id.Exact, false); msg != "" {
			v.Errorf(path+".exact", "%q %s", id.Exact, msg)
		}
	case id.Prefix != "":
		if !strings.HasSuffix(id.Prefix, "/") {
			v.Errorf(path+".prefix", "%q must end with / (a prefix matches whole path segments; for one ID use exact)", id.Prefix)
			return
		}
		if msg := checkID(strings.TrimSuffix(id.Prefix, "/"), false); msg != "" {
			v.Errorf(path+".prefix", "%q %s", id.Prefix, msg)
		}
	default:
		if !strings.Contains(id.Pattern, "*") {
			v.Errorf(path+".pattern", "%q has no *: use exact", id.Pattern)
			return
		}
		if msg := checkID(id.Pattern, true); msg != "" {
			v.Errorf(path+".pattern", "%q %s", id.Pattern, msg)
		}
	}
}

// checkID returns why s is not a SPIFFE ID (with "*" segments when
// wildcards), or "".
func checkID(s string, wildcards bool) string {
	rest, ok := strings.CutPrefix(s, "spiffe://")
	if !ok {
		return "is not a SPIFFE ID: it must start with spiffe://"
	}
	segs := strings.Split(rest, "/")
	for i, seg := range segs {
		switch {
		case wildcards && seg == "*":
		case wildcards && strings.Contains(seg, "*"):
			return fmt.Sprintf("has %q: * must be a whole path segment", seg)
		case i == 0 && !trustDomainRE.MatchString(seg):
			return "has no valid trust domain: lowercase letters, digits, '.', '-' and '_' only"
		case i > 0 && seg == "":
			return "has an empty path segment"
		case i > 0 && !segmentRE.MatchString(seg):
			return fmt.Sprintf("has the path segment %q: letters, digits, '.', '-' and '_' only", seg)
		}
	}
	return ""
}

func validateService(v *model.Validator, sv *Service) {
	switch {
	case sv.GRPC == nil && sv.HTTP == nil:
		v.Errorf("spec.service", "set grpc or http")
	case sv.GRPC != nil && sv.HTTP != nil:
		v.Errorf("spec.service", "set grpc or http, not both")
	}
	if sv.GRPC != nil && sv.GRPC.BackendRef.Name == "" {
		v.Errorf("spec.service.grpc.backendRef.name", "is required")
	}
	if sv.HTTP != nil {
		if sv.HTTP.BackendRef.Name == "" {
			v.Errorf("spec.service.http.backendRef.name", "is required")
		}
		if pp := sv.HTTP.PathPrefix; pp != "" && (!strings.HasPrefix(pp, "/") || strings.HasSuffix(pp, "/") || strings.ContainsAny(pp, "?#% ")) {
			v.Errorf("spec.service.http.pathPrefix", "%q must start with /, not end with /, and hold no ?, #, %% or space", pp)
		}
	}
	if t := sv.Timeout; t != nil {
		switch {
		case t.Duration <= 0:
			v.Errorf("spec.service.timeout", "must be positive")
		case t.Duration%1e6 != 0:
			v.Errorf("spec.service.timeout", "must be whole milliseconds")
		}
	}
	seen := map[string]int{}
	for i, h := range sv.Headers {
		p := fmt.Sprintf("spec.service.headers[%d]", i)
		if !headerNameRE.MatchString(h) {
			v.Errorf(p, "%q is not an HTTP header name", h)
			continue
		}
		l := strings.ToLower(h)
		if k, dup := seen[l]; dup {
			v.Errorf(p, "%q is already listed at headers[%d]", h, k)
			continue
		}
		seen[l] = i
	}
}

func lower(ctx policy.Context, pol model.Policy, target model.Ref) {
	p := pol.(*ExternalAuth)
	r := ctx.Index.Routes[target]
	ref := model.RefOf(p)
	e := &model.ExternalAuthSettings{Policy: ref}
	for i, rule := range p.Spec.Rules {
		ar := model.AccessRule{Index: i, Action: rule.Action}
		for j, f := range rule.From {
			src := model.AccessSource{
				TrustDomain: f.TrustDomain, Namespace: f.Namespace, ServiceAccount: f.ServiceAccount,
				SourceCIDRs: f.SourceCIDRs,
			}
			if id := f.SPIFFEID; id != nil {
				src.SPIFFEID = &model.SPIFFEIDMatch{Exact: id.Exact, Prefix: id.Prefix, Pattern: id.Pattern}
			}
			if src.MatchesIdentity() {
				checkListeners(ctx, target, fmt.Sprintf("spec.rules[%d].from[%d]", i, j))
			}
			ar.From = append(ar.From, src)
		}
		e.Rules = append(e.Rules, ar)
	}
	if sv := p.Spec.Service; sv != nil {
		for _, g := range ctx.Config.Gateways {
			for _, l := range g.Listeners {
				if g.Parent != nil && hasRoute(l, target) {
					ctx.Validator.Errorf("spec.service", "%s is a Parent-mode gateway, which cannot ask an authorization service yet: attach the route to its parent, or use rules only", g.Ref)
					return
				}
			}
		}
		e.Service = lowerService(ctx, ref, sv)
		if e.Service == nil {
			return
		}
	}
	r.ExternalAuth = e
}

func lowerService(ctx policy.Context, ref model.Ref, sv *Service) *model.AuthService {
	as := &model.AuthService{Timeout: model.DefaultAuthTimeout, FailOpen: sv.FailOpen}
	if sv.Timeout != nil {
		as.Timeout = sv.Timeout.Duration
	}
	for _, h := range sv.Headers {
		as.Headers = append(as.Headers, strings.ToLower(h))
	}
	var br model.LocalRef
	path := "spec.service.http.backendRef"
	if sv.GRPC != nil {
		as.GRPC, br, path = true, sv.GRPC.BackendRef, "spec.service.grpc.backendRef"
	} else {
		br, as.PathPrefix = sv.HTTP.BackendRef, sv.HTTP.PathPrefix
	}
	bref := br.Resolve(model.KindBackend, ref.Namespace)
	b := ctx.Index.Backends[bref]
	if b == nil {
		if !ctx.Config.Invalid[bref] {
			ctx.Validator.Errorf(path+".name", "%s does not exist", bref)
		}
		return nil
	}
	if as.GRPC && b.Protocol == model.ProtocolHTTP1 {
		ctx.Validator.Errorf(path+".name", "%s speaks HTTP/1.1, but a gRPC authorization service needs HTTP/2: set its protocol to HTTP/2, or use http", bref)
		return nil
	}
	as.Backend = b
	return as
}

// checkListeners refuses an identity match on a route served by a listener
// that does not verify client certificates: there the client has no
// identity, so an allow rule would refuse everyone and, worse, a deny rule
// would refuse no one.
func checkListeners(ctx policy.Context, route model.Ref, path string) {
	for _, g := range ctx.Config.Gateways {
		for _, l := range g.Listeners {
			if !hasRoute(l, route) {
				continue
			}
			if ok, why := model.VerifiesClients(l); !ok {
				ctx.Validator.Errorf(path, "matches the client's SPIFFE ID, but listener %q of %s %s: match sourceCIDRs here, or serve the route on an HTTPS listener with clientValidation", l.Name, g.Ref, why)
			}
		}
	}
}

func hasRoute(l *model.ListenerConfig, route model.Ref) bool {
	for _, r := range l.Routes {
		if r.Ref == route {
			return true
		}
	}
	return false
}
