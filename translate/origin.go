package translate

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/proto"

	"github.com/tollgate-dev/tollgate/model"
)

// Origin returns the model objects that produced the Envoy resource (or
// named part of one: a virtual host, a route) called name, which gateway
// (a model.GatewayKey) is served: the Backend, HTTPRoute or Gateway it was
// built for, then the policies lowered into it, as their Refs record them.
// A secret maps to its policy only (the value came from there), a cluster
// to its Backend and every policy that shaped it. typeURL is the xDS type
// of the resource, or "" when unknown (a NACK names resources by type too);
// names in translate/names.go are unique across types, so it only has to
// agree. The result is sorted and without duplicates; nil means nothing
// maps (an unknown name, or an object no longer in cfg).
//
// It reads only cfg, so it serves equally for a refusal of ValidateDeep
// before publication and for the resource names of an Envoy's NACK.
func Origin(cfg *model.Config, gateway, typeURL, name string) []model.Ref {
	if cfg == nil {
		return nil
	}
	o := origins{cfg: cfg, gw: cfg.Gateway(gateway)}
	kind, rest, _ := strings.Cut(name, "/")
	if !o.typeFits(kind, typeURL) {
		return nil
	}
	switch kind {
	case "backend", "hop":
		o.backend(rest, true)
	case "oauth2-token":
		if b := o.findBackend(rest); b != nil {
			o.add(b.Ref)
			if b.Credential != nil {
				o.add(b.Credential.Policy)
			}
		}
	case "credential", "oauth2-client-secret":
		if b := o.findBackend(rest); b != nil && b.Credential != nil {
			o.add(b.Credential.Policy)
		}
	case "tls-validation", "tls-client":
		if b := o.findBackend(rest); b != nil && b.TLSPolicy != nil {
			o.add(b.TLSPolicy.Policy)
		}
	case "listener-tls", "listener-validation":
		// <namespace>/<gateway>/<listener>: the Gateway names the files.
		parts := strings.Split(rest, "/")
		if len(parts) == 3 && o.gw != nil && o.gw.Ref.Namespace == parts[0] && o.gw.Ref.Name == parts[1] && o.listener(parts[2]) != nil {
			o.add(o.gw.Ref)
		}
	case "failover":
		o.failover(name)
	case "parent":
		if o.gw != nil && o.gw.Parent != nil && ParentClusterName(o.gw.Parent.Gateway.Ref) == name {
			o.add(o.gw.Ref)
			o.add(o.gw.Parent.Gateway.Ref)
		}
	case "listener":
		if l := o.listener(rest); l != nil {
			o.add(o.gw.Ref)
			o.gatewayPolicies(l)
		}
	case "route":
		if l := o.listener(rest); l != nil {
			o.add(o.gw.Ref)
			o.retry(o.gw.Retry)
			o.gatewayPolicies(l)
			for _, r := range l.Routes {
				o.route(r)
			}
		}
	case "vhost":
		o.vhost(rest)
	case "httproute":
		o.httpRoute(name)
	}
	slices.SortFunc(o.out, func(a, b model.Ref) int {
		switch {
		case a.Less(b):
			return -1
		case b.Less(a):
			return 1
		}
		return 0
	})
	return slices.Compact(o.out)
}

// resourceKinds are the xDS types each name prefix is used for.
var resourceKinds = map[string][]string{
	"backend":              {"Cluster", "ClusterLoadAssignment"},
	"hop":                  {"Cluster", "ClusterLoadAssignment", "Listener"},
	"oauth2-token":         {"Cluster", "ClusterLoadAssignment"},
	"failover":             {"Cluster"},
	"parent":               {"Cluster", "ClusterLoadAssignment"},
	"listener":             {"Listener"},
	"route":                {"RouteConfiguration"},
	"vhost":                {"VirtualHost"},
	"httproute":            {"Route"},
	"credential":           {"Secret"},
	"oauth2-client-secret": {"Secret"},
	"tls-validation":       {"Secret"},
	"tls-client":           {"Secret"},
	"listener-tls":         {"Secret"},
	"listener-validation":  {"Secret"},
}

func (o *origins) typeFits(kind, typeURL string) bool {
	types, ok := resourceKinds[kind]
	if !ok {
		return false
	}
	if typeURL == "" {
		return true
	}
	short := typeURL[strings.LastIndexByte(typeURL, '.')+1:]
	return slices.Contains(types, short)
}

type origins struct {
	cfg *model.Config
	gw  *model.GatewayConfig
	out []model.Ref
}

func (o *origins) add(r model.Ref) {
	if r.Name != "" {
		o.out = append(o.out, r)
	}
}

func (o *origins) addPtr(r *model.Ref) {
	if r != nil {
		o.add(*r)
	}
}

// findBackend resolves "<ns>/<name>".
func (o *origins) findBackend(nsName string) *model.BackendConfig {
	ns, name, ok := strings.Cut(nsName, "/")
	if !ok {
		return nil
	}
	for _, b := range o.cfg.Backends {
		if b.Ref.Namespace == ns && b.Ref.Name == name {
			return b
		}
	}
	return nil
}

// backend adds a backend and, with policies, everything lowered into its
// cluster.
func (o *origins) backend(nsName string, policies bool) {
	b := o.findBackend(nsName)
	if b == nil {
		return
	}
	o.add(b.Ref)
	if !policies {
		return
	}
	if b.TLSPolicy != nil {
		o.add(b.TLSPolicy.Policy)
	}
	if b.Credential != nil {
		o.add(b.Credential.Policy)
	}
	o.addPtr(b.Egress.Policy)
	if b.QoS != nil {
		o.add(b.QoS.Policy)
	}
	o.addPtr(b.DNS.Policy)
	if b.DNS.ReverseDNS != nil {
		o.add(b.DNS.ReverseDNS.Policy)
	}
}

func (o *origins) listener(name string) *model.ListenerConfig {
	if o.gw == nil {
		return nil
	}
	for _, l := range o.gw.Listeners {
		if l.Name == name {
			return l
		}
	}
	return nil
}

func (o *origins) retry(r *model.RetrySettings) {
	if r != nil {
		o.add(r.Policy)
	}
}

func (o *origins) route(r *model.RouteConfig) {
	o.add(r.Ref)
	o.retry(r.Retry)
	if r.ExternalAuth != nil {
		o.add(r.ExternalAuth.Policy)
	}
	if r.RateLimits != nil {
		o.add(r.RateLimits.Policy)
	}
	o.guardRails(r.GuardRails)
	for _, p := range r.Processors {
		o.add(p.Policy)
	}
	for _, rule := range r.Rules {
		for _, s := range rule.AllowedSources {
			o.add(s.Policy)
		}
	}
}

// guardRails adds the GuardRailsPolicies that set the fields of g.
func (o *origins) guardRails(g *model.GuardRailSettings) {
	if g == nil {
		return
	}
	o.add(g.Policy)
	for _, ref := range g.Sources {
		o.add(ref)
	}
}

// gatewayPolicies adds the gateway-scoped policies lowered into a
// listener's filters and routes.
func (o *origins) gatewayPolicies(l *model.ListenerConfig) {
	g := o.gw
	if g.RateLimits != nil {
		o.add(g.RateLimits.Policy)
	}
	if g.RateLimitService != nil {
		o.add(g.RateLimitService.Policy)
	}
	if g.RegionAllowList != nil {
		o.add(g.RegionAllowList.Policy)
	}
	o.guardRails(g.GuardRails)
	if l.Observability != nil {
		o.add(l.Observability.Policy)
	}
}

// routes are every route of the gateway, or of every gateway when it is
// unknown.
func (o *origins) routes() []*model.RouteConfig {
	var out []*model.RouteConfig
	for _, g := range o.cfg.Gateways {
		if o.gw != nil && g != o.gw {
			continue
		}
		for _, l := range g.Listeners {
			out = append(out, l.Routes...)
		}
	}
	return out
}

// failover finds the rules whose fail-over order the aggregate cluster
// is (the name may end in a hash), and adds their routes and members.
func (o *origins) failover(name string) {
	for _, g := range o.cfg.Gateways {
		if o.gw != nil && g != o.gw {
			continue
		}
		for _, l := range g.Listeners {
			for _, r := range l.Routes {
				for _, rule := range r.Rules {
					for _, t := range Targets(g, rule) {
						if !t.aggregate() || t.Cluster != name {
							continue
						}
						o.add(r.Ref)
						for _, m := range t.Members {
							o.add(m.Ref)
						}
					}
				}
			}
		}
	}
}

// vhost adds the routes of the gateway that serve the hostname ("*": the
// routes without hostnames).
func (o *origins) vhost(host string) {
	for _, r := range o.routes() {
		if (host == "*" && len(r.Hostnames) == 0) || slices.Contains(r.Hostnames, host) {
			o.route(r)
		}
	}
}

// httpRoute resolves a RouteName.
func (o *origins) httpRoute(name string) {
	for _, r := range o.routes() {
		prefix := "httproute/" + r.Ref.Namespace + "/" + r.Ref.Name + "/rule/"
		if !strings.HasPrefix(name, prefix) {
			continue
		}
		// A guard rail's refusal and a Bedrock-path twin are named after
		// the route they stand before (body.go): <route name>/<what>.
		is := func(rn string) bool { return name == rn || strings.HasPrefix(name, rn+"/") }
		for _, rule := range r.Rules {
			for i := range rule.Matches {
				if is(RouteName(r, rule, i)) {
					o.route(r)
				}
			}
			if len(rule.Matches) == 0 && is(RouteName(r, rule, 0)) {
				o.route(r)
			}
		}
	}
}

// ResourceError is ValidateDeep's refusal of one resource of a gateway.
type ResourceError struct {
	// Gateway is the gateway's key.
	Gateway  string
	Resource proto.Message
	Err      error
}

func (e *ResourceError) Error() string { return fmt.Sprintf("gateway %s: %v", e.Gateway, e.Err) }

func (e *ResourceError) Unwrap() error { return e.Err }

// Locate turns the ResourceErrors in err (from Output.Validate, or any
// error wrapping them) into violations on the objects that produced each
// refused field (see Origin): `file:line: Kind/name:
// Type[resource].field.path: envoy would refuse this: reason`. A failure
// nothing maps to becomes a violation with its message only, as before.
// err is returned unchanged when it carries no ResourceError.
func Locate(cfg *model.Config, err error) error {
	var found []*ResourceError
	collect(err, &found)
	if len(found) == 0 {
		return err
	}
	byRef := map[model.Ref]model.Object{}
	if cfg != nil {
		for _, o := range cfg.Objects {
			byRef[model.RefOf(o)] = o
		}
	}
	var vs model.Violations
	for _, re := range found {
		vs = append(vs, locate(cfg, byRef, re)...)
	}
	return vs.Err()
}

func collect(err error, out *[]*ResourceError) {
	var re *ResourceError
	switch {
	case err == nil:
	case errors.As(err, &re) && re == err:
		*out = append(*out, re)
	default:
		if u, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range u.Unwrap() {
				collect(e, out)
			}
		} else if e := errors.Unwrap(err); e != nil {
			collect(e, out)
		}
	}
}

var routeInConfig = regexp.MustCompile(`^virtual_hosts\[(\d+)\](?:\.routes\[(\d+)\])?`)

func locate(cfg *model.Config, byRef map[model.Ref]model.Object, re *ResourceError) model.Violations {
	desc := re.Resource.ProtoReflect().Descriptor()
	typ := string(desc.Name())
	name := resourceName(re.Resource)
	var vs model.Violations
	for _, l := range constraintLeaves(re.Err, string(desc.FullName())) {
		// A route's own mistake belongs to its HTTPRoute, not to every
		// route of the listener.
		part, partType := name, typ
		if rc, ok := re.Resource.(*routev3.RouteConfiguration); ok {
			if m := routeInConfig.FindStringSubmatch(l.path); m != nil {
				vh, _ := strconv.Atoi(m[1])
				if vh < len(rc.GetVirtualHosts()) {
					v := rc.GetVirtualHosts()[vh]
					part, partType = v.GetName(), "VirtualHost"
					if m[2] != "" {
						if r, _ := strconv.Atoi(m[2]); r < len(v.GetRoutes()) {
							part, partType = v.GetRoutes()[r].GetName(), "Route"
						}
					}
				}
			}
		}
		refs := Origin(cfg, re.Gateway, "type.googleapis.com/envoy.config.x."+partType, part)
		if len(refs) == 0 && part != name {
			refs = Origin(cfg, re.Gateway, "", name)
		}
		field := typ + "[" + name + "]"
		if l.path != "" {
			field += "." + l.path
		}
		mapped := false
		for _, r := range refs {
			obj := byRef[r]
			if obj == nil {
				continue
			}
			mapped = true
			src := obj.GetSource()
			vs = append(vs, model.Violation{File: src.File, Line: src.Line, Object: r.String(), Field: field, Msg: "envoy would refuse this: " + l.reason})
		}
		if !mapped {
			vs = append(vs, model.Violation{Msg: fmt.Sprintf("gateway %s: %s: envoy would refuse this: %s", re.Gateway, field, l.reason)})
		}
	}
	return vs
}

// resourceName is the xDS name of a resource.
func resourceName(m proto.Message) string {
	switch r := m.(type) {
	case interface{ GetName() string }:
		return r.GetName()
	case interface{ GetClusterName() string }:
		return r.GetClusterName()
	}
	return ""
}

type leaf struct{ path, reason string }

// pgvError is what protoc-gen-validate's errors have.
type pgvError interface {
	Field() string
	Reason() string
	Cause() error
}

// constraintLeaves flattens ValidateDeep's error into one entry per refused
// field, with its proto field path from the resource (root is its full
// name, which ValidateDeep's paths start with).
func constraintLeaves(err error, root string) []leaf {
	var out []leaf
	var walk func(err error, path string)
	walk = func(err error, path string) {
		if u, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range u.Unwrap() {
				walk(e, path)
			}
			return
		}
		if m, ok := err.(interface{ AllErrors() []error }); ok {
			for _, e := range m.AllErrors() {
				walk(e, path)
			}
			return
		}
		if d, ok := err.(*deepError); ok {
			p := strings.TrimPrefix(strings.TrimPrefix(d.path, root), ".")
			walk(d.err, p)
			return
		}
		if p, ok := err.(pgvError); ok {
			fp := joinPath(path, snake(p.Field()))
			if c := p.Cause(); c != nil {
				if structured(c) {
					walk(c, fp)
					return
				}
				out = append(out, leaf{fp, p.Reason() + ": " + c.Error()})
				return
			}
			out = append(out, leaf{fp, p.Reason()})
			return
		}
		out = append(out, leaf{path, err.Error()})
	}
	walk(err, "")
	return out
}

// structured reports whether err is one of the shapes constraintLeaves
// descends into.
func structured(err error) bool {
	switch err.(type) {
	case pgvError, interface{ AllErrors() []error }, interface{ Unwrap() []error }, *deepError:
		return true
	}
	return false
}

func joinPath(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "." + b
}

// snake turns protoc-gen-go field names (VirtualHosts[0]) back into proto
// names (virtual_hosts[0]); an index or map key is kept as it is.
func snake(field string) string {
	name, index, _ := strings.Cut(field, "[")
	var b strings.Builder
	for i, r := range name {
		if r >= 'A' && r <= 'Z' {
			if i > 0 {
				b.WriteByte('_')
			}
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	if index != "" {
		b.WriteString("[" + index)
	}
	return b.String()
}
