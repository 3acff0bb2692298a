package model

// Explaining a route: its effective settings, merged over every scope the
// way lowering and translation merge them, each with the object and field
// that set it. The policy kinds live outside this package (policies/*),
// so the explanation reads what lowering recorded in the effective
// settings (their Policy refs, GuardRailSettings.Sources) and, for the
// exact field, the policy object's own Source (which fields were written,
// at which line) and its spec, read by YAML field name: it knows the
// field paths of each kind, not its Go types.
//
// No secret value is ever read into an explanation: credentials, keys and
// CA or CRL material are described by where they come from (a file, an
// environment variable), never by their bytes.

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"
)

// RouteExplanation is the effective configuration of one HTTPRoute and
// where each part of it comes from.
type RouteExplanation struct {
	// Route is the route's identity, as Ref.String writes it.
	Route     string `json:"route"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// File and Line are where the route is defined (empty for an object
	// written through the API).
	File string `json:"file,omitempty"`
	Line int    `json:"line,omitempty"`
	// Hostnames the route answers; empty means any.
	Hostnames []string `json:"hostnames,omitempty"`
	// Parents are the listeners the route is attached to.
	Parents []ExplainedParent `json:"parents"`
	// Rules are the route's rules, in spec order.
	Rules []ExplainedRule `json:"rules"`
	// Settings are the effective settings, by scope: the route's
	// gateways, the route, each rule, each backend.
	Settings []ExplainedSetting `json:"settings"`
	// Overridden are settings an object set that do not apply: a more
	// specific scope replaced them, or their policy lost a conflict.
	Overridden []ExplainedSetting `json:"overridden,omitempty"`
	// Conditions are the status conditions of the route, its gateways,
	// its backends and the policies attached to them.
	Conditions []Condition `json:"conditions,omitempty"`
}

// ExplainedParent is one listener a route is attached to.
type ExplainedParent struct {
	Gateway  string `json:"gateway"`
	Listener string `json:"listener"`
	Port     uint32 `json:"port"`
	Protocol string `json:"protocol"`
	// Mode is the gateway's mode, Endpoint or Parent.
	Mode string `json:"mode"`
	// Parent is, in Parent mode, the gateway every request is forwarded to.
	Parent string `json:"parent,omitempty"`
	// Field is the route's parentRef that attaches it.
	Field string `json:"field"`
	Line  int    `json:"line,omitempty"`
}

// ExplainedRule is one rule of a route.
type ExplainedRule struct {
	Index int    `json:"index"`
	Name  string `json:"name,omitempty"`
	Field string `json:"field"`
	Line  int    `json:"line,omitempty"`
	// Matches are alternatives (any may match); each lists conditions
	// that must all hold. Empty: every request.
	Matches []string `json:"matches,omitempty"`
	// ClientSchema is the API the rule's clients speak (that of its
	// primary backends).
	ClientSchema string             `json:"clientSchema,omitempty"`
	Backends     []ExplainedBackend `json:"backends"`
}

// ExplainedBackend is one backendRef of a rule.
type ExplainedBackend struct {
	Backend  string `json:"backend"`
	Weight   uint32 `json:"weight"`
	Priority uint32 `json:"priority"`
	// Role is "primary" for the backends that share the traffic, or
	// "fail-over N" for the N-th priority after them.
	Role string `json:"role"`
	// Address is hostname:port, or the static or verified addresses.
	Address string `json:"address"`
	Schema  string `json:"schema"`
	// Translated is set when the rule's clients speak another schema:
	// "openai → anthropic".
	Translated string `json:"translated,omitempty"`
	// Unavailable says why the backend is not served.
	Unavailable string `json:"unavailable,omitempty"`
	// Refused lists the gateways' region refusals of the backend.
	Refused []string `json:"refused,omitempty"`
	Field   string   `json:"field"`
	Line    int      `json:"line,omitempty"`
}

// ExplainedSetting is one effective setting and its origin.
type ExplainedSetting struct {
	// Scope is where the setting applies: "gateway Gateway/x", "route",
	// "rule[0]" or "backend Backend/x"; with " on Gateway/x" appended when
	// the route's gateways disagree.
	Scope string `json:"scope"`
	// Setting names it, e.g. retry.numRetries or tls.caCertificates.
	Setting string `json:"setting"`
	// Value is the effective value; secrets are described by their
	// source, never shown.
	Value any `json:"value"`
	// From is the object that set it (Kind/name, Kind/namespace/name),
	// or "default" for tollgate's built-in default.
	From string `json:"from"`
	// Field is the field path in From that set it.
	Field string `json:"field,omitempty"`
	File  string `json:"file,omitempty"`
	Line  int    `json:"line,omitempty"`
	// Note explains a derived or defaulted value.
	Note string `json:"note,omitempty"`
	// OverriddenBy, on an overridden setting, names what replaced it.
	OverriddenBy string `json:"overriddenBy,omitempty"`
}

// FromDefault is ExplainedSetting.From for tollgate's built-in defaults.
const FromDefault = "default"

// ErrRouteNotFound is what ExplainRoute's error wraps when the route is
// not in the config (errors.Is).
var ErrRouteNotFound = errors.New("route not found")

type routeNotFound struct{ msg string }

func (e *routeNotFound) Error() string { return e.msg }
func (e *routeNotFound) Unwrap() error { return ErrRouteNotFound }

// Defaults that live in translate (which imports this package); the
// explanation test of cmd/tollgate checks that they agree.
const (
	explainDefaultNumRetries     = 2
	explainDefaultBufferLimit    = 32 << 20
	explainDefaultConnectTimeout = 10 * time.Second
	explainEnvoyStreamIdle       = 5 * time.Minute
	explainDefaultMinTLSVersion  = "TLSv1_2"
)

var explainDefaultRetriableStatusCodes = []uint32{429}

// explainedRouteListLimit is how many routes a not-found error lists.
const explainedRouteListLimit = 12

// ExplainRoute explains the route ref of cfg. Ref's kind defaults to
// HTTPRoute and its namespace to DefaultNamespace.
func ExplainRoute(cfg *Config, ref Ref) (*RouteExplanation, error) {
	if cfg == nil {
		return nil, errors.New("no configuration is being served")
	}
	if ref.Kind == "" {
		ref.Kind = KindHTTPRoute
	}
	if ref.Namespace == "" {
		ref.Namespace = DefaultNamespace
	}
	if ref.Kind != KindHTTPRoute {
		return nil, fmt.Errorf("%s: only an HTTPRoute can be explained", ref)
	}
	x := &explainer{cfg: cfg, objs: map[Ref]Object{}}
	for _, o := range cfg.Objects {
		x.objs[RefOf(o)] = o
	}
	for _, g := range cfg.Gateways {
		for _, l := range g.Listeners {
			for _, r := range l.Routes {
				if r.Ref != ref {
					continue
				}
				x.route = r
				if len(x.gws) == 0 || x.gws[len(x.gws)-1] != g {
					x.gws = append(x.gws, g)
				}
			}
		}
	}
	if x.route == nil {
		return nil, x.notFound(ref)
	}
	return x.explain(), nil
}

func (x *explainer) notFound(ref Ref) error {
	if _, ok := x.objs[ref]; ok {
		return &routeNotFound{fmt.Sprintf("%s is not attached to any gateway listener", ref)}
	}
	var routes, sameNamespace []string
	for _, o := range x.cfg.Objects {
		if r := RefOf(o); r.Kind == KindHTTPRoute {
			routes = append(routes, r.String())
			if r.Namespace == ref.Namespace {
				sameNamespace = append(sameNamespace, r.String())
			}
		}
	}
	switch {
	case len(routes) == 0:
		return &routeNotFound{fmt.Sprintf("%s does not exist: there is no HTTPRoute", ref)}
	case len(routes) <= explainedRouteListLimit:
		return &routeNotFound{fmt.Sprintf("%s does not exist; the HTTPRoutes are: %s", ref, strings.Join(routes, ", "))}
	case len(sameNamespace) > 0 && len(sameNamespace) <= explainedRouteListLimit:
		return &routeNotFound{fmt.Sprintf("%s does not exist; the HTTPRoutes of namespace %s are: %s (list every namespace's with tollgate get httproutes -A)",
			ref, ref.Namespace, strings.Join(sameNamespace, ", "))}
	}
	return &routeNotFound{fmt.Sprintf("%s does not exist (there are %d HTTPRoutes: list them with tollgate get httproutes -A)", ref, len(routes))}
}

type explainer struct {
	cfg      *Config
	objs     map[Ref]Object
	route    *RouteConfig
	gws      []*GatewayConfig
	backends []*BackendConfig
	out      settingList
}

type settingList []ExplainedSetting

func (l *settingList) add(scope, setting string, value any, s ExplainedSetting) {
	s.Scope, s.Setting, s.Value = scope, setting, value
	*l = append(*l, s)
}

// lost records a setting that does not apply, replaced by by.
func (l *settingList) lost(scope, setting string, value any, s ExplainedSetting, by string) {
	s.OverriddenBy = by
	l.add(scope, setting, value, s)
}

func (x *explainer) explain() *RouteExplanation {
	rc := x.route
	src := rc.Route.GetSource()
	e := &RouteExplanation{
		Route: rc.Ref.String(), Namespace: rc.Ref.Namespace, Name: rc.Ref.Name,
		File: src.File, Hostnames: rc.Hostnames,
		Parents: []ExplainedParent{}, Rules: []ExplainedRule{},
	}
	if src.File != "" {
		e.Line = src.Line
	}
	seen := map[Ref]bool{}
	for _, rule := range rc.Rules {
		for _, wb := range rule.Backends {
			if !seen[wb.Backend.Ref] {
				seen[wb.Backend.Ref] = true
				x.backends = append(x.backends, wb.Backend)
			}
		}
	}
	sort.Slice(x.backends, func(i, j int) bool { return x.backends[i].Ref.Less(x.backends[j].Ref) })

	e.Parents = x.parents()
	for _, rule := range rc.Rules {
		e.Rules = append(e.Rules, x.rule(rule))
	}

	for _, g := range x.gws {
		x.gateway(g)
	}
	x.perGateway("route", func(g *GatewayConfig, scope string, l *settingList) {
		x.retry(g, scope, l)
		x.guardRails(g, scope, l)
	})
	x.externalAuth()
	x.processors()
	for _, rule := range rc.Rules {
		scope := fmt.Sprintf("rule[%d]", rule.Index)
		x.ruleTimeout(scope, rule)
		x.ruleStreamIdle(scope, rule)
		x.ruleSources(scope, rule)
		x.perGateway(scope, func(g *GatewayConfig, scope string, l *settingList) {
			x.rateLimits(g, scope, rule, l)
			if rf := g.ChildRegionRefusal(rule); rf != nil {
				l.add(scope, "regionRefused", "answers 403: "+rf.Describe(), withNote(x.src(rf.Policy, "spec.regions"),
					g.Ref.String()+" is in Parent mode and cannot choose the backend its parent picks, so it refuses the whole rule"))
			}
		})
	}
	for _, b := range x.backends {
		x.backend(b)
	}
	x.conflicts()

	e.Settings = []ExplainedSetting{}
	for _, s := range x.out {
		if s.OverriddenBy != "" {
			e.Overridden = append(e.Overridden, s)
		} else {
			e.Settings = append(e.Settings, s)
		}
	}
	e.Conditions = x.conditions()
	return e
}

// perGateway runs fn for each of the route's gateways. With more than one,
// what every gateway says is kept once, at scope; the rest is qualified
// with the gateway it applies on.
func (x *explainer) perGateway(scope string, fn func(g *GatewayConfig, scope string, l *settingList)) {
	if len(x.gws) == 1 {
		fn(x.gws[0], scope, &x.out)
		return
	}
	key := func(s ExplainedSetting) string {
		b, _ := json.Marshal(s)
		return string(b)
	}
	per := make([]settingList, len(x.gws))
	count := map[string]int{}
	for i, g := range x.gws {
		fn(g, scope, &per[i])
		once := map[string]bool{}
		for _, s := range per[i] {
			if k := key(s); !once[k] {
				once[k] = true
				count[k]++
			}
		}
	}
	emitted := map[string]bool{}
	for i, g := range x.gws {
		for _, s := range per[i] {
			k := key(s)
			if count[k] == len(x.gws) {
				if !emitted[k] {
					emitted[k] = true
					x.out = append(x.out, s)
				}
				continue
			}
			s.Scope = scope + " on " + g.Ref.String()
			x.out = append(x.out, s)
		}
	}
}

// ---- where a value comes from ------------------------------------------------

// src attributes a value to the field path of the object ref.
func (x *explainer) src(ref Ref, field string) ExplainedSetting {
	s := ExplainedSetting{From: ref.String(), Field: field}
	if o := x.objs[ref]; o != nil {
		so := o.GetSource()
		s.File = so.File
		if so.File != "" {
			s.Line = so.LineOf(field)
		}
	}
	return s
}

func byDefault(note string) ExplainedSetting {
	return ExplainedSetting{From: FromDefault, Note: note}
}

func withNote(s ExplainedSetting, note string) ExplainedSetting {
	s.Note = note
	return s
}

// wrote reports whether the object ref sets the field path: written in its
// source or, for an object built in code (no recorded fields), non-zero.
func (x *explainer) wrote(ref Ref, path string) bool {
	o := x.objs[ref]
	if o == nil {
		return false
	}
	if f := o.GetSource().Fields; len(f) > 0 {
		_, ok := f[path]
		return ok
	}
	v, ok := specValue(o, path)
	return ok && !v.IsZero()
}

// pick attributes a field a policy may leave to a default: to the
// policy's field when it wrote it, else to the default.
func (x *explainer) pick(ref Ref, path, defaultNote string) ExplainedSetting {
	if x.wrote(ref, path) {
		return x.src(ref, path)
	}
	return byDefault(defaultNote)
}

// specValue is the value at path (YAML field names, [i] indexes, map keys)
// in obj.
func specValue(obj any, path string) (reflect.Value, bool) {
	v := reflect.ValueOf(obj)
	for _, seg := range splitFieldPath(path) {
		for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
			if v.IsNil() {
				return reflect.Value{}, false
			}
			v = v.Elem()
		}
		switch {
		case seg.index >= 0:
			if v.Kind() != reflect.Slice || seg.index >= v.Len() {
				return reflect.Value{}, false
			}
			v = v.Index(seg.index)
		case v.Kind() == reflect.Struct:
			f, ok := fieldsOf(v.Type())[seg.name]
			if !ok {
				return reflect.Value{}, false
			}
			v = v.FieldByIndex(f.index)
		case v.Kind() == reflect.Map && v.Type().Key().Kind() == reflect.String:
			mv := v.MapIndex(reflect.ValueOf(seg.name).Convert(v.Type().Key()))
			if !mv.IsValid() {
				return reflect.Value{}, false
			}
			v = mv
		default:
			return reflect.Value{}, false
		}
	}
	return v, v.IsValid()
}

type pathSegment struct {
	name  string
	index int // -1 for a name
}

func splitFieldPath(path string) []pathSegment {
	var out []pathSegment
	for _, part := range strings.Split(path, ".") {
		name, rest, _ := strings.Cut(part, "[")
		if name != "" {
			out = append(out, pathSegment{name: name, index: -1})
		}
		for rest != "" {
			num, after, _ := strings.Cut(rest, "]")
			i, err := strconv.Atoi(num)
			if err != nil {
				i = 1 << 30 // matches nothing
			}
			out = append(out, pathSegment{index: i})
			_, rest, _ = strings.Cut(after, "[")
		}
	}
	return out
}

var secretSourceType = reflect.TypeOf(SecretSource{})

// source describes the SecretSource at path of the object ref ("file
// secrets/openai.key"), or says the value is set and hidden.
func (x *explainer) source(ref Ref, path string) string {
	if o := x.objs[ref]; o != nil {
		if v, ok := specValue(o, path); ok {
			for v.Kind() == reflect.Pointer && !v.IsNil() {
				v = v.Elem()
			}
			if v.Type() == secretSourceType {
				return describeSource(v.Interface().(SecretSource))
			}
		}
	}
	return "(set, value hidden)"
}

func describeSource(s SecretSource) string {
	if s.Env != "" {
		return "environment variable " + s.Env
	}
	return "file " + s.File
}

// winner is the policy of kind that applies to target: the first by
// identity (as lowering claims targets), or false.
func (x *explainer) winner(kind string, target Ref) (Ref, bool) {
	for _, o := range x.cfg.Objects {
		p, ok := o.(Policy)
		if !ok || o.GetTypeMeta().Kind != kind {
			continue
		}
		pref := RefOf(o)
		for _, t := range p.Targets() {
			if t.Ref(pref.Namespace) == target {
				return pref, true
			}
		}
	}
	return Ref{}, false
}

// ---- route, parents, rules ------------------------------------------------------

func (x *explainer) parents() []ExplainedParent {
	rc := x.route
	out := []ExplainedParent{}
	src := rc.Route.GetSource()
	for i, p := range rc.Route.Spec.ParentRefs {
		gref := LocalRef{Name: p.Name, Namespace: p.Namespace}.Resolve(KindGateway, rc.Ref.Namespace)
		var g *GatewayConfig
		for _, c := range x.gws {
			if c.Ref == gref {
				g = c
			}
		}
		if g == nil {
			continue
		}
		field := fmt.Sprintf("spec.parentRefs[%d]", i)
		for _, l := range g.Listeners {
			if p.SectionName != "" && p.SectionName != l.Name {
				continue
			}
			ep := ExplainedParent{Gateway: g.Ref.String(), Listener: l.Name, Port: l.Port, Protocol: l.Protocol, Mode: ModeEndpoint, Field: field}
			if g.Gateway.Spec.Mode != "" {
				ep.Mode = g.Gateway.Spec.Mode
			}
			if g.Parent != nil {
				ep.Parent = g.Parent.Gateway.Ref.String()
			}
			if src.File != "" {
				ep.Line = src.LineOf(field)
			}
			out = append(out, ep)
		}
	}
	return out
}

func (x *explainer) rule(rule *RuleConfig) ExplainedRule {
	rc := x.route
	field := fmt.Sprintf("spec.rules[%d]", rule.Index)
	er := ExplainedRule{Index: rule.Index, Name: rule.Name, Field: field, Backends: []ExplainedBackend{}}
	if src := rc.Route.GetSource(); src.File != "" {
		er.Line = src.LineOf(field)
	}
	for _, m := range rule.Matches {
		er.Matches = append(er.Matches, describeMatch(m))
	}
	client, ok := rule.ClientSchema()
	if ok {
		er.ClientSchema = client
	}
	primary := uint32(0)
	if ps := rule.primaryBackends(); len(ps) > 0 {
		primary = ps[0].Priority
	}
	var prios []uint32
	for _, wb := range rule.Backends {
		if wb.Priority > primary && !containsUint(prios, wb.Priority) {
			prios = append(prios, wb.Priority)
		}
	}
	sort.Slice(prios, func(i, j int) bool { return prios[i] < prios[j] })
	for _, wb := range rule.Backends {
		b := wb.Backend
		eb := ExplainedBackend{Backend: b.Ref.String(), Weight: wb.Weight, Priority: wb.Priority, Schema: b.Schema, Address: backendAddress(b), Unavailable: b.Unavailable}
		switch {
		case wb.Priority == primary:
			eb.Role = "primary"
		case wb.Priority < primary:
			eb.Role = "standby (its priority has no weight)"
		default:
			for i, p := range prios {
				if p == wb.Priority {
					eb.Role = fmt.Sprintf("fail-over %d", i+1)
				}
			}
		}
		if ok && b.Schema != client {
			eb.Translated = client + " → " + b.Schema
		}
		for _, g := range x.gws {
			if rf := g.RegionRefusalOf(b); rf != nil {
				eb.Refused = append(eb.Refused, rf.Describe())
			}
		}
		eb.Field = x.cfg.backendRefPath(rc, rule, b)
		if src := rc.Route.GetSource(); src.File != "" {
			eb.Line = src.LineOf(eb.Field)
		}
		er.Backends = append(er.Backends, eb)
	}
	return er
}

func containsUint(list []uint32, v uint32) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

func backendAddress(b *BackendConfig) string {
	if len(b.Addresses) > 0 {
		parts := make([]string, len(b.Addresses))
		for i, a := range b.Addresses {
			parts[i] = a.String()
		}
		return strings.Join(parts, ", ")
	}
	return fmt.Sprintf("%s:%d", b.Hostname, b.Port)
}

func describeMatch(m RouteMatch) string {
	var parts []string
	if p := m.Path; p != nil {
		t := p.Type
		if t == "" {
			t = MatchPathPrefix
		}
		parts = append(parts, fmt.Sprintf("path %s %s", t, p.Value))
	}
	if m.Method != "" {
		parts = append(parts, "method "+m.Method)
	}
	for _, h := range m.Headers {
		parts = append(parts, "header "+describeValueMatch(h))
	}
	for _, q := range m.QueryParams {
		parts = append(parts, "query "+describeValueMatch(q))
	}
	if mm := m.Model; mm != nil {
		parts = append(parts, "model "+describeModel(*mm))
	}
	if len(parts) == 0 {
		return "every request"
	}
	return strings.Join(parts, " and ")
}

func describeValueMatch(v ValueMatch) string {
	if v.Type == MatchRegularExpression {
		return fmt.Sprintf("%s ~ %s", v.Name, v.Value)
	}
	return fmt.Sprintf("%s = %s", v.Name, v.Value)
}

func describeModel(m ModelMatch) string {
	t := m.Type
	if t == "" {
		t = MatchExact
	}
	return t + " " + m.Value
}

func describeModels(ms []ModelMatch) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = describeModel(m)
	}
	return out
}

// ---- gateway scope -----------------------------------------------------------

func (x *explainer) gateway(g *GatewayConfig) {
	scope := "gateway " + g.Ref.String()
	l := &x.out
	if hop := g.Parent; hop != nil {
		v := fmt.Sprintf("forwards every request to %s (listener %s, port %d", hop.Gateway.Ref, hop.Listener.Name, hop.Port)
		switch t := hop.TLS; {
		case t == nil:
			v += ", plain HTTP)"
		case t.SPIFFEID != "":
			v += ", mutual TLS with SPIFFE, parent " + t.SPIFFEID + ")"
		case t.CertificateFile != "":
			v += ", mutual TLS)"
		default:
			v += ", TLS)"
		}
		l.add(scope, "parent", v, withNote(x.src(g.Ref, "spec.parentRef"), "the parent applies its own routing, credentials, TLS, guard rails and fail-over"))
	}
	var obs *ObservabilitySettings
	for i, lc := range g.Listeners {
		if !hasRoute(lc, x.route.Ref) {
			continue
		}
		obs = lc.Observability
		t := lc.Listener.TLS
		if t == nil {
			continue
		}
		path := fmt.Sprintf("spec.listeners[%d].tls", i)
		name := "listener." + lc.Name
		switch {
		case t.SPIFFE != nil:
			svid := t.SPIFFE.SVIDName
			if svid == "" {
				svid = SPIREDefaultSVIDName
			}
			l.add(scope, name+".certificate", "SPIFFE SVID "+svid+" from each Envoy's SPIRE agent", x.src(g.Ref, path+".spiffe"))
		case t.Certificate != nil:
			v := "certificate " + describeSource(*t.Certificate)
			if t.PrivateKey != nil {
				v += ", private key " + describeSource(*t.PrivateKey)
			}
			l.add(scope, name+".certificate", v, x.src(g.Ref, path+".certificate"))
		}
		if c := t.ClientValidation; c != nil {
			mode := c.Mode
			if mode == "" {
				mode = ClientRequire
			}
			v := mode + " client certificates"
			switch {
			case c.CACertificates != nil:
				v += " from the CAs of " + describeSource(*c.CACertificates)
			case c.SPIFFE != nil:
				v += " of SPIFFE trust domains " + strings.Join(c.SPIFFE.TrustDomains, ", ")
			}
			l.add(scope, name+".clientValidation", v, x.src(g.Ref, path+".clientValidation"))
			if c.IdentityPattern != "" {
				l.add(scope, name+".identityPattern", c.IdentityPattern, x.src(g.Ref, path+".clientValidation.identityPattern"))
			} else {
				l.add(scope, name+".identityPattern", DefaultIdentityPattern, byDefault(""))
			}
		}
	}
	x.observability(scope, obs)
	if a := g.RegionAllowList; a != nil {
		v := strings.Join(a.Regions, ", ")
		if a.AllowUnlabelled {
			v += " (and backends without a region)"
		}
		l.add(scope, "regionAllowList", v, x.src(a.Policy, "spec.regions"))
	}
	if svc := g.RateLimitService; svc != nil {
		p := svc.Policy
		l.add(scope, "rateLimitService", svc.Backend.Ref.String(), x.src(p, "spec.service.backendRef"))
		l.add(scope, "rateLimitService.timeout", fmtDuration(svc.Timeout), x.pick(p, "spec.service.timeout", ""))
		l.add(scope, "rateLimitService.failOpen.requests", svc.FailOpenRequests, x.pick(p, "spec.service.failOpen.requests", "admit requests whose request limits cannot be checked"))
		l.add(scope, "rateLimitService.failOpen.tokens", svc.FailOpenTokens, x.pick(p, "spec.service.failOpen.tokens", "refuse requests whose token budgets cannot be checked"))
	}
}

func hasRoute(l *ListenerConfig, route Ref) bool {
	for _, r := range l.Routes {
		if r.Ref == route {
			return true
		}
	}
	return false
}

func (x *explainer) observability(scope string, o *ObservabilitySettings) {
	l := &x.out
	if o == nil {
		l.add(scope, "observability.accessLog", PathStdout, byDefault("no ObservabilityPolicy targets the gateway"))
		return
	}
	p := o.Policy
	if !o.HasAccessLog() {
		l.add(scope, "observability.accessLog", PathStdout, byDefault("the policy names no access log of its own"))
	}
	if j := o.JSONLog; j != nil {
		l.add(scope, "observability.accessLog.json", j.Path, x.src(p, "spec.accessLog.json.path"))
	}
	if ol := o.OpenTelemetryLog; ol != nil {
		l.add(scope, "observability.accessLog.openTelemetry", fmt.Sprintf("%s, log name %s", ol.Collector.Ref, ol.LogName), x.src(p, "spec.accessLog.openTelemetry"))
	}
	if o.Metrics {
		l.add(scope, "observability.metrics", true, x.src(p, "spec.metrics.enabled"))
	}
	if t := o.Tracing; t != nil {
		l.add(scope, "observability.tracing", fmt.Sprintf("%s, %v%% sampled, service name %s", t.Collector.Ref, t.SamplingPercent, t.ServiceName), x.src(p, "spec.tracing"))
	}
}

// ---- route scope -----------------------------------------------------------------

type retryField struct {
	setting, path string
	get           func(*RetrySettings) (any, bool)
	def           any
	defNote       string
}

var retryFields = []retryField{
	{"retry.numRetries", "spec.backoff.retries", func(s *RetrySettings) (any, bool) {
		if s.NumRetries == nil {
			return nil, false
		}
		return *s.NumRetries, true
	}, uint32(explainDefaultNumRetries), ""},
	{"retry.retryOn", "spec.backoff.retryOn", func(s *RetrySettings) (any, bool) {
		if len(s.RetryOn) == 0 {
			return nil, false
		}
		return s.RetryOn, true
	}, SafeRetryOn, "the conditions under which the provider cannot have run the request"},
	{"retry.retriableStatusCodes", "spec.backoff.statusCodes", func(s *RetrySettings) (any, bool) {
		if len(s.RetriableStatusCodes) == 0 {
			return nil, false
		}
		return s.RetriableStatusCodes, true
	}, explainDefaultRetriableStatusCodes, ""},
	{"retry.baseInterval", "spec.backoff.baseInterval", func(s *RetrySettings) (any, bool) {
		if s.BaseInterval == nil {
			return nil, false
		}
		return fmtDuration(*s.BaseInterval), true
	}, fmtDuration(DefaultRetryBaseInterval), ""},
	{"retry.maxInterval", "spec.backoff.maxInterval", func(s *RetrySettings) (any, bool) {
		if s.MaxInterval == nil {
			return nil, false
		}
		return fmtDuration(*s.MaxInterval), true
	}, "10 × baseInterval", "Envoy's default"},
	{"retry.perTryTimeout", "spec.backoff.perTryTimeout", func(s *RetrySettings) (any, bool) {
		if s.PerTryTimeout == nil {
			return nil, false
		}
		return fmtDuration(*s.PerTryTimeout), true
	}, nil, ""},
	{"retry.honorRetryAfter", "spec.backoff.honorRetryAfter", func(s *RetrySettings) (any, bool) {
		if s.HonorRetryAfter == nil {
			return nil, false
		}
		return *s.HonorRetryAfter, true
	}, true, "not on rules that fail over: the retry goes to another backend"},
	{"retry.bufferLimit", "spec.backoff.bufferLimit", func(s *RetrySettings) (any, bool) {
		if s.BufferLimit == nil {
			return nil, false
		}
		return ByteSize{Bytes: *s.BufferLimit}.String(), true
	}, ByteSize{Bytes: explainDefaultBufferLimit}.String(), "a larger body is sent once, neither retried nor failed over"},
}

// retry merges the route's back-off over the gateway's over the
// defaults, field by field (translate.EffectiveRetry).
func (x *explainer) retry(g *GatewayConfig, scope string, l *settingList) {
	if g.Parent != nil {
		l.add(scope, "retry.retryOn", []string{"connect-failure", "refused-stream", "reset-before-request"},
			byDefault(fmt.Sprintf("%s is in Parent mode: it retries only failures that cannot have reached its parent, which retries by its own settings", g.Ref)))
		return
	}
	for _, f := range retryFields {
		var win *ExplainedSetting
		for _, s := range []*RetrySettings{g.Retry, x.route.Retry} {
			if s == nil {
				continue
			}
			v, ok := f.get(s)
			if !ok {
				continue
			}
			e := x.src(s.Policy, f.path)
			e.Scope, e.Setting, e.Value = scope, f.setting, v
			if f.setting == "retry.retryOn" && s.AllowUnsafe {
				e.Note = "with allowUnsafeRetries"
			}
			if win != nil {
				*l = append(*l, *win)
				(*l)[len(*l)-1].OverriddenBy = e.From
			}
			win = &e
		}
		switch {
		case win != nil:
			*l = append(*l, *win)
		case f.def != nil:
			l.add(scope, f.setting, f.def, byDefault(f.defNote))
		}
	}
}

func (x *explainer) guardRails(g *GatewayConfig, scope string, l *settingList) {
	if g.Parent != nil {
		if len(x.route.GuardRails.SetFields()) > 0 {
			l.add(scope, "guardRails", "not checked here", byDefault(fmt.Sprintf("%s is in Parent mode: its parent %s checks them", g.Ref, g.Parent.Gateway.Ref)))
		}
		return
	}
	for _, f := range GuardRailFields {
		var win *ExplainedSetting
		for _, s := range []*GuardRailSettings{g.GuardRails, x.route.GuardRails} {
			if s == nil || !s.isSet(f) {
				continue
			}
			p := s.Policy
			if src, ok := s.Sources[f]; ok {
				p = src
			}
			e := x.src(p, "spec."+f)
			e.Scope, e.Setting, e.Value = scope, "guardRails."+f, guardRailValue(s, f)
			if win != nil {
				*l = append(*l, *win)
				(*l)[len(*l)-1].OverriddenBy = e.From
			}
			win = &e
		}
		if win != nil {
			*l = append(*l, *win)
		}
	}
}

func guardRailValue(s *GuardRailSettings, field string) any {
	switch field {
	case GuardRailAllowModels:
		return describeModels(s.AllowModels)
	case GuardRailDenyModels:
		return describeModels(s.DenyModels)
	case GuardRailMaxOutputTokens:
		return fmt.Sprintf("%d (%s)", s.MaxOutputTokens.Limit, s.MaxOutputTokens.Action)
	case GuardRailDenyPrompts:
		return s.DenyPrompts
	case GuardRailMaxRequestBody:
		return ByteSize{Bytes: *s.MaxRequestBody}.String()
	}
	return nil
}

func (x *explainer) externalAuth() {
	ea := x.route.ExternalAuth
	if ea == nil {
		return
	}
	l, p := &x.out, ea.Policy
	for _, r := range ea.Rules {
		l.add("route", fmt.Sprintf("externalAuth.rules[%d]", r.Index), describeAccessRule(r), x.src(p, fmt.Sprintf("spec.rules[%d]", r.Index)))
	}
	sv := ea.Service
	if sv == nil {
		return
	}
	if sv.GRPC {
		l.add("route", "externalAuth.service", "gRPC "+sv.Backend.Ref.String(), x.src(p, "spec.service.grpc.backendRef"))
	} else {
		v := "HTTP " + sv.Backend.Ref.String()
		if sv.PathPrefix != "" {
			v += ", path prefix " + sv.PathPrefix
		}
		l.add("route", "externalAuth.service", v, x.src(p, "spec.service.http"))
	}
	l.add("route", "externalAuth.service.timeout", fmtDuration(sv.Timeout), x.pick(p, "spec.service.timeout", ""))
	l.add("route", "externalAuth.service.failOpen", sv.FailOpen, x.pick(p, "spec.service.failOpen", "requests are refused when the service cannot answer"))
	if len(sv.Headers) > 0 {
		l.add("route", "externalAuth.service.headers", sv.Headers, x.src(p, "spec.service.headers"))
	}
}

func describeAccessRule(r AccessRule) string {
	froms := make([]string, len(r.From))
	for i, f := range r.From {
		var parts []string
		if id := f.SPIFFEID; id != nil {
			switch {
			case id.Exact != "":
				parts = append(parts, "spiffeID "+id.Exact)
			case id.Prefix != "":
				parts = append(parts, "spiffeID prefix "+id.Prefix)
			default:
				parts = append(parts, "spiffeID pattern "+id.Pattern)
			}
		}
		for _, kv := range [][2]string{{"trustDomain", f.TrustDomain}, {"namespace", f.Namespace}, {"serviceAccount", f.ServiceAccount}} {
			if kv[1] != "" {
				parts = append(parts, kv[0]+" "+kv[1])
			}
		}
		if len(f.SourceCIDRs) > 0 {
			parts = append(parts, "sourceCIDRs "+strings.Join(f.SourceCIDRs, ", "))
		}
		froms[i] = strings.Join(parts, " and ")
	}
	return r.Action + " from " + strings.Join(froms, "; or ")
}

func (x *explainer) processors() {
	l := &x.out
	for _, ps := range x.route.Processors {
		p := ps.Policy
		l.add("route", "processor", ps.Backend.Ref.String()+" (gRPC ext_proc)", x.src(p, "spec.service.backendRef"))
		var phases []string
		for _, ph := range []struct {
			name string
			on   bool
		}{
			{"requestHeaders", ps.RequestHeaders},
			{"requestBody " + ps.RequestBody, ps.RequestBody != ProcessorBodyNone && ps.RequestBody != ""},
			{"requestTrailers", ps.RequestTrailers},
			{"responseHeaders", ps.ResponseHeaders},
			{"responseBody " + ps.ResponseBody, ps.ResponseBody != ProcessorBodyNone && ps.ResponseBody != ""},
			{"responseTrailers", ps.ResponseTrailers},
		} {
			if ph.on {
				phases = append(phases, ph.name)
			}
		}
		l.add("route", "processor.phases", phases, x.pick(p, "spec.phases", "request headers and the buffered request body"))
		l.add("route", "processor.messageTimeout", fmtDuration(ps.MessageTimeout), x.pick(p, "spec.messageTimeout", ""))
		if ps.MaxMessageTimeout > 0 {
			l.add("route", "processor.maxMessageTimeout", fmtDuration(ps.MaxMessageTimeout), x.src(p, "spec.maxMessageTimeout"))
		}
		l.add("route", "processor.failOpen", ps.FailOpen, x.pick(p, "spec.failOpen", "a request the processor cannot handle is refused"))
		if ps.ObserveOnly {
			l.add("route", "processor.observeOnly", true, x.src(p, "spec.observeOnly"))
			continue
		}
		if len(ps.AllowHeaders) > 0 {
			l.add("route", "processor.mutations.headers.allow", ps.AllowHeaders, x.src(p, "spec.mutations.headers.allow"))
		}
		if len(ps.DenyHeaders) > 0 {
			l.add("route", "processor.mutations.headers.deny", ps.DenyHeaders, x.src(p, "spec.mutations.headers.deny"))
		}
		on := "Ignore"
		if ps.RefuseDisallowed {
			on = "Refuse"
		}
		l.add("route", "processor.mutations.headers.onDisallowed", on, x.pick(p, "spec.mutations.headers.onDisallowed", ""))
		l.add("route", "processor.mutations.immediateResponse", ps.ImmediateResponse, x.pick(p, "spec.mutations.immediateResponse", ""))
	}
}

// ---- rule scope --------------------------------------------------------------------

// longerTimeout compares timeouts where 0 means no limit (as the
// EgressPolicy's rule derivation does).
func longerTimeout(a, b time.Duration) bool {
	switch {
	case b == 0:
		return false
	case a == 0:
		return true
	}
	return a > b
}

func fmtTimeout(d time.Duration) string {
	if d == 0 {
		return "0s (none)"
	}
	return fmtDuration(d)
}

func (x *explainer) ruleTimeout(scope string, rule *RuleConfig) {
	l := &x.out
	if rule.TimeoutSet {
		win := x.src(x.route.Ref, fmt.Sprintf("spec.rules[%d].timeouts.request", rule.Index))
		l.add(scope, "timeout", fmtTimeout(rule.Timeout), withNote(win, "the rule's own timeout wins over its backends' EgressPolicy"))
		for _, wb := range rule.Backends {
			if e := wb.Backend.Egress; e.RequestTimeout != nil {
				l.lost(scope, "timeout", fmtTimeout(*e.RequestTimeout), withNote(x.src(*e.Policy, "spec.timeouts.request"), "for "+wb.Backend.Ref.String()), win.From)
			}
		}
		return
	}
	// The longest of the backends' (EgressPolicy finish), a backend
	// without a timeout counting at the default.
	winner, longest, anySet := -1, time.Duration(0), false
	for i, wb := range rule.Backends {
		t := DefaultRequestTimeout
		if e := wb.Backend.Egress; e.RequestTimeout != nil {
			t, anySet = *e.RequestTimeout, true
		}
		if i == 0 || longerTimeout(t, longest) {
			winner, longest = i, t
		}
	}
	if !anySet || winner < 0 {
		l.add(scope, "timeout", fmtTimeout(rule.Timeout), byDefault("no rule timeout and no EgressPolicy request timeout"))
		return
	}
	wb := rule.Backends[winner]
	var win ExplainedSetting
	if e := wb.Backend.Egress; e.RequestTimeout != nil {
		win = x.src(*e.Policy, "spec.timeouts.request")
	} else {
		win = byDefault(fmt.Sprintf("the default of %s, which has no request timeout", wb.Backend.Ref))
	}
	if len(rule.Backends) > 1 {
		win.Note = strings.TrimPrefix(win.Note+"; the longest of the rule's backends", "; ")
	}
	l.add(scope, "timeout", fmtTimeout(rule.Timeout), win)
	for i, other := range rule.Backends {
		if e := other.Backend.Egress; i != winner && e.RequestTimeout != nil {
			l.lost(scope, "timeout", fmtTimeout(*e.RequestTimeout), withNote(x.src(*e.Policy, "spec.timeouts.request"), "for "+other.Backend.Ref.String()+": shorter than another backend's"), win.From)
		}
	}
}

func (x *explainer) ruleStreamIdle(scope string, rule *RuleConfig) {
	if rule.StreamIdleTimeout == nil {
		return
	}
	winner, longest := -1, time.Duration(0)
	for i, wb := range rule.Backends {
		t := explainEnvoyStreamIdle
		if e := wb.Backend.Egress; e.StreamIdleTimeout != nil {
			t = *e.StreamIdleTimeout
		}
		if i == 0 || longerTimeout(t, longest) {
			winner, longest = i, t
		}
	}
	win := byDefault("Envoy's default")
	if winner >= 0 {
		if e := rule.Backends[winner].Backend.Egress; e.StreamIdleTimeout != nil {
			win = x.src(*e.Policy, "spec.timeouts.streamIdle")
		}
		if len(rule.Backends) > 1 {
			win.Note = strings.TrimPrefix(win.Note+"; the longest of the rule's backends", "; ")
		}
	}
	x.out.add(scope, "streamIdleTimeout", fmtTimeout(*rule.StreamIdleTimeout), win)
}

func (x *explainer) ruleSources(scope string, rule *RuleConfig) {
	for _, sr := range rule.AllowedSources {
		var forBackends []string
		for _, wb := range rule.Backends {
			if e := wb.Backend.Egress; e.Policy != nil && *e.Policy == sr.Policy && len(e.AllowedSourceCIDRs) > 0 {
				forBackends = append(forBackends, wb.Backend.Ref.String())
			}
		}
		note := "a request may reach any backend of the rule, so it must come from these"
		if len(forBackends) > 0 {
			note = "for " + strings.Join(forBackends, ", ") + "; " + note
		}
		x.out.add(scope, "allowedSources", sr.CIDRs, withNote(x.src(sr.Policy, "spec.allowedSources.cidrs"), note))
	}
}

type heldLimit struct {
	l  RateLimit
	on string
}

// rateLimits merges the gateway's, the served backends' and the route's
// limits by name (translate.EffectiveRateLimitsOf), keeping what each
// more specific scope replaced.
func (x *explainer) rateLimits(g *GatewayConfig, scope string, rule *RuleConfig, l *settingList) {
	type scoped struct {
		s  *RateLimitSettings
		on string
	}
	scopes := []scoped{{g.RateLimits, g.Ref.String()}}
	var served []*BackendConfig
	var total uint64
	for _, wb := range rule.Backends {
		if g.Serves(wb.Backend) {
			served = append(served, wb.Backend)
			total += uint64(wb.Weight)
		}
	}
	if total == 0 {
		served = nil
	}
	sort.Slice(served, func(i, j int) bool { return served[i].Ref.String() < served[j].Ref.String() })
	for _, b := range served {
		scopes = append(scopes, scoped{b.RateLimits, b.Ref.String()})
	}
	scopes = append(scopes, scoped{x.route.RateLimits, x.route.Ref.String()})
	var limits []heldLimit
	var local *LocalRateLimit
	localOn := ""
	for _, sc := range scopes {
		s := sc.s
		if s == nil {
			continue
		}
		replaced := map[string]bool{}
		for _, lim := range s.Limits {
			replaced[lim.Group] = true
		}
		kept := limits[:0:0]
		for _, h := range limits {
			if !replaced[h.l.Group] || h.l.Policy == s.Policy {
				kept = append(kept, h)
				continue
			}
			l.lost(scope, "rateLimits."+h.l.Name, describeLimit(h.l), withNote(x.src(h.l.Policy, fmt.Sprintf("spec.limits[%d]", h.l.Index)), "on "+h.on), s.Policy.String())
		}
		limits = kept
		for _, lim := range s.Limits {
			limits = append(limits, heldLimit{lim, sc.on})
		}
		if s.Local != nil {
			if local != nil {
				l.lost(scope, "rateLimits.local", describeLocal(local), withNote(x.src(local.Policy, "spec.local"), "on "+localOn), s.Policy.String())
			}
			local, localOn = s.Local, sc.on
		}
	}
	if g.Parent != nil || g.RateLimitService == nil {
		limits = nil // refused by the policy's check; local limits remain
	}
	sort.SliceStable(limits, func(i, j int) bool {
		a, b := limits[i].l, limits[j].l
		if a.Policy != b.Policy {
			return a.Policy.String() < b.Policy.String()
		}
		return a.Index < b.Index
	})
	tokens := false
	for _, h := range limits {
		note := "on " + h.on
		tokens = tokens || h.l.Tokens()
		l.add(scope, "rateLimits."+h.l.Name, describeLimit(h.l), withNote(x.src(h.l.Policy, fmt.Sprintf("spec.limits[%d]", h.l.Index)), note))
	}
	if local != nil {
		l.add(scope, "rateLimits.local", describeLocal(local), withNote(x.src(local.Policy, "spec.local"), "on "+localOn))
	}
	if tokens {
		if r := g.RateLimits; r != nil && r.DefaultMaxOutputTokens != nil {
			l.add(scope, "rateLimits.defaultMaxOutputTokens", *r.DefaultMaxOutputTokens, x.src(r.Policy, "spec.defaultMaxOutputTokens"))
		} else {
			l.add(scope, "rateLimits.defaultMaxOutputTokens", uint64(DefaultMaxOutputTokens), byDefault("the output reservation of a request that asks for no maximum"))
		}
	}
}

func describeLimit(l RateLimit) string {
	what := "requests"
	if l.Tokens() {
		what = l.Counts + " tokens"
	}
	s := fmt.Sprintf("%d %s per %s", l.Amount, what, strings.ToLower(l.Unit))
	if len(l.Keys) > 0 {
		s += ", counted per " + strings.Join(l.Keys, "+")
	}
	if len(l.SourceCIDRs) > 0 {
		s += " (groups " + strings.Join(sortedKeys(l.SourceCIDRs), ", ") + ")"
	}
	if l.Shadow {
		s += ", shadow: never refuses"
	}
	return s
}

func describeLocal(lc *LocalRateLimit) string {
	return fmt.Sprintf("%d requests per %s, counted by each Envoy", lc.Requests, strings.ToLower(lc.Unit))
}

// ---- backend scope -------------------------------------------------------------------

func (x *explainer) backend(b *BackendConfig) {
	scope := "backend " + b.Ref.String()
	l, br := &x.out, b.Ref
	var spec BackendSpec
	if b.Backend != nil {
		spec = b.Backend.Spec
	}
	if b.Hostname != "" {
		switch {
		case spec.Hostname != "":
			l.add(scope, "hostname", b.Hostname, x.src(br, "spec.hostname"))
		case Providers[spec.Provider].Hostname == "" && spec.Region != "":
			l.add(scope, "hostname", b.Hostname, withNote(x.src(br, "spec.region"), "the "+spec.Provider+" preset's hostname for the region"))
		default:
			l.add(scope, "hostname", b.Hostname, withNote(x.src(br, "spec.provider"), "the "+spec.Provider+" preset's hostname"))
		}
	}
	l.add(scope, "port", b.Port, x.pick(br, "spec.port", ""))
	if len(spec.Addresses) > 0 {
		l.add(scope, "addresses", addressStrings(b.Addresses), x.src(br, "spec.addresses"))
	}
	l.add(scope, "tls", b.TLS, x.pick(br, "spec.tls", "on for port 443, off otherwise"))
	l.add(scope, "protocol", b.Protocol, x.pick(br, "spec.protocol", "auto (ALPN) with TLS, HTTP/1.1 without"))
	if b.Region != "" {
		l.add(scope, "region", b.Region, x.src(br, "spec.region"))
	}
	switch {
	case x.wrote(br, "spec.schema"):
		l.add(scope, "schema", b.Schema, x.src(br, "spec.schema"))
	case ProviderSchema(spec.Provider) != "":
		l.add(scope, "schema", b.Schema, withNote(x.src(br, "spec.provider"), "the "+spec.Provider+" preset's schema"))
	default:
		l.add(scope, "schema", b.Schema, byDefault(""))
	}
	if len(b.ModelMap) > 0 {
		var m []string
		for _, mm := range b.ModelMap {
			m = append(m, mm.From+" → "+mm.To)
		}
		l.add(scope, "modelMap", m, x.src(br, "spec.modelMap"))
	}
	if b.Unavailable != "" {
		s := x.src(br, "spec")
		if rd := b.DNS.ReverseDNS; rd != nil {
			s = x.src(rd.Policy, "spec.reverseDNS")
		}
		l.add(scope, "unavailable", b.Unavailable, s)
	}
	x.backendTLS(scope, b)
	x.credential(scope, b)
	x.egress(scope, b)
	x.qos(scope, b)
	if rl := b.RateLimits; rl != nil {
		var v []string
		for _, lim := range rl.Limits {
			v = append(v, lim.Name+": "+describeLimit(lim))
		}
		if rl.Local != nil {
			v = append(v, "local: "+describeLocal(rl.Local))
		}
		field := "spec.local"
		if len(rl.Limits) > 0 {
			field = "spec.limits"
		}
		l.add(scope, "rateLimits", v, withNote(x.src(rl.Policy, field), "merged into the rate limits of every rule that may send a request to the backend"))
	}
	x.perGateway(scope, func(g *GatewayConfig, scope string, l *settingList) {
		x.dns(g, scope, b, l)
		if rf := g.RegionRefusalOf(b); rf != nil {
			l.add(scope, "regionRefused", rf.Describe(), withNote(x.src(rf.Policy, "spec.regions"), "not served from "+g.Ref.String()))
		}
	})
}

func addressStrings(as []Address) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.String()
	}
	return out
}

func (x *explainer) backendTLS(scope string, b *BackendConfig) {
	if !b.TLS {
		return
	}
	l := &x.out
	t := b.TLSPolicy
	if t == nil {
		note := "no BackendTLSPolicy targets the backend"
		l.add(scope, "tls.sni", b.Hostname, byDefault("the backend's hostname"))
		l.add(scope, "tls.subjectAltNames", []string{"DNS " + b.Hostname}, byDefault("the backend's hostname"))
		l.add(scope, "tls.caCertificates", "system trust bundle "+x.cfg.Settings.SystemCABundle, byDefault(note))
		l.add(scope, "tls.minVersion", explainDefaultMinTLSVersion, byDefault(""))
		return
	}
	p := t.Policy
	l.add(scope, "tls.sni", t.SNI, x.pick(p, "spec.hostname", "the backend's hostname"))
	sans := make([]string, len(t.SANs))
	for i, s := range t.SANs {
		sans[i] = s.Type + " " + s.Value
	}
	l.add(scope, "tls.subjectAltNames", sans, x.pick(p, "spec.subjectAltNames", "DNS = the SNI"))
	switch {
	case x.wrote(p, "spec.caCertificates"):
		l.add(scope, "tls.caCertificates", x.source(p, "spec.caCertificates"), x.src(p, "spec.caCertificates"))
	case t.CA != nil:
		l.add(scope, "tls.caCertificates", "(set, value hidden)", x.src(p, "spec"))
	default:
		l.add(scope, "tls.caCertificates", "system trust bundle "+x.cfg.Settings.SystemCABundle, byDefault("the policy names no CA"))
	}
	if t.CRL != nil {
		v := x.source(p, "spec.crl")
		if t.CRLLeafOnly {
			v += " (leaf certificate only)"
		}
		l.add(scope, "tls.crl", v, x.src(p, "spec.crl"))
	}
	if len(t.SPKIPins) > 0 {
		l.add(scope, "tls.pins.spki", t.SPKIPins, x.src(p, "spec.pins.spki"))
	}
	if len(t.CertHashes) > 0 {
		l.add(scope, "tls.pins.certificateHashes", t.CertHashes, x.src(p, "spec.pins.certificateHashes"))
	}
	if t.MinVersion != "" {
		l.add(scope, "tls.minVersion", t.MinVersion, x.src(p, "spec.minVersion"))
	} else {
		l.add(scope, "tls.minVersion", explainDefaultMinTLSVersion, byDefault(""))
	}
	if len(t.ALPN) > 0 {
		l.add(scope, "tls.alpn", t.ALPN, x.src(p, "spec.alpn"))
	}
	if t.ClientCert != nil {
		v := "certificate " + x.source(p, "spec.clientCertificate.certificate") +
			", private key " + x.source(p, "spec.clientCertificate.privateKey")
		l.add(scope, "tls.clientCertificate", v, x.src(p, "spec.clientCertificate"))
	}
}

func (x *explainer) credential(scope string, b *BackendConfig) {
	l := &x.out
	c := b.Credential
	if c == nil {
		l.add(scope, "credential", "none: requests keep the workload's own credentials", byDefault("no CredentialInjector targets the backend"))
		return
	}
	p := c.Policy
	preset := b.Provider
	if v, ok := specValue(x.objs[p], "spec.apiKey.preset"); ok && v.Kind() == reflect.String && v.String() != "" {
		preset = v.String()
	}
	presetNote := "the " + preset + " preset"
	if !x.wrote(p, "spec.apiKey.preset") {
		presetNote += ", the backend's provider"
	}
	switch c.Kind {
	case CredentialAPIKey:
		l.add(scope, "credential", "APIKey from "+x.source(p, "spec.apiKey.secret"), x.src(p, "spec.apiKey.secret"))
		header := x.pickPreset(p, "spec.apiKey.header", presetNote)
		if !x.wrote(p, "spec.apiKey.header") && x.wrote(p, "spec.apiKey.prefix") {
			header = withNote(x.src(p, "spec.apiKey.prefix"), "the header name from "+presetNote)
		}
		l.add(scope, "credential.header", c.Header+": "+c.Prefix+"<key>", header)
		written := map[string]string{} // lowercase → as written
		if v, ok := specValue(x.objs[p], "spec.apiKey.headers"); ok && v.Kind() == reflect.Map {
			for _, k := range v.MapKeys() {
				written[strings.ToLower(k.String())] = k.String()
			}
		}
		for _, h := range sortedKeys(c.StaticHeaders) {
			name := written[h]
			if name == "" {
				name = h
			}
			l.add(scope, "credential.headers."+h, c.StaticHeaders[h], withNote(x.src(p, "spec.apiKey.headers."+name), "replaces the workload's"))
		}
		for _, h := range sortedKeys(c.DefaultHeaders) {
			l.add(scope, "credential.headers."+h, c.DefaultHeaders[h], byDefault(presetNote+"; a workload's own value wins"))
		}
	case CredentialOAuth2:
		o := c.OAuth2
		l.add(scope, "credential", "OAuth2 client credentials, client secret from "+x.source(p, "spec.oauth2.clientSecret"), x.src(p, "spec.oauth2.clientSecret"))
		if o != nil {
			l.add(scope, "credential.oauth2.tokenURL", o.TokenURL, x.src(p, "spec.oauth2.tokenURL"))
			l.add(scope, "credential.oauth2.clientID", o.ClientID, x.src(p, "spec.oauth2.clientID"))
			if len(o.Scopes) > 0 {
				l.add(scope, "credential.oauth2.scopes", o.Scopes, x.src(p, "spec.oauth2.scopes"))
			}
		}
	case CredentialAWSSigV4:
		a := c.AWS
		if a == nil {
			break
		}
		if a.AccessKeyID != nil {
			v := "AWSSigV4 with static keys: access key ID from " + x.source(p, "spec.awsSigV4.credentials.accessKeyID") +
				", secret access key from " + x.source(p, "spec.awsSigV4.credentials.secretAccessKey")
			if a.SessionToken != nil {
				v += ", session token from " + x.source(p, "spec.awsSigV4.credentials.sessionToken")
			}
			l.add(scope, "credential", v, x.src(p, "spec.awsSigV4.credentials"))
		} else {
			l.add(scope, "credential", "AWSSigV4 with the Envoy host's AWS credential chain", x.src(p, "spec.awsSigV4"))
		}
		if x.wrote(p, "spec.awsSigV4.region") {
			l.add(scope, "credential.aws.region", a.Region, x.src(p, "spec.awsSigV4.region"))
		} else {
			l.add(scope, "credential.aws.region", a.Region, withNote(x.src(b.Ref, "spec.region"), "the backend's region"))
		}
		l.add(scope, "credential.aws.service", a.Service, x.pick(p, "spec.awsSigV4.service", ""))
	}
	l.add(scope, "credential.removedWorkloadHeaders", WorkloadCredentialHeaders,
		byDefault("a workload's own credential headers (and ?"+strings.Join(WorkloadCredentialQueryParams, ", ?")+") are removed: its key never reaches a provider"))
}

// pickPreset is pick for a credential field a preset fills in.
func (x *explainer) pickPreset(p Ref, path, presetNote string) ExplainedSetting {
	switch {
	case x.wrote(p, path):
		return x.src(p, path)
	case x.wrote(p, "spec.apiKey.preset"):
		return withNote(x.src(p, "spec.apiKey.preset"), presetNote)
	}
	return byDefault(presetNote)
}

func (x *explainer) egress(scope string, b *BackendConfig) {
	l, e := &x.out, b.Egress
	if e.ConnectTimeout != nil {
		l.add(scope, "egress.connectTimeout", fmtDuration(*e.ConnectTimeout), x.src(*e.Policy, "spec.timeouts.connect"))
	} else {
		l.add(scope, "egress.connectTimeout", fmtDuration(explainDefaultConnectTimeout), byDefault(""))
	}
	if e.Policy == nil {
		return
	}
	p := *e.Policy
	durs := []struct {
		setting, path string
		d             *time.Duration
		note          string
	}{
		{"egress.requestTimeout", "spec.timeouts.request", e.RequestTimeout, "the rules without a timeout of their own take the longest of their backends'"},
		{"egress.idleTimeout", "spec.timeouts.idle", e.IdleTimeout, ""},
		{"egress.streamIdleTimeout", "spec.timeouts.streamIdle", e.StreamIdleTimeout, "the rules take the longest of their backends'"},
	}
	for _, d := range durs {
		if d.d != nil {
			l.add(scope, d.setting, fmtTimeout(*d.d), withNote(x.src(p, d.path), d.note))
		}
	}
	for _, n := range []struct {
		name string
		v    *uint32
	}{{"maxConnections", e.MaxConnections}, {"maxPendingRequests", e.MaxPendingRequests}, {"maxRequests", e.MaxRequests}} {
		if n.v != nil {
			l.add(scope, "egress."+n.name, *n.v, withNote(x.src(p, "spec.connectionLimits."+n.name), "per Envoy"))
		}
	}
	if len(e.AllowedSourceCIDRs) > 0 {
		l.add(scope, "egress.allowedSources", e.AllowedSourceCIDRs, x.src(p, "spec.allowedSources.cidrs"))
	}
}

func (x *explainer) qos(scope string, b *BackendConfig) {
	q := b.QoS
	if q == nil {
		return
	}
	l, p := &x.out, q.Policy
	const def = "QoSController's default"
	if od := q.OutlierDetection; od == nil {
		l.add(scope, "qos.outlierDetection", "off", x.src(p, "spec.outlierDetection"))
	} else {
		for _, f := range []struct {
			name string
			v    any
		}{
			{"consecutive5xx", od.Consecutive5xx},
			{"consecutiveGatewayFailures", od.ConsecutiveGatewayFailures},
			{"consecutiveLocalOriginFailures", od.ConsecutiveLocalOriginFailures},
			{"interval", fmtDuration(od.Interval)},
			{"baseEjectionTime", fmtDuration(od.BaseEjectionTime)},
			{"maxEjectionTime", fmtDuration(od.MaxEjectionTime)},
			{"maxEjectionPercent", od.MaxEjectionPercent},
		} {
			l.add(scope, "qos.outlierDetection."+f.name, f.v, x.pick(p, "spec.outlierDetection."+f.name, def))
		}
		if sr := od.SuccessRate; sr != nil {
			l.add(scope, "qos.outlierDetection.successRate", fmt.Sprintf("at least %d hosts, %d requests, %v stdev below the mean", sr.MinimumHosts, sr.RequestVolume, sr.StdevFactor), x.src(p, "spec.outlierDetection.successRate"))
		}
	}
	cb := q.CircuitBreakers
	for _, n := range []struct {
		name string
		v    *uint32
	}{{"maxConnections", cb.MaxConnections}, {"maxPendingRequests", cb.MaxPendingRequests}, {"maxRequests", cb.MaxRequests}, {"maxRetries", cb.MaxRetries}} {
		if n.v != nil {
			l.add(scope, "qos.circuitBreakers."+n.name, *n.v, withNote(x.src(p, "spec.circuitBreakers."+n.name), "per Envoy"))
		}
	}
	if rb := cb.RetryBudget; rb != nil {
		l.add(scope, "qos.circuitBreakers.retryBudget", fmt.Sprintf("%v%% of active requests, at least %d", rb.BudgetPercent, rb.MinRetryConcurrency), x.src(p, "spec.circuitBreakers.retryBudget"))
	}
	if hc := q.HealthCheck; hc != nil {
		v := fmt.Sprintf("GET %s every %s, timeout %s, unhealthy after %d, healthy after %d, expecting %v",
			hc.Path, fmtDuration(hc.Interval), fmtDuration(hc.Timeout), hc.UnhealthyThreshold, hc.HealthyThreshold, hc.ExpectedStatuses)
		l.add(scope, "qos.healthCheck", v, x.src(p, "spec.healthCheck"))
	}
}

// dns explains how g's Envoys resolve b: the backend's DNSPolicy over the
// gateway's, field by field (BackendDNS.For).
func (x *explainer) dns(g *GatewayConfig, scope string, b *BackendConfig, l *settingList) {
	if b.Backend != nil && len(b.Backend.Spec.Addresses) > 0 {
		return
	}
	gs, onGateway := b.DNS.Gateways[g.Ref]
	if b.DNS.Policy == nil && !onGateway {
		return
	}
	gp, gpFound := x.winner("DNSPolicy", g.Ref)
	fields := []struct {
		name   string
		gw, be optVal
		def    any
	}{
		{"resolvers", optVal{addressStrings(gs.Resolvers), gs.Resolvers != nil}, optVal{addressStrings(b.DNS.Backend.Resolvers), b.DNS.Backend.Resolvers != nil}, nil},
		{"refreshRate", durVal(gs.RefreshRate), durVal(b.DNS.Backend.RefreshRate), nil},
		{"respectTTL", boolVal(gs.RespectTTL), boolVal(b.DNS.Backend.RespectTTL), nil},
		{"minRefreshRate", durVal(gs.MinRefreshRate), durVal(b.DNS.Backend.MinRefreshRate), nil},
		{"addressFamily", optVal{gs.AddressFamily, gs.AddressFamily != ""}, optVal{b.DNS.Backend.AddressFamily, b.DNS.Backend.AddressFamily != ""}, DefaultAddressFamily},
	}
	for _, f := range fields {
		var win *ExplainedSetting
		if f.gw.set {
			var s ExplainedSetting
			if gpFound {
				s = withNote(x.src(gp, "spec."+f.name), "the default of "+g.Ref.String())
			} else {
				s = withNote(byDefault(""), "the default of "+g.Ref.String())
			}
			s.Scope, s.Setting, s.Value = scope, "dns."+f.name, f.gw.v
			win = &s
		}
		if f.be.set {
			s := x.src(*b.DNS.Policy, "spec."+f.name)
			s.Scope, s.Setting, s.Value = scope, "dns."+f.name, f.be.v
			if win != nil {
				win.OverriddenBy = s.From
				*l = append(*l, *win)
			}
			win = &s
		}
		switch {
		case win != nil:
			*l = append(*l, *win)
		case f.def != nil:
			l.add(scope, "dns."+f.name, f.def, byDefault(""))
		}
	}
	if rd := b.DNS.ReverseDNS; rd != nil {
		v := "allowed suffixes ." + strings.Join(rd.Check.AllowedSuffixes, ", .")
		switch r := rd.Result; {
		case r == nil:
			v += "; not verified yet"
		case len(r.Verified) == 0:
			v += "; no address verified"
		default:
			v += "; verified " + strings.Join(r.Verified, ", ")
		}
		l.add(scope, "dns.reverseDNS", v, x.src(rd.Policy, "spec.reverseDNS.allowedSuffixes"))
	}
}

// optVal is a value a DNSPolicy may leave unset.
type optVal struct {
	v   any
	set bool
}

func durVal(d *time.Duration) optVal {
	if d == nil {
		return optVal{}
	}
	return optVal{fmtDuration(*d), true}
}

func boolVal(b *bool) optVal {
	if b == nil {
		return optVal{}
	}
	return optVal{*b, true}
}

// ---- conflicts and conditions ----------------------------------------------------------

// explainedKindSettings name, per policy kind, the settings a policy that
// lost a conflict would have set.
var explainedKindSettings = map[string]string{
	"BackendTLSPolicy":      "tls",
	"CredentialInjector":    "credential",
	"EgressPolicy":          "egress",
	"QoSController":         "qos",
	"DNSPolicy":             "dns",
	"GuardRailsPolicy":      "guardRails",
	"RateLimitPolicy":       "rateLimits",
	"RegionAllowListPolicy": "regionAllowList",
	"ExternalAuth":          "externalAuth",
	"PayloadProcessor":      "processor",
	"ObservabilityPolicy":   "observability",
}

// conflicts lists the policies that target the route, its gateways or
// its backends but lost to another policy of their kind (a Conflicted
// condition): none of their settings apply there.
func (x *explainer) conflicts() {
	scopes := x.scopes()
	type key struct{ policy, target Ref }
	seen := map[key]bool{}
	for _, c := range x.cfg.Conditions {
		if c.Reason != "Conflicted" {
			continue
		}
		pref, ok := ParseRef(c.Object)
		if !ok {
			continue
		}
		p, ok := x.objs[pref].(Policy)
		if !ok {
			continue
		}
		for i, t := range p.Targets() {
			target := t.Ref(pref.Namespace)
			scope, ok := scopes[target]
			if !ok || seen[key{pref, target}] {
				continue
			}
			w, ok := x.winner(pref.Kind, target)
			if !ok || w == pref {
				continue
			}
			seen[key{pref, target}] = true
			setting := explainedKindSettings[pref.Kind]
			if setting == "" {
				setting = pref.Kind
			}
			x.out.lost(scope, setting, "not applied", withNote(x.src(pref, fmt.Sprintf("spec.targetRefs[%d]", i)), c.Message), w.String())
		}
	}
}

// scopes maps the objects that shape the route to their scope.
func (x *explainer) scopes() map[Ref]string {
	out := map[Ref]string{x.route.Ref: "route"}
	for _, g := range x.gws {
		out[g.Ref] = "gateway " + g.Ref.String()
	}
	for _, b := range x.backends {
		out[b.Ref] = "backend " + b.Ref.String()
	}
	return out
}

// conditions are those of the route, its gateways and backends, and the
// policies that target any of them.
func (x *explainer) conditions() []Condition {
	relevant := map[string]bool{}
	scopes := x.scopes()
	for r := range scopes {
		relevant[r.String()] = true
	}
	for _, o := range x.cfg.Objects {
		p, ok := o.(Policy)
		if !ok {
			continue
		}
		pref := RefOf(o)
		for _, t := range p.Targets() {
			if _, ok := scopes[t.Ref(pref.Namespace)]; ok {
				relevant[pref.String()] = true
			}
		}
	}
	var out []Condition
	for _, c := range x.cfg.Conditions {
		if relevant[c.Object] {
			out = append(out, c)
		}
	}
	SortConditions(out)
	return out
}

// fmtDuration writes a duration as a policy would: 5m rather than 5m0s.
func fmtDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
