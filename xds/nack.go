package xds

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/translate"
)

// A NACK says what Envoy refused, not which policy caused it. tollgate
// maps it back: the rejected response's resources that Envoy's message
// names (Envoy names the resource in its refusals, e.g. "Error
// adding/updating listener(s) listener/http: ..." from
// ListenerManagerImpl, "cluster: backend/default/openai ..." from the
// cluster manager), or, when it names none, those the node asked for (a
// RouteConfiguration or ClusterLoadAssignment subscription); then, with
// translate.Origin, the Backend, HTTPRoute, Gateway and policies that
// produced each. The NACK carries both (/status/nodes), and each object
// gets Programmed=False with the node and Envoy's message
// (/status/policies) until the node accepts a later version of that type.

// ConditionProgrammed is whether Envoys run an object's configuration;
// ReasonRejected means a node NACKed a resource the object produced.
const (
	ConditionProgrammed = "Programmed"
	ReasonRejected      = "RejectedByEnvoy"
)

// maxNackMessage bounds the Envoy message a condition repeats.
const maxNackMessage = 512

// resourceNames lists a gateway's resource names per short type, for
// mapping NACK messages back.
func resourceNames(g *translate.GatewayResources) map[string][]string {
	out := map[string][]string{}
	for _, l := range g.Listeners {
		out["listeners"] = append(out["listeners"], l.GetName())
	}
	for _, r := range g.Routes {
		out["routes"] = append(out["routes"], r.GetName())
	}
	for _, c := range g.Clusters {
		out["clusters"] = append(out["clusters"], c.GetName())
	}
	for _, e := range g.Endpoints {
		out["endpoints"] = append(out["endpoints"], e.GetClusterName())
	}
	for _, sec := range g.Secrets {
		out["secrets"] = append(out["secrets"], sec.GetName())
	}
	return out
}

// nameChars are what a resource name is made of (translate/names.go): a
// name in a message ends at any other character.
const nameChars = `A-Za-z0-9_./,+@-`

// namedIn returns the names that msg mentions as whole names, longest
// first so that "route/http" is not also found inside "route/https".
func namedIn(msg string, names []string) []string {
	sorted := slices.Clone(names)
	sort.Slice(sorted, func(i, j int) bool { return len(sorted[i]) > len(sorted[j]) })
	var out []string
	rest := msg
	for _, n := range sorted {
		re := regexp.MustCompile(`(^|[^` + nameChars + `])` + regexp.QuoteMeta(n) + `($|[^` + nameChars + `])`)
		if re.MatchString(rest) {
			out = append(out, n)
			// Blank it, so that a shorter name inside it is not found again.
			rest = strings.ReplaceAll(rest, n, strings.Repeat(" ", len(n)))
		}
	}
	sort.Strings(out)
	return out
}

// nackProvenance returns the rejected resources and the objects behind
// them.
func (s *Server) nackProvenance(gateway, typeURL, msg string, requested []string) (resources, objects []string) {
	s.mu.RLock()
	cfg, names := s.cfg, s.names[gateway][shortType(typeURL)]
	s.mu.RUnlock()
	if cfg == nil || len(names) == 0 {
		return nil, nil
	}
	resources = namedIn(msg, names)
	if len(resources) == 0 {
		for _, r := range requested {
			if slices.Contains(names, r) {
				resources = append(resources, r)
			}
		}
		sort.Strings(resources)
	}
	seen := map[string]bool{}
	for _, r := range resources {
		for _, ref := range translate.Origin(cfg, gateway, typeURL, r) {
			if !seen[ref.String()] {
				seen[ref.String()] = true
				objects = append(objects, ref.String())
			}
		}
	}
	sort.Strings(objects)
	return resources, objects
}

// nackConditions are Programmed=False on every object behind a NACK that
// still stands: the rejected version is still the last one of its type
// the node was sent (a later configuration replaces it, and is ACKed or
// NACKed on its own).
func nackConditions(nodes []NodeStatus) []model.Condition {
	byObject := map[string][]string{}
	for _, n := range nodes {
		k := n.LastNack
		if k == nil || len(k.Objects) == 0 || n.Sent[k.Type] != k.Version || n.Acked[k.Type] == k.Version {
			continue
		}
		msg := k.Message
		if len(msg) > maxNackMessage {
			msg = msg[:maxNackMessage] + "…"
		}
		what := fmt.Sprintf("node %s (gateway %s) rejected %s %s of version %s: %s", n.NodeID, n.Gateway, k.Type, strings.Join(k.Resources, ", "), k.Version, msg)
		for _, o := range k.Objects {
			byObject[o] = append(byObject[o], what)
		}
	}
	var out []model.Condition
	for o, whats := range byObject {
		sort.Strings(whats)
		out = append(out, model.Condition{
			Object: o, Type: ConditionProgrammed, Status: false, Reason: ReasonRejected,
			Message: strings.Join(whats, "; ") + " (the node keeps running the version it accepted before; fix the object and save)",
		})
	}
	return out
}
