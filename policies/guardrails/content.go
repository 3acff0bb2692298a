package guardrails

// The content guard rails: model lists, the output token cap, prompt
// patterns and the body size limit (everything but backoff).

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/policies/policy"
)

func validateModels(v *model.Validator, pol *GuardRailsPolicy) {
	m := pol.Spec.Models
	if m.Allow == nil && m.Deny == nil {
		v.Errorf("spec.models", "set allow, deny or both: a model condition is {type: Exact|Prefix|RegularExpression, value: ...}")
		return
	}
	lists := []struct {
		name    string
		entries []model.ModelMatch
	}{{"allow", m.Allow}, {"deny", m.Deny}}
	valid := map[string]bool{} // paths of entries that passed their own checks
	for _, l := range lists {
		path := "spec.models." + l.name
		if l.entries != nil && len(l.entries) == 0 {
			if l.name == "allow" {
				v.Errorf(path, "an empty allow list refuses every request: list the models requests may ask for, or leave allow out to allow every model not denied")
			} else {
				v.Errorf(path, "an empty deny list denies nothing: list models, or leave deny out")
			}
			continue
		}
		seen := map[model.ModelMatch]int{}
		for i, e := range l.entries {
			p := fmt.Sprintf("%s[%d]", path, i)
			var errs model.Violations // first on the side, to know if e is valid
			model.ValidateModelMatch(model.NewValidator(pol, &errs), p, e)
			if len(errs) > 0 {
				model.ValidateModelMatch(v, p, e)
				continue
			}
			e = normalize(e)
			if j, dup := seen[e]; dup {
				v.Errorf(p, "%s is already listed at %s[%d]: remove one", e, path, j)
				continue
			}
			seen[e] = i
			valid[p] = true
		}
	}
	// Deny wins, so an allow entry that a deny entry covers allows
	// nothing: almost certainly a mistake in one of the lists.
	for i, a := range m.Allow {
		ap := fmt.Sprintf("spec.models.allow[%d]", i)
		if !valid[ap] {
			continue
		}
		a = normalize(a)
		for j, d := range m.Deny {
			dp := fmt.Sprintf("spec.models.deny[%d]", j)
			if !valid[dp] {
				continue
			}
			d = normalize(d)
			switch {
			case a == d:
				v.Errorf(ap, "%s is also listed at %s, and deny wins: remove it from one of the lists", a, dp)
			case a.Type == model.MatchExact && covers(d, a.Value),
				a.Type == model.MatchPrefix && d.Type == model.MatchPrefix && strings.HasPrefix(a.Value, d.Value):
				v.Errorf(ap, "%s is denied by %s (%s), and deny wins, so it is never allowed: remove it, or narrow the deny entry", a, dp, d)
			default:
				continue
			}
			break
		}
	}
}

// normalize spells the default match type out, so that equal conditions
// compare equal.
func normalize(m model.ModelMatch) model.ModelMatch {
	if m.Type == "" {
		m.Type = model.MatchExact
	}
	return m
}

// covers reports whether the (valid) model condition m matches name.
func covers(m model.ModelMatch, name string) bool {
	re, err := regexp.Compile("^(?:" + m.ModelRegex() + ")$")
	return err == nil && re.MatchString(name)
}

func validateMaxOutputTokens(v *model.Validator, t *MaxOutputTokens) {
	switch {
	case t.Limit == nil:
		v.Errorf("spec.maxOutputTokens.limit", "set limit: the most output tokens a request may ask for, 1 to %d", model.MaxOutputTokenLimit)
	case *t.Limit < 1 || *t.Limit > model.MaxOutputTokenLimit:
		v.Errorf("spec.maxOutputTokens.limit", "%d must be from 1 to %d (providers read the field as a 32-bit integer)", *t.Limit, model.MaxOutputTokenLimit)
	}
	switch t.Action {
	case "", model.CapRefuse, model.CapClamp:
	default:
		v.Errorf("spec.maxOutputTokens.action", "%q is not an action: use Refuse (answer 400, the default) or Clamp (send the request asking for limit)", t.Action)
	}
}

// emptyTexts are texts that contain no prompt at all: a pattern that
// matches each of them matches every request.
var emptyTexts = []string{"", "x", `{"messages":[]}`}

func validatePrompts(v *model.Validator, p *Prompts) {
	if len(p.Deny) == 0 {
		v.Errorf("spec.prompts.deny", "list the RE2 patterns of prompts to refuse, or leave prompts out")
		return
	}
	ok := true
	seen := map[string]int{}
	for i, pat := range p.Deny {
		path := fmt.Sprintf("spec.prompts.deny[%d]", i)
		if j, dup := seen[pat]; dup {
			v.Errorf(path, "%q is already listed at spec.prompts.deny[%d]: remove one", pat, j)
			ok = false
			continue
		}
		seen[pat] = i
		if pat == "" {
			v.Errorf(path, "an empty pattern matches every prompt, so every request would be refused: remove it")
			ok = false
			continue
		}
		// Each pattern is its own matcher in Envoy (translate/body.go):
		// a plain string a contains matcher, anything else the RE2
		// model.PromptRegex, which must fit Envoy's program-size limit.
		if msg := model.PromptPatternProblem(pat); msg != "" {
			v.Errorf(path, "%s", msg)
			ok = false
			continue
		}
		if re := regexp.MustCompile(pat); matchesAll(re) {
			v.Errorf(path, "%q matches the empty string, so it matches every prompt and every request would be refused: make it require at least one character (e.g. + instead of *)", pat)
			ok = false
		}
	}
	_ = ok
}

func matchesAll(re *regexp.Regexp) bool {
	for _, t := range emptyTexts {
		if !re.MatchString(t) {
			return false
		}
	}
	return true
}

// content is the content guard rails of p as the model holds them, nil
// when p sets none.
func content(p *GuardRailsPolicy) *model.GuardRailSettings {
	s := &model.GuardRailSettings{Policy: model.RefOf(p)}
	if m := p.Spec.Models; m != nil {
		s.AllowModels = m.Allow
		s.DenyModels = m.Deny
	}
	if t := p.Spec.MaxOutputTokens; t != nil && t.Limit != nil {
		action := t.Action
		if action == "" {
			action = model.CapRefuse
		}
		s.MaxOutputTokens = &model.OutputTokenCap{Limit: uint64(*t.Limit), Action: action}
	}
	if pr := p.Spec.Prompts; pr != nil {
		s.DenyPrompts = pr.Deny
	}
	s.MaxRequestBody = p.Spec.MaxRequestBodySize.Ptr()
	fields := s.SetFields()
	if len(fields) == 0 {
		return nil
	}
	s.Sources = make(map[string]model.Ref, len(fields))
	for _, f := range fields {
		s.Sources[f] = s.Policy
	}
	return s
}

// checkConflicts refuses a content field that two GuardRailsPolicies set
// on the same object. Lowering applies only the first of them by name
// (the other gets a Conflicted condition), which for a content guard rail
// would leave a model, prompt or size limit the operator wrote
// unenforced; it is an error instead, on the policy that would be left
// out. Policies that set different fields of one object keep the
// Conflicted condition, as for every kind.
func checkConflicts(cfg *model.Config, idx *policy.Index, report func(model.Ref) *model.Validator) {
	first := map[model.Ref]map[string]model.Ref{} // target → field → policy
	for _, o := range cfg.Objects {
		p, ok := o.(*GuardRailsPolicy)
		if !ok {
			continue
		}
		fields := content(p).SetFields()
		if len(fields) == 0 {
			continue
		}
		pref := model.RefOf(p)
		for _, t := range p.Spec.TargetRefs {
			target := t.Ref(pref.Namespace)
			if (target.Kind != model.KindGateway && target.Kind != model.KindHTTPRoute) || !idx.Exists(target) {
				continue // reported while lowering
			}
			set := first[target]
			if set == nil {
				set = map[string]model.Ref{}
				first[target] = set
			}
			for _, f := range fields {
				other, taken := set[f]
				switch {
				case !taken:
					set[f] = pref
				case other != pref: // a policy may list a target twice
					report(pref).Errorf("spec."+f, "%s sets %s on %s too, and only one GuardRailsPolicy applies to an object (the first by name), so this one would not be enforced: merge the two policies into one",
						other, f, target)
				}
			}
		}
	}
}
