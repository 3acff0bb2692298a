package xds

import (
	"fmt"
	"sort"
	"strings"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/translate"
)

// Programmed is answered per object from what the Envoys ACKed: an object
// is Programmed once every connected Envoy of every gateway whose
// configuration it shapes has ACKed, for each xDS type holding a resource
// the object produced (translate.Origin), the version of that type the
// gateway is served now. Versions are content hashes per type, so this is
// exact for the object's own types and errs on the side of "Pending" when
// another object's change of the same type is still in flight.

// Reasons of Programmed.
const (
	ReasonProgrammed       = "Programmed"
	ReasonPending          = "Pending"
	ReasonNoEnvoyConnected = "NoEnvoyConnected"
	ReasonNotInUse         = "NotInUse"
)

// maxNamedNodes bounds the nodes a message names.
const maxNamedNodes = 5

// objectTypes is, per object (model.Ref.String()), the gateways whose
// resources it produced and the short types of those resources.
type objectTypes map[string]map[string]map[string]bool

// usage computes objectTypes for cfg, whose resources are named by names,
// once per configuration. It runs without s.mu, so that a large
// configuration's status never holds up a publication.
func (s *Server) usage(cfg *model.Config, names map[string]map[string][]string) objectTypes {
	s.usageMu.Lock()
	defer s.usageMu.Unlock()
	if s.usageCfg == cfg && s.usageOf != nil {
		return s.usageOf
	}
	out := objectTypes{}
	for gw, byType := range names {
		for typ, names := range byType {
			for _, name := range names {
				for _, ref := range translate.Origin(cfg, gw, "", name) {
					o := ref.String()
					if out[o] == nil {
						out[o] = map[string]map[string]bool{}
					}
					if out[o][gw] == nil {
						out[o][gw] = map[string]bool{}
					}
					out[o][gw][typ] = true
				}
			}
		}
	}
	s.usageCfg, s.usageOf = cfg, out
	return out
}

// ProgrammedConditions returns the Programmed condition of every object of
// the configuration last served.
func (s *Server) ProgrammedConditions() []model.Condition {
	nodes := s.tracker.snapshot().Nodes
	s.mu.RLock()
	cfg, names := s.cfg, s.names
	gatewayRefs := make(map[string]string, len(s.gatewayObjects))
	for k, v := range s.gatewayObjects {
		gatewayRefs[k] = v
	}
	s.mu.RUnlock()
	if cfg == nil {
		return nil
	}
	use := s.usage(cfg, names)

	byGateway := map[string][]NodeStatus{}
	for _, n := range nodes {
		byGateway[n.Gateway] = append(byGateway[n.Gateway], n)
	}
	served := map[string]map[string]string{}
	versions := func(gw string) map[string]string {
		if v, ok := served[gw]; ok {
			return v
		}
		served[gw] = s.Versions(gw)
		return served[gw]
	}
	out := make([]model.Condition, 0, len(cfg.Objects))
	for _, o := range cfg.Objects {
		ref := model.RefOf(o).String()
		out = append(out, programmed(ref, use[ref], byGateway, versions, gatewayRefs))
	}
	return out
}

// programmed is one object's condition.
func programmed(ref string, gws map[string]map[string]bool, byGateway map[string][]NodeStatus, versions func(string) map[string]string, gatewayRefs map[string]string) model.Condition {
	c := model.Condition{Object: ref, Type: ConditionProgrammed}
	if len(gws) == 0 {
		c.Reason = ReasonNotInUse
		c.Message = "no gateway's configuration uses it (for a Backend: no HTTPRoute sends traffic to it; for a policy: it targets nothing that is served)"
		return c
	}
	keys := make([]string, 0, len(gws))
	for gw := range gws {
		keys = append(keys, gw)
	}
	sort.Strings(keys)
	var done, pending, unconnected []string
	for _, gw := range keys {
		name := gatewayRefs[gw]
		if name == "" {
			name = gw
		}
		nodes := byGateway[gw]
		if len(nodes) == 0 {
			unconnected = append(unconnected, name)
			continue
		}
		want := versions(gw)
		var ok, lag []string
		for _, n := range nodes {
			current := true
			for typ := range gws[gw] {
				if n.Acked[typ] != want[typ] {
					current = false
					break
				}
			}
			if current {
				ok = append(ok, n.NodeID)
			} else {
				lag = append(lag, n.NodeID)
			}
		}
		if len(lag) == 0 {
			done = append(done, fmt.Sprintf("all %d Envoy(s) of %s (%s)", len(ok), name, someNodes(ok)))
		} else {
			pending = append(pending, fmt.Sprintf("%d of %d Envoy(s) of %s have ACKed it; waiting for %s", len(ok), len(nodes), name, someNodes(lag)))
		}
	}
	switch {
	case len(pending) > 0:
		c.Reason = ReasonPending
		c.Message = strings.Join(pending, "; ")
	case len(done) == 0:
		c.Reason = ReasonNoEnvoyConnected
		c.Message = fmt.Sprintf("no Envoy of %s is connected: start one with tollgate bootstrap's configuration", strings.Join(unconnected, ", "))
	default:
		c.Status, c.Reason = true, ReasonProgrammed
		c.Message = "ACKed by " + strings.Join(done, "; ")
		if len(unconnected) > 0 {
			c.Message += fmt.Sprintf("; no Envoy of %s is connected", strings.Join(unconnected, ", "))
		}
	}
	return c
}

// someNodes names at most maxNamedNodes nodes.
func someNodes(ids []string) string {
	sort.Strings(ids)
	if len(ids) <= maxNamedNodes {
		return strings.Join(ids, ", ")
	}
	return strings.Join(ids[:maxNamedNodes], ", ") + fmt.Sprintf(" and %d more", len(ids)-maxNamedNodes)
}
