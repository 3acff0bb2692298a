package translate

import (
	"encoding/json"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/tollgate-dev/tollgate/model"
)

// A backend may be unavailable (model.BackendConfig.Unavailable: e.g. its
// reverse DNS did not verify), or refused by the gateway's
// RegionAllowListPolicy (model.GatewayConfig.RegionRefused). Either way it
// has no cluster on that gateway, and a rule sends its traffic to the
// rule's other backends by their weights. When none with a positive weight
// remains, the rule answers with a body that says why, instead of a
// connect error to a cluster that does not exist: 503 when a backend the
// policy allows is unavailable (it may come back), 403 when every backend
// is refused by region (only a policy change brings them back). The two
// never mix: a 403 is a decision, a 503 a failure.

// ServedBackends are the rule's backends gateway g may send traffic to, or
// nil when no such backend has a positive weight.
func ServedBackends(g *model.GatewayConfig, rule *model.RuleConfig) []model.WeightedBackend {
	var out []model.WeightedBackend
	var total uint64
	for _, wb := range rule.Backends {
		if g.Serves(wb.Backend) {
			out = append(out, wb)
			total += uint64(wb.Weight)
		}
	}
	if total == 0 {
		return nil
	}
	return out
}

// UnservedResponse is the answer of a rule none of whose backends g can
// serve: RegionRefusedResponse when every backend that is not served is
// refused by region, else UnavailableResponse.
func UnservedResponse(g *model.GatewayConfig, rule *model.RuleConfig) *routev3.DirectResponseAction {
	var refused []*model.RegionRefusal
	for _, wb := range rule.Backends {
		rf := g.RegionRefusalOf(wb.Backend)
		if rf == nil && wb.Backend.Unavailable != "" {
			return UnavailableResponse(rule)
		}
		if rf != nil {
			refused = append(refused, rf)
		}
	}
	if len(refused) == 0 {
		return UnavailableResponse(rule)
	}
	return RegionRefusedResponse(refused)
}

// UnavailableResponse is the 503 of a rule none of whose backends can be
// served.
func UnavailableResponse(rule *model.RuleConfig) *routev3.DirectResponseAction {
	var reasons []string
	for _, wb := range rule.Backends {
		if r := wb.Backend.Unavailable; r != "" {
			reasons = append(reasons, "backend "+wb.Backend.Ref.Namespace+"/"+wb.Backend.Ref.Name+": "+r)
		}
	}
	body := "tollgate: no backend of this route is available"
	if len(reasons) > 0 {
		body += ": " + strings.Join(reasons, "; ")
	}
	body += " (tollgate's /status/policies has the details)\n"
	return &routev3.DirectResponseAction{
		Status: 503,
		Body:   &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: body}},
	}
}

// RegionErrorType is the error.type of the 403 a region refusal answers.
const RegionErrorType = "region_not_allowed"

// regionError is the body of a region refusal, in the OpenAI-style
// {"error": {...}} shape providers' clients already parse.
type regionError struct {
	Error struct {
		Type    string `json:"type"`
		Code    int    `json:"code"`
		Message string `json:"message"`
		Policy  string `json:"policy"`
		Backend string `json:"backend"`
		Region  string `json:"region"`
	} `json:"error"`
}

// RegionRefusedResponse is the 403 of a rule whose backends a gateway's
// RegionAllowListPolicy refuses (refused: at least one, in the rule's
// order). policy, backend and region name the first; the message lists
// them all. An unlabelled backend has region "".
func RegionRefusedResponse(refused []*model.RegionRefusal) *routev3.DirectResponseAction {
	var e regionError
	first := refused[0]
	e.Error.Type = RegionErrorType
	e.Error.Code = 403
	e.Error.Policy = first.Policy.String()
	e.Error.Backend = first.Backend.String()
	e.Error.Region = first.Region
	parts := make([]string, len(refused))
	for i, r := range refused {
		parts[i] = r.Describe()
	}
	e.Error.Message = "tollgate: this route's destination is outside the regions this gateway may reach: " + strings.Join(parts, "; ")
	body, err := json.Marshal(e)
	if err != nil {
		panic(err) // strings only: cannot fail
	}
	return &routev3.DirectResponseAction{
		Status: 403,
		Body:   &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: string(body) + "\n"}},
	}
}
