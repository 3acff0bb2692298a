// Package policy holds what every policy kind shares: the Kind descriptor
// the registry lists and the context lowering gets.
package policy

import (
	"time"

	"github.com/tollgate-dev/tollgate/model"
)

// Kind describes one policy kind.
type Kind struct {
	// Name is the YAML kind.
	Name string
	// New returns an empty object of the kind, for the decoder.
	New func() model.Object
	// Scopes are the target kinds the policy may attach to.
	Scopes []string
	// ScopeReason explains, in the error message, why other scopes are
	// refused (empty when there is nothing to explain).
	ScopeReason string
	// Lower applies the policy p to one target.
	Lower func(ctx Context, p model.Policy, target model.Ref)
	// Finish runs once after every policy of every kind is lowered, to
	// derive settings that combine several targets (e.g. route timeouts
	// from backend settings).
	Finish func(cfg *model.Config, idx *Index)
	// Check runs after Finish, to refuse combinations that only exist once
	// every scope is merged (a route's back-off against its gateway's).
	// report returns the validator of a policy of this kind.
	Check func(cfg *model.Config, idx *Index, report func(policy model.Ref) *model.Validator)
}

// Context is what lowering one policy needs.
type Context struct {
	Config    *model.Config
	Index     *Index
	Materials model.Materials
	// ReverseDNS are the results of the reverse-DNS checks the store ran
	// for this config (see policies.ReverseDNSChecks); nil when it ran none.
	ReverseDNS model.ReverseDNSResults
	// Now is the time certificates and CRLs are judged at (the store's
	// clock), so that lowering stays deterministic under test.
	Now time.Time
	// Validator reports violations on the policy.
	Validator *model.Validator
	// Path is the field path of the targetRef being lowered.
	Path string
}

// Material returns the content of a file or variable the policy names, or
// reports why it is unavailable at path and returns nil.
func (c Context) Material(p model.Object, src model.SecretSource, path string) []byte {
	m, ok := c.Materials[model.MaterialKey(p, src)]
	switch {
	case !ok:
		c.Validator.Errorf(path, "%s was not loaded", src.Describe())
		return nil
	case m.Err != nil:
		c.Validator.Errorf(path, "cannot read %s: %v", src.Describe(), m.Err)
		return nil
	case len(m.Data) == 0:
		c.Validator.Errorf(path, "%s is empty", src.Describe())
		return nil
	}
	return m.Data
}

// Index finds objects of a Config by identity.
type Index struct {
	Backends map[model.Ref]*model.BackendConfig
	Gateways map[model.Ref]*model.GatewayConfig
	Routes   map[model.Ref]*model.RouteConfig
}

// NewIndex indexes cfg.
func NewIndex(cfg *model.Config) *Index {
	routes := 0
	for _, g := range cfg.Gateways {
		for _, l := range g.Listeners {
			routes += len(l.Routes)
		}
	}
	// Sized up front: this runs on every change, over every object.
	idx := &Index{
		Backends: make(map[model.Ref]*model.BackendConfig, len(cfg.Backends)),
		Gateways: make(map[model.Ref]*model.GatewayConfig, len(cfg.Gateways)),
		Routes:   make(map[model.Ref]*model.RouteConfig, routes),
	}
	for _, b := range cfg.Backends {
		idx.Backends[b.Ref] = b
	}
	for _, g := range cfg.Gateways {
		idx.Gateways[g.Ref] = g
		for _, l := range g.Listeners {
			for _, r := range l.Routes {
				idx.Routes[r.Ref] = r
			}
		}
	}
	return idx
}

// Exists reports whether the object exists.
func (i *Index) Exists(r model.Ref) bool {
	switch r.Kind {
	case model.KindBackend:
		return i.Backends[r] != nil
	case model.KindGateway:
		return i.Gateways[r] != nil
	case model.KindHTTPRoute:
		return i.Routes[r] != nil
	}
	return false
}
