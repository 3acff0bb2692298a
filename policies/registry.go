// Package policies is where every policy kind plugs in. Each kind lives in
// its own folder (policies/<kind>/) with its spec type, validation, scope
// rules and lowering into the model's effective settings, and is listed in
// kinds below.
//
// Lowering runs in the order of kinds: a later kind may read what an earlier
// one set. Precedence across scopes (HTTPRoute over Backend over Gateway) is
// each kind's own business, applied field by field while lowering.
package policies

import "github.com/tollgate-dev/tollgate/model"

// Kind is one policy kind.
type Kind struct {
	// Name is the YAML kind, e.g. BackendTLSPolicy.
	Name string
	// New returns an empty object of the kind for the decoder.
	New func() model.Object
}

// kinds lists the policy kinds in lowering order. The core kinds (Gateway,
// Backend, HTTPRoute) are the model's own and always come first.
var kinds = []Kind{}

// NewScheme returns a scheme that decodes the core kinds and every policy
// kind.
func NewScheme() *model.Scheme {
	s := model.NewScheme()
	for _, k := range kinds {
		s.Register(k.Name, k.New)
	}
	return s
}
