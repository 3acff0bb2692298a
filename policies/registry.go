// Package policies is where every policy kind plugs in. Each kind lives in
// its own folder (policies/<kind>/) with its spec type, validation, scope
// rules and lowering into the model's effective settings, and is listed in
// Kinds below.
//
// Lowering runs in the order of Kinds: a later kind may read what an earlier
// one set. Precedence across scopes (HTTPRoute over Backend over Gateway) is
// each kind's own business, applied field by field while lowering.
package policies

import (
	"fmt"
	"slices"
	"time"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/policies/backendtls"
	"github.com/tollgate-dev/tollgate/policies/credentialinjector"
	"github.com/tollgate-dev/tollgate/policies/dnspolicy"
	"github.com/tollgate-dev/tollgate/policies/egresspolicy"
	"github.com/tollgate-dev/tollgate/policies/externalauth"
	"github.com/tollgate-dev/tollgate/policies/gatewaytls"
	"github.com/tollgate-dev/tollgate/policies/guardrails"
	"github.com/tollgate-dev/tollgate/policies/observability"
	"github.com/tollgate-dev/tollgate/policies/payloadprocessor"
	"github.com/tollgate-dev/tollgate/policies/policy"
	"github.com/tollgate-dev/tollgate/policies/qoscontroller"
	"github.com/tollgate-dev/tollgate/policies/ratelimit"
	"github.com/tollgate-dev/tollgate/policies/regionallowlist"
)

// Kinds lists the policy kinds in lowering order. The core kinds (Gateway,
// Backend, HTTPRoute) are the model's own.
var Kinds = []policy.Kind{
	backendtls.Kind,
	credentialinjector.Kind,
	egresspolicy.Kind,
	qoscontroller.Kind,
	dnspolicy.Kind,
	guardrails.Kind,
	// After gatewaytls: identity keys need listeners that verify clients.
	ratelimit.Kind,
	// After the kinds that make a backend unavailable (dnspolicy): its
	// Finish tells a refused backend from an unavailable one.
	regionallowlist.Kind,
	// Last: it reads the backends of authorization services as the kinds
	// above left them, and attaches to routes only.
	externalauth.Kind,
	payloadprocessor.Kind,
	observability.Kind, // after dnspolicy: it reads whether its collectors are served
}

// NewScheme returns a scheme that decodes the core kinds and every policy
// kind.
func NewScheme() *model.Scheme {
	s := model.NewScheme()
	for _, k := range Kinds {
		s.Register(k.Name, k.New)
	}
	return s
}

// MaterialKeys lists what the policies in objs read from files and the
// environment, for the store to load.
func MaterialKeys(objs []model.Object) []string {
	var keys []string
	for _, o := range objs {
		if u, ok := o.(model.MaterialUser); ok {
			for _, s := range u.Materials() {
				keys = append(keys, model.MaterialKey(o, s))
			}
		}
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

// ReverseDNSChecks lists the reverse-DNS verifications the policies of cfg
// ask for, for the store to run before lowering (see dnspolicy).
func ReverseDNSChecks(cfg *model.Config) []model.ReverseDNSCheck {
	return dnspolicy.Checks(cfg)
}

// Inputs are what the store read for the policies before lowering: the
// files and variables they name, and the reverse-DNS results they ask for.
type Inputs struct {
	Materials  model.Materials
	ReverseDNS model.ReverseDNSResults
	// Now is when certificates and CRLs are judged valid; zero means
	// time.Now().
	Now time.Time
}

// Lower attaches every policy of cfg to its targets and applies it to the
// effective settings. It reports targets that do not exist or that the
// kind cannot attach to; two policies of one kind on one target conflict,
// and the one whose name sorts first wins while the other gets a condition.
func Lower(cfg *model.Config, in Inputs) model.Violations {
	var errs model.Violations
	now := in.Now
	if now.IsZero() {
		now = time.Now()
	}
	// Gateway listener files are the Gateway's own, not a policy's: they
	// are lowered first, so policies see the listeners' TLS.
	errs = append(errs, gatewaytls.Lower(cfg, in.Materials, now)...)
	idx := policy.NewIndex(cfg)
	for _, k := range Kinds {
		claimed := map[model.Ref]model.Ref{} // target → winning policy
		for _, o := range cfg.Objects {
			if o.GetTypeMeta().Kind != k.Name {
				continue
			}
			p := o.(model.Policy)
			pref := model.RefOf(p)
			v := model.NewValidator(p, &errs)
			for i, t := range p.Targets() {
				path := fmt.Sprintf("spec.targetRefs[%d]", i)
				if !slices.Contains(k.Scopes, t.Kind) {
					v.Errorf(path+".kind", "%s", model.ScopeError(k.Name, fmt.Sprintf("%q", t.Kind), k.Scopes, k.ScopeReason))
					continue
				}
				target := t.Ref(pref.Namespace)
				if !idx.Exists(target) {
					// A target that exists but is invalid has its own
					// violations; saying "does not exist" here would only
					// hide the root cause.
					if !cfg.Invalid[target] {
						v.Errorf(path+".name", "%s does not exist", target)
					}
					continue
				}
				if winner, taken := claimed[target]; taken {
					cfg.Conditions = append(cfg.Conditions, model.Condition{
						Object: pref.String(), Type: "Accepted", Status: false, Reason: "Conflicted",
						Message: fmt.Sprintf("%s already applies %s to %s; only one %s may target an object", winner, k.Name, target, k.Name),
					})
					continue
				}
				claimed[target] = pref
				k.Lower(policy.Context{Config: cfg, Index: idx, Materials: in.Materials, ReverseDNS: in.ReverseDNS, Now: now, Validator: v, Path: path}, p, target)
			}
		}
	}
	for _, k := range Kinds {
		if k.Finish != nil {
			k.Finish(cfg, idx)
		}
	}
	byRef := make(map[model.Ref]model.Object, len(cfg.Objects))
	for _, o := range cfg.Objects {
		byRef[model.RefOf(o)] = o
	}
	report := func(r model.Ref) *model.Validator { return model.NewValidator(byRef[r], &errs) }
	for _, k := range Kinds {
		if k.Check != nil {
			k.Check(cfg, idx, report)
		}
	}
	model.SortConditions(cfg.Conditions)
	return errs
}
