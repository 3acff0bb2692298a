package model

import (
	"fmt"
	"sort"
	"strings"
)

// API schemas a Backend can speak (spec.schema).
const (
	SchemaOpenAI          = "openai"
	SchemaAnthropic       = "anthropic"
	SchemaBedrockConverse = "bedrock-converse"
	SchemaGemini          = "gemini"
)

// Schemas are the values spec.schema accepts, in the order messages list
// them.
var Schemas = []string{SchemaOpenAI, SchemaAnthropic, SchemaBedrockConverse, SchemaGemini}

// providerSchemas are the schemas the provider presets speak.
var providerSchemas = map[string]string{
	"openai":            SchemaOpenAI,
	"azure-openai":      SchemaOpenAI,
	"openai-compatible": SchemaOpenAI,
	"anthropic":         SchemaAnthropic,
	"bedrock":           SchemaBedrockConverse,
	"gemini":            SchemaGemini,
	"vertex":            SchemaGemini,
}

// ProviderSchema is the schema a provider preset speaks, or "" for an
// unknown preset.
func ProviderSchema(provider string) string { return providerSchemas[provider] }

// EffectiveSchema is spec.schema, else the preset's, else openai.
func (b *Backend) EffectiveSchema() string {
	if b.Spec.Schema != "" {
		return b.Spec.Schema
	}
	if s, ok := providerSchemas[b.Spec.Provider]; ok {
		return s
	}
	return SchemaOpenAI
}

func validSchema(s string) bool {
	for _, x := range Schemas {
		if s == x {
			return true
		}
	}
	return false
}

// validateSchema refuses an unknown schema. A preset with another explicit
// schema is allowed without comment: some providers serve more than one
// API (Anthropic models on Vertex, OpenAI-compatible endpoints of Gemini),
// and the explicit one is what the backend is then reached with.
func (b *Backend) validateSchema(v *Validator) {
	if s := b.Spec.Schema; s != "" && !validSchema(s) {
		v.Errorf("spec.schema", "%q is not a schema: use one of %s", s, strings.Join(Schemas, ", "))
	}
}

// Translation between schemas is Envoy's: the transcoder AI filter of the
// ai_protocol_manager HTTP filter (Envoy 1.40, alpha) translates through a
// canonical form, OpenAI chat completions, and registers a dialect pack for
// OpenAI chat completions, Anthropic Messages and Gemini generateContent
// only (TranscodingEngine::createDefault in
// source/extensions/filters/http/ai_protocol_manager/transcoding_engine.cc).
// Any two of those three translate, one leg into the canonical form and
// one out of it; Bedrock Converse is no LLMProtocol at all
// (envoy/type/ai/v3/llm_protocol.proto), so nothing translates to or from
// it, and Envoy 1.37–1.39 translate nothing.
var translatableSchemas = map[string]bool{SchemaOpenAI: true, SchemaAnthropic: true, SchemaGemini: true}

// SchemasTranslatable reports whether Envoy can translate requests of
// clients speaking client for a backend speaking backend, and the
// responses back (true for equal schemas: nothing to translate).
func SchemasTranslatable(client, backend string) bool {
	return client == backend || (translatableSchemas[client] && translatableSchemas[backend])
}

// untranslatablePresets are presets whose request path names something
// tollgate does not know, so that a translated request cannot be sent to
// them: Envoy's transcoder writes the Gemini API's path,
// /v1beta/models/{model}:generateContent (createGeminiTranscodePack's
// envelope in transcoding_engine.cc), and tollgate writes
// /v1/chat/completions for OpenAI.
var untranslatablePresets = map[string]string{
	"vertex":       "Vertex AI names the project and location in the request path (/v1/projects/{project}/locations/{location}/publishers/google/models/{model}:generateContent), which a request translated from another schema does not carry; use provider: gemini (the Gemini API) as the fail-over target instead",
	"azure-openai": "Azure OpenAI names the deployment in the request path (/openai/deployments/{deployment}/chat/completions), which a request translated from another schema does not carry; use an openai or openai-compatible backend as the fail-over target instead",
}

// ClientSchema is the schema the clients of the rule speak: that of the
// rule's primary backends (the lowest priority with weight), which a
// client addresses directly. It is false when the rule has no backend or
// its primaries speak different schemas (an invalid config).
func (r *RuleConfig) ClientSchema() (string, bool) {
	primaries := r.primaryBackends()
	if len(primaries) == 0 {
		return "", false
	}
	s := primaries[0].Backend.Schema
	for _, wb := range primaries[1:] {
		if wb.Backend.Schema != s {
			return "", false
		}
	}
	return s, true
}

// primaryBackends are the rule's backends of the lowest priority whose
// weights add up to more than 0, as translate's Targets picks them.
func (r *RuleConfig) primaryBackends() []WeightedBackend {
	byPrio := map[uint32][]WeightedBackend{}
	var prios []uint32
	for _, wb := range r.Backends {
		if _, ok := byPrio[wb.Priority]; !ok {
			prios = append(prios, wb.Priority)
		}
		byPrio[wb.Priority] = append(byPrio[wb.Priority], wb)
	}
	sort.Slice(prios, func(i, j int) bool { return prios[i] < prios[j] })
	for _, p := range prios {
		var total uint64
		for _, wb := range byPrio[p] {
			total += uint64(wb.Weight)
		}
		if total > 0 {
			return byPrio[p]
		}
	}
	if len(prios) > 0 {
		return byPrio[prios[0]]
	}
	return nil
}

// resolveSchemas computes BackendConfig.ClientSchemas and refuses rules
// that would send a backend a body in a schema it cannot be translated to.
func (c *Config) resolveSchemas(errs *Violations) {
	seen := map[*RouteConfig]bool{}
	clients := map[*BackendConfig]map[string]bool{}
	for _, g := range c.Gateways {
		for _, l := range g.Listeners {
			for _, rc := range l.Routes {
				if seen[rc] {
					continue
				}
				seen[rc] = true
				c.resolveRouteSchemas(rc, clients, errs)
			}
		}
	}
	for _, b := range c.Backends {
		set := clients[b]
		if len(set) == 0 {
			b.ClientSchemas = nil
			continue
		}
		out := make([]string, 0, len(set))
		for s := range set {
			out = append(out, s)
		}
		sort.Strings(out)
		b.ClientSchemas = out
	}
}

func (c *Config) resolveRouteSchemas(rc *RouteConfig, clients map[*BackendConfig]map[string]bool, errs *Violations) {
	v := NewValidator(rc.Route, errs)
	for _, rule := range rc.Rules {
		rp := fmt.Sprintf("spec.rules[%d]", rule.Index)
		primaries := rule.primaryBackends()
		if len(primaries) == 0 {
			continue
		}
		client := primaries[0].Backend.Schema
		mixed := false
		for _, wb := range primaries[1:] {
			if wb.Backend.Schema != client {
				mixed = true
			}
		}
		if mixed {
			var parts []string
			for _, wb := range primaries {
				parts = append(parts, fmt.Sprintf("%s (%s)", wb.Backend.Ref, wb.Backend.Schema))
			}
			v.Errorf(rp+".backendRefs", "the primary backends speak different schemas: %s; a rule's clients speak one schema, that of its primary backends (the lowest priority with weight): give them one schema, or split them into separate rules or routes", strings.Join(parts, ", "))
			continue
		}
		for _, wb := range rule.Backends {
			b := wb.Backend
			if b.Schema == client {
				continue
			}
			path := c.backendRefPath(rc, rule, b)
			switch {
			case !SchemasTranslatable(client, b.Schema):
				v.Errorf(path, "%s speaks %s, and this rule's clients speak %s (the schema of its primary backends): Envoy's transcoder cannot translate between %s and %s (it translates only between openai, anthropic and gemini), so the request would reach %s in a schema it cannot read; fail over to a backend that speaks %s, or send %s clients to %s through a separate route", b.Ref, b.Schema, client, client, b.Schema, b.Ref, client, b.Schema, b.Ref)
			case untranslatablePresets[b.Provider] != "":
				v.Errorf(path, "%s (provider: %s) cannot receive requests translated from %s: %s", b.Ref, b.Provider, client, untranslatablePresets[b.Provider])
			default:
				if clients[b] == nil {
					clients[b] = map[string]bool{}
				}
				clients[b][client] = true
			}
		}
	}
}

// backendRefPath is the path of the backendRef of rule that resolved to b.
func (c *Config) backendRefPath(rc *RouteConfig, rule *RuleConfig, b *BackendConfig) string {
	ns := rc.Ref.Namespace
	if rule.Index < len(rc.Route.Spec.Rules) {
		for j, br := range rc.Route.Spec.Rules[rule.Index].BackendRefs {
			if (LocalRef{Name: br.Name, Namespace: br.Namespace}).Resolve(KindBackend, ns) == b.Ref {
				return fmt.Sprintf("spec.rules[%d].backendRefs[%d]", rule.Index, j)
			}
		}
	}
	return fmt.Sprintf("spec.rules[%d].backendRefs", rule.Index)
}
