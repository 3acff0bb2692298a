package model

import (
	"slices"
)

// GuardRailSettings are the content guard rails of a gateway or a route
// (GuardRailsPolicy): which models may be asked for, how many output
// tokens, which prompts are refused, how large a body may be. Unset fields
// fall back to the gateway's (route → gateway).
type GuardRailSettings struct {
	// Policy is the GuardRailsPolicy this comes from.
	Policy Ref
	// AllowModels, when set, are the only models a request may ask for; a
	// request without a model is refused too.
	AllowModels []ModelMatch
	// DenyModels are models no request may ask for.
	DenyModels []ModelMatch
	// MaxOutputTokens caps the output tokens a request may ask for.
	MaxOutputTokens *OutputTokenCap
	// DenyPrompts are RE2 patterns; a request whose prompt (messages,
	// system prompt, input) matches any of them is refused. They are
	// matched, unanchored, against the JSON text of the prompt fields
	// (strings JSON-escaped), each on its own (PromptLiteral, PromptRegex).
	DenyPrompts []string
	// MaxRequestBody caps the request body, in bytes; a larger one is
	// refused with 413.
	MaxRequestBody *uint64
	// Sources say which policy set each field, for explanations:
	// field name → policy.
	Sources map[string]Ref
}

// OutputTokenCap is a cap on the output tokens a request asks for.
type OutputTokenCap struct {
	Limit uint64
	// Action is CapRefuse (a request asking for more is refused with 400)
	// or CapClamp (it is sent asking for Limit). Lowering always sets it.
	Action string
}

// Output token cap actions.
const (
	CapRefuse = "Refuse"
	CapClamp  = "Clamp"
)

// Bounds of GuardRailsPolicy fields.
const (
	// MaxOutputTokenLimit is the largest maxOutputTokens.limit: providers
	// read the field as a 32-bit signed integer.
	MaxOutputTokenLimit = 1<<31 - 1
	// MinRequestBodySize and MaxRequestBodySize bound maxRequestBodySize.
	// Below 1Ki even a short chat request is refused; above 1Gi one
	// request could exhaust an Envoy, which holds the body to read its
	// model and prompt.
	MinRequestBodySize = 1 << 10
	MaxRequestBodySize = 1 << 30
)

// Keys of GuardRailSettings.Sources, one per content field, named as the
// field is written in a GuardRailsPolicy's spec.
const (
	GuardRailAllowModels     = "models.allow"
	GuardRailDenyModels      = "models.deny"
	GuardRailMaxOutputTokens = "maxOutputTokens"
	GuardRailDenyPrompts     = "prompts.deny"
	GuardRailMaxRequestBody  = "maxRequestBodySize"
)

// GuardRailFields are the Sources keys, in spec order.
var GuardRailFields = []string{GuardRailAllowModels, GuardRailDenyModels, GuardRailMaxOutputTokens, GuardRailDenyPrompts, GuardRailMaxRequestBody}

// SetFields lists the content fields s sets (Sources keys), in spec
// order; none for a nil s.
func (s *GuardRailSettings) SetFields() []string {
	if s == nil {
		return nil
	}
	var out []string
	for _, f := range GuardRailFields {
		if s.isSet(f) {
			out = append(out, f)
		}
	}
	return out
}

func (s *GuardRailSettings) isSet(field string) bool {
	switch field {
	case GuardRailAllowModels:
		return s.AllowModels != nil
	case GuardRailDenyModels:
		return s.DenyModels != nil
	case GuardRailMaxOutputTokens:
		return s.MaxOutputTokens != nil
	case GuardRailDenyPrompts:
		return s.DenyPrompts != nil
	case GuardRailMaxRequestBody:
		return s.MaxRequestBody != nil
	}
	return false
}

// EffectiveGuardRails merges a route's content guard rails over its
// gateway's, field by field: a field the route sets replaces the
// gateway's entirely (a route's allow list replaces the gateway's allow
// list, it does not add to it), a field it leaves out is the gateway's.
// Either argument may be nil. Sources names, for every field set, the
// policy that set it; Policy is the route's policy when it sets any
// field, else the gateway's. The result is nil when neither sets a
// content field. It is a copy: changing it changes neither input.
//
// A model both allowed and denied is denied: the translation applies
// DenyModels whatever AllowModels says, also when the two come from
// different scopes.
func EffectiveGuardRails(g *GatewayConfig, r *RouteConfig) *GuardRailSettings {
	var scopes []*GuardRailSettings
	if g != nil {
		scopes = append(scopes, g.GuardRails)
	}
	if r != nil {
		scopes = append(scopes, r.GuardRails)
	}
	out := &GuardRailSettings{Sources: map[string]Ref{}}
	for _, s := range scopes {
		if len(s.SetFields()) == 0 {
			continue
		}
		out.Policy = s.Policy
		source := func(field string) {
			p := s.Policy
			if src, ok := s.Sources[field]; ok {
				p = src
			}
			out.Sources[field] = p
		}
		if s.AllowModels != nil {
			out.AllowModels = slices.Clone(s.AllowModels)
			source(GuardRailAllowModels)
		}
		if s.DenyModels != nil {
			out.DenyModels = slices.Clone(s.DenyModels)
			source(GuardRailDenyModels)
		}
		if s.MaxOutputTokens != nil {
			c := *s.MaxOutputTokens
			out.MaxOutputTokens = &c
			source(GuardRailMaxOutputTokens)
		}
		if s.DenyPrompts != nil {
			out.DenyPrompts = slices.Clone(s.DenyPrompts)
			source(GuardRailDenyPrompts)
		}
		if s.MaxRequestBody != nil {
			n := *s.MaxRequestBody
			out.MaxRequestBody = &n
			source(GuardRailMaxRequestBody)
		}
	}
	if len(out.Sources) == 0 {
		return nil
	}
	return out
}

// ValidateModelMatch checks a model condition at path, reporting on
// path+".type" or path+".value" (as HTTPRoute model matches are checked).
func ValidateModelMatch(v *Validator, path string, m ModelMatch) {
	validateModelMatch(v, path, m)
}
