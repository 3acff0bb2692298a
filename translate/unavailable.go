package translate

import (
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/tollgate-dev/tollgate/model"
)

// A backend may be unavailable (model.BackendConfig.Unavailable: e.g. its
// reverse DNS did not verify). It then has no cluster, and a rule sends its
// traffic to the rule's other backends by their weights. When none with a
// positive weight remains, the rule answers 503 with a body that says why:
// a workload sees at once that the gateway refuses, instead of a connect
// error to a cluster that does not exist.

// ServedBackends are the rule's backends Envoy may send traffic to, or nil
// when no available backend has a positive weight.
func ServedBackends(rule *model.RuleConfig) []model.WeightedBackend {
	var out []model.WeightedBackend
	var total uint64
	for _, wb := range rule.Backends {
		if wb.Backend.Unavailable == "" {
			out = append(out, wb)
			total += uint64(wb.Weight)
		}
	}
	if total == 0 {
		return nil
	}
	return out
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
