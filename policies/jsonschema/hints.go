package jsonschema

import (
	"encoding/json"
	"maps"
	"net/http"
	"reflect"
	"slices"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/policies/backendtls"
	"github.com/tollgate-dev/tollgate/policies/credentialinjector"
	"github.com/tollgate-dev/tollgate/policies/dnspolicy"
	"github.com/tollgate-dev/tollgate/policies/egresspolicy"
	"github.com/tollgate-dev/tollgate/policies/externalauth"
	"github.com/tollgate-dev/tollgate/policies/guardrails"
	"github.com/tollgate-dev/tollgate/policies/observability"
	"github.com/tollgate-dev/tollgate/policies/payloadprocessor"
	"github.com/tollgate-dev/tollgate/policies/qoscontroller"
	"github.com/tollgate-dev/tollgate/policies/ratelimit"
	"github.com/tollgate-dev/tollgate/policies/regionallowlist"
)

// fieldKey names a struct field by its Go type and Go field name.
type fieldKey struct {
	typ   reflect.Type
	field string
}

// hint is what the validators (each kind's Validate) check of one field
// that its Go type does not say: the values of an enum, a pattern, a range,
// that it is required. For a list, the values' hints go to its items and
// minItems to the list.
//
// Each hint is checked against the real decoder at every place the field
// appears (TestHints): every enum value is accepted and another value is
// refused, with a message naming exactly these values where the message
// lists them; a required field left out, a list left empty, a value just
// out of range or not matching the pattern are refused, and the bounds
// are accepted. Values come from the code's own tables and constants where
// it has them.
type hint struct {
	enum      []string
	pattern   string
	maxLength int
	min, max  string // JSON numbers
	// exclusiveMin is a bound the value must be above.
	exclusiveMin string
	minItems     int
	required     bool
}

func typeOf[T any]() reflect.Type { return reflect.TypeFor[T]() }

// port is validatePort's range (model/types.go).
var port = hint{min: "1", max: "65535"}

func atLeastOne() hint { return hint{min: "1"} }

func with(h hint, f func(*hint)) hint { f(&h); return h }

var hints = map[fieldKey]hint{
	// metadata: validateMeta (model/types.go).
	{typeOf[model.ObjectMeta](), "Name"}:      {required: true, pattern: model.ObjectNamePattern, maxLength: 253},
	{typeOf[model.ObjectMeta](), "Namespace"}: {pattern: model.DNSLabelPattern, maxLength: 63},
	// model.ValidateTargetRefs.
	{typeOf[model.TargetRef](), "Kind"}: {required: true},
	{typeOf[model.TargetRef](), "Name"}: {required: true},

	// Gateway (model/types.go, model/listenertls.go).
	{typeOf[model.GatewaySpec](), "Mode"}:             {enum: []string{model.ModeEndpoint, model.ModeParent}},
	{typeOf[model.GatewaySpec](), "Listeners"}:        {required: true, minItems: 1},
	{typeOf[model.GatewayParentRef](), "Name"}:        {required: true},
	{typeOf[model.GatewayParentRef](), "SectionName"}: {pattern: model.DNSLabelPattern},
	{typeOf[model.GatewayParentRef](), "Port"}:        port,
	{typeOf[model.ParentSPIFFE](), "ID"}:              {required: true},
	{typeOf[model.ParentSAN](), "Type"}:               {required: true, enum: []string{"DNS", "URI"}},
	{typeOf[model.ParentSAN](), "Value"}:              {required: true},
	{typeOf[model.Listener](), "Name"}:                {required: true, pattern: model.DNSLabelPattern, maxLength: 63},
	{typeOf[model.Listener](), "Port"}:                with(port, func(h *hint) { h.required = true }),
	{typeOf[model.Listener](), "Protocol"}:            {required: true, enum: []string{model.ListenerHTTP, model.ListenerHTTPS}},
	{typeOf[model.ClientValidation](), "Mode"}:        {enum: []string{model.ClientRequire, model.ClientOptional}},
	{typeOf[model.ClientSPIFFE](), "TrustDomains"}:    {required: true, minItems: 1},
	{typeOf[model.SANMatch](), "Type"}:                {required: true, enum: []string{"URI", "DNS"}},

	// Backend.
	{typeOf[model.BackendSpec](), "Provider"}: {enum: model.ProviderNames()},
	{typeOf[model.BackendSpec](), "Port"}:     port,
	{typeOf[model.BackendSpec](), "Protocol"}: {enum: []string{model.ProtocolAuto, model.ProtocolHTTP1, model.ProtocolHTTP2}},
	{typeOf[model.BackendSpec](), "Region"}:   {pattern: model.DNSLabelPattern},
	{typeOf[model.BackendSpec](), "Schema"}:   {enum: slices.Clone(model.Schemas)},
	{typeOf[model.BackendAddress](), "IP"}:    {required: true},
	{typeOf[model.BackendAddress](), "Port"}:  port,
	{typeOf[model.ModelMapping](), "From"}:    {required: true},
	{typeOf[model.ModelMapping](), "To"}:      {required: true},

	// HTTPRoute.
	{typeOf[model.HTTPRouteSpec](), "ParentRefs"}: {required: true, minItems: 1},
	{typeOf[model.HTTPRouteSpec](), "Rules"}:      {required: true, minItems: 1},
	{typeOf[model.ParentRef](), "Name"}:           {required: true},
	{typeOf[model.RouteRule](), "Name"}:           {pattern: model.DNSLabelPattern},
	{typeOf[model.RouteRule](), "BackendRefs"}:    {required: true, minItems: 1},
	{typeOf[model.BackendRef](), "Name"}:          {required: true},
	{typeOf[model.RouteMatch](), "Method"}: {enum: []string{http.MethodConnect, http.MethodDelete, http.MethodGet, http.MethodHead,
		http.MethodOptions, http.MethodPatch, http.MethodPost, http.MethodPut, http.MethodTrace}},
	{typeOf[model.PathMatch](), "Type"}:  {enum: []string{model.MatchPathPrefix, model.MatchExact, model.MatchRegularExpression}},
	{typeOf[model.ValueMatch](), "Type"}: {enum: []string{model.MatchExact, model.MatchRegularExpression}},
	{typeOf[model.ValueMatch](), "Name"}: {required: true},
	{typeOf[model.ModelMatch](), "Type"}: {enum: []string{model.MatchExact, model.MatchPrefix, model.MatchRegularExpression}},
	// Every backendRef and collectorRef names its Backend.
	{typeOf[model.LocalRef](), "Name"}: {required: true},

	// BackendTLSPolicy.
	{typeOf[backendtls.Spec](), "MinVersion"}:               {enum: []string{"TLSv1_2", "TLSv1_3"}},
	{typeOf[backendtls.Spec](), "ALPN"}:                     {enum: []string{"h2", "http/1.1"}},
	{typeOf[backendtls.SubjectAltName](), "Type"}:           {required: true, enum: []string{"DNS", "URI"}},
	{typeOf[backendtls.SubjectAltName](), "Value"}:          {required: true},
	{typeOf[backendtls.ClientCertificate](), "Certificate"}: {required: true},
	{typeOf[backendtls.ClientCertificate](), "PrivateKey"}:  {required: true},

	// CredentialInjector.
	{typeOf[credentialinjector.APIKey](), "Preset"}:           {enum: slices.Sorted(maps.Keys(credentialinjector.Presets))},
	{typeOf[credentialinjector.APIKey](), "Secret"}:           {required: true},
	{typeOf[credentialinjector.OAuth2](), "TokenURL"}:         {required: true},
	{typeOf[credentialinjector.OAuth2](), "ClientID"}:         {required: true},
	{typeOf[credentialinjector.OAuth2](), "ClientSecret"}:     {required: true},
	{typeOf[credentialinjector.AWSKeys](), "AccessKeyID"}:     {required: true},
	{typeOf[credentialinjector.AWSKeys](), "SecretAccessKey"}: {required: true},

	// EgressPolicy.
	{typeOf[egresspolicy.ConnectionLimits](), "MaxConnections"}:     atLeastOne(),
	{typeOf[egresspolicy.ConnectionLimits](), "MaxPendingRequests"}: atLeastOne(),
	{typeOf[egresspolicy.ConnectionLimits](), "MaxRequests"}:        atLeastOne(),
	{typeOf[egresspolicy.AllowedSources](), "CIDRs"}:                {required: true, minItems: 1},

	// QoSController.
	{typeOf[qoscontroller.OutlierDetection](), "MaxEjectionPercent"}: {min: "1", max: "100"},
	{typeOf[qoscontroller.SuccessRate](), "MinimumHosts"}:            atLeastOne(),
	{typeOf[qoscontroller.SuccessRate](), "RequestVolume"}:           atLeastOne(),
	{typeOf[qoscontroller.SuccessRate](), "StdevFactor"}:             {min: "0.001", max: "1000"},
	{typeOf[qoscontroller.CircuitBreakers](), "MaxConnections"}:      atLeastOne(),
	{typeOf[qoscontroller.CircuitBreakers](), "MaxPendingRequests"}:  atLeastOne(),
	{typeOf[qoscontroller.CircuitBreakers](), "MaxRequests"}:         atLeastOne(),
	{typeOf[qoscontroller.RetryBudget](), "BudgetPercent"}:           {exclusiveMin: "0", max: "100"},
	{typeOf[qoscontroller.HealthCheck](), "Path"}:                    {required: true},
	{typeOf[qoscontroller.HealthCheck](), "UnhealthyThreshold"}:      atLeastOne(),
	{typeOf[qoscontroller.HealthCheck](), "HealthyThreshold"}:        atLeastOne(),
	{typeOf[qoscontroller.HealthCheck](), "ExpectedStatuses"}:        {minItems: 1, min: "100", max: "599"},

	// DNSPolicy.
	{typeOf[dnspolicy.Spec](), "Resolvers"}: {minItems: 1},
	{typeOf[dnspolicy.Spec](), "AddressFamily"}: {enum: []string{model.FamilyIPv4, model.FamilyIPv6,
		model.FamilyIPv4Preferred, model.FamilyIPv6Preferred, model.FamilyAny}},
	{typeOf[dnspolicy.ReverseDNS](), "AllowedSuffixes"}: {required: true, minItems: 1},

	// GuardRailsPolicy.
	{typeOf[guardrails.Backoff](), "Retries"}:        {max: "10"},
	{typeOf[guardrails.Backoff](), "RetryOn"}:        {enum: slices.Concat(model.SafeRetryOn, model.UnsafeRetryOn)},
	{typeOf[guardrails.Backoff](), "StatusCodes"}:    {min: "400", max: "599"},
	{typeOf[guardrails.Models](), "Allow"}:           {minItems: 1},
	{typeOf[guardrails.Models](), "Deny"}:            {minItems: 1},
	{typeOf[guardrails.MaxOutputTokens](), "Limit"}:  {required: true, min: "1", max: num(model.MaxOutputTokenLimit).String()},
	{typeOf[guardrails.MaxOutputTokens](), "Action"}: {enum: []string{model.CapRefuse, model.CapClamp}},
	{typeOf[guardrails.Prompts](), "Deny"}:           {required: true, minItems: 1},

	// RateLimitPolicy.
	{typeOf[ratelimit.Spec](), "DefaultMaxOutputTokens"}: {min: "1", max: num(ratelimit.MaxReservation).String()},
	{typeOf[ratelimit.Service](), "BackendRef"}:          {required: true},
	{typeOf[ratelimit.Limit](), "Name"}:                  {required: true},
	{typeOf[ratelimit.Limit](), "Requests"}:              budget(),
	{typeOf[ratelimit.Limit](), "Per"}:                   {required: true, enum: slices.Clone(model.RateLimitUnits)},
	{typeOf[ratelimit.Limit](), "By"}:                    {enum: slices.Clone(model.RateLimitKeys)},
	{typeOf[ratelimit.Tokens](), "Input"}:                budget(),
	{typeOf[ratelimit.Tokens](), "Output"}:               budget(),
	{typeOf[ratelimit.Tokens](), "Total"}:                budget(),
	{typeOf[ratelimit.CIDRGroup](), "Name"}:              {required: true},
	{typeOf[ratelimit.CIDRGroup](), "CIDRs"}:             {required: true, minItems: 1},
	{typeOf[ratelimit.Local](), "Requests"}:              with(budget(), func(h *hint) { h.required = true }),
	{typeOf[ratelimit.Local](), "Per"}:                   {required: true, enum: slices.Clone(model.RateLimitUnits)},

	// RegionAllowListPolicy: model.ValidRegion.
	{typeOf[regionallowlist.Spec](), "Regions"}: {required: true, minItems: 1, pattern: model.DNSLabelPattern, maxLength: 63},

	// ExternalAuth.
	{typeOf[externalauth.Rule](), "Action"}:            {required: true, enum: []string{model.AccessAllow, model.AccessDeny}},
	{typeOf[externalauth.Rule](), "From"}:              {required: true, minItems: 1},
	{typeOf[externalauth.Source](), "SourceCIDRs"}:     {minItems: 1},
	{typeOf[externalauth.GRPCService](), "BackendRef"}: {required: true},
	{typeOf[externalauth.HTTPService](), "BackendRef"}: {required: true},

	// PayloadProcessor.
	{typeOf[payloadprocessor.Spec](), "Service"}:                 {required: true},
	{typeOf[payloadprocessor.Service](), "BackendRef"}:           {required: true},
	{typeOf[payloadprocessor.Phases](), "RequestBody"}:           {enum: slices.Clone(model.ProcessorBodyModes)},
	{typeOf[payloadprocessor.Phases](), "ResponseBody"}:          {enum: slices.Clone(model.ProcessorBodyModes)},
	{typeOf[payloadprocessor.HeaderMutations](), "OnDisallowed"}: {enum: []string{payloadprocessor.OnDisallowedRefuse, payloadprocessor.OnDisallowedIgnore}},

	// ObservabilityPolicy.
	{typeOf[observability.JSONSink](), "Path"}:                  {required: true},
	{typeOf[observability.OpenTelemetrySink](), "CollectorRef"}: {required: true},
	{typeOf[observability.Tracing](), "CollectorRef"}:           {required: true},
	{typeOf[observability.Tracing](), "SamplingPercent"}:        {min: "0", max: "100"},
}

// budget is a rate limit amount's range (ratelimit.validateAmount).
func budget() hint { return hint{min: "1", max: num(uint64(ratelimit.MaxBudget)).String()} }

// apply adds the hint to the schema of field f.
func (g *generator) apply(h hint, s *Schema, f yamlField) *Schema {
	target := s
	if s.Type == "array" && s.Items != nil {
		if h.minItems > 0 {
			s.MinItems = &h.minItems
		}
		target = s.Items
	} else if h.minItems > 0 {
		g.fail("hint for %s.%s: minItems on a field that is no list", f.owner, f.field.Name)
	}
	values := len(h.enum) > 0 || h.pattern != "" || h.maxLength > 0 || h.min != "" || h.max != "" || h.exclusiveMin != ""
	if values && target.Ref != "" {
		g.fail("hint for %s.%s: values of a struct", f.owner, f.field.Name)
	}
	if len(h.enum) > 0 {
		target.Enum = h.enum
	}
	if h.pattern != "" {
		target.Pattern = h.pattern
	}
	if h.maxLength > 0 {
		target.MaxLength = &h.maxLength
	}
	if h.min != "" {
		target.Minimum = json.Number(h.min)
	}
	if h.exclusiveMin != "" {
		target.Minimum = ""
		target.ExclusiveMinimum = json.Number(h.exclusiveMin)
	}
	if h.max != "" {
		target.Maximum = json.Number(h.max)
	}
	return s
}
