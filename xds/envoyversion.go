package xds

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/translate"
)

// VersionUnknown is NodeStatus.EnvoyVersion of a node that said nothing
// tollgate can read a version from.
const VersionUnknown = "unknown"

// Gateway condition about the Envoy versions of its nodes.
const (
	ConditionEnvoyVersionSupported = "EnvoyVersionSupported"
	ReasonEnvoyTooOld              = "EnvoyTooOld"
)

// NodeProblem is something a node's Envoy is too old for.
type NodeProblem struct {
	// Feature needs Needs: a feature of the gateway's configuration, or
	// tollgate's oldest supported Envoy.
	Feature string `json:"feature"`
	Needs   string `json:"needs"`
	// Object asked for Feature; empty for the supported-version floor.
	Object string `json:"object,omitempty"`
	// Remedy says what to do.
	Remedy string `json:"remedy"`
}

func (p NodeProblem) key() string { return p.Feature + "|" + p.Needs + "|" + p.Object }

// envoyVersion reads the Envoy release a node runs: user_agent_build_version
// (Envoy sets it), else the build_version metadata string
// ("<sha>/1.37.2/Clean/RELEASE/BoringSSL"), else user_agent_version. ok is
// false when none of them holds a version.
func envoyVersion(node *corev3.Node) (v translate.Version, text string, ok bool) {
	if sv := node.GetUserAgentBuildVersion().GetVersion(); sv != nil && (sv.GetMajorNumber() != 0 || sv.GetMinorNumber() != 0) {
		return translate.Version{Major: int(sv.GetMajorNumber()), Minor: int(sv.GetMinorNumber())},
			fmt.Sprintf("%d.%d.%d", sv.GetMajorNumber(), sv.GetMinorNumber(), sv.GetPatch()), true
	}
	if bv := node.GetMetadata().GetFields()["build_version"].GetStringValue(); bv != "" {
		for _, part := range strings.Split(bv, "/") {
			if v, text, ok := parseVersion(part); ok {
				return v, text, true
			}
		}
	}
	if uv := node.GetUserAgentVersion(); uv != "" {
		return parseVersion(uv)
	}
	return translate.Version{}, "", false
}

// parseVersion reads "1.37.2", "v1.38.0" or "1.39.0-dev".
func parseVersion(s string) (translate.Version, string, bool) {
	s = strings.TrimPrefix(strings.TrimSpace(s), "v")
	if i := strings.IndexAny(s, "-+ "); i >= 0 {
		s = s[:i]
	}
	parts := strings.Split(s, ".")
	if len(parts) < 2 || len(parts) > 3 {
		return translate.Version{}, "", false
	}
	var n [3]int
	for i, p := range parts {
		x, err := strconv.Atoi(p)
		if err != nil || x < 0 {
			return translate.Version{}, "", false
		}
		n[i] = x
	}
	return translate.Version{Major: n[0], Minor: n[1]}, fmt.Sprintf("%d.%d.%d", n[0], n[1], n[2]), true
}

// versionProblems lists what an Envoy of version v lacks to run a gateway
// whose configuration has reqs.
func versionProblems(v translate.Version, reqs []translate.Requirement) []NodeProblem {
	if v.Less(translate.OldestEnvoy) {
		return []NodeProblem{{
			Feature: fmt.Sprintf("tollgate supports Envoy %s to %s", translate.OldestEnvoy, translate.NewestEnvoy),
			Needs:   translate.OldestEnvoy.String(),
			Remedy:  fmt.Sprintf("upgrade this Envoy to %s or newer", translate.OldestEnvoy),
		}}
	}
	var out []NodeProblem
	for _, r := range reqs {
		if v.Less(r.MinVersion) {
			out = append(out, NodeProblem{Feature: r.Feature, Needs: r.MinVersion.String(), Object: r.Object, Remedy: r.Remedy()})
		}
	}
	return out
}

// nodeProblems fills in the version problems of every node from the
// requirements each gateway is served with now.
func (s *Server) nodeProblems(nodes []NodeStatus) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	s.nodeProblemsLocked(nodes)
}

// nodeProblemsLocked is nodeProblems with s.mu held.
func (s *Server) nodeProblemsLocked(nodes []NodeStatus) {
	for i := range nodes {
		n := &nodes[i]
		if n.envoy.IsZero() || !s.gateways[n.Gateway] {
			continue
		}
		n.Problems = versionProblems(n.envoy, s.requirements[n.Gateway])
	}
}

// checkVersions logs, once per node and problem, every connected node that
// is too old for its gateway's current configuration. It runs when a node
// first identifies itself and after each publication, so a change that
// makes a gateway need a newer Envoy is reported once, not on every push.
func (s *Server) checkVersions() { s.logVersionProblems(s.tracker.snapshot().Nodes) }

// checkStreamVersion is checkVersions for the one node that just
// identified itself. Copying every node's status on each connection made a
// fleet's connection cost quadratic: 10,000 Envoys reconnecting after a
// restart took minutes (measured with cmd/tollgate-load).
func (s *Server) checkStreamVersion(stream string) {
	if n, ok := s.tracker.node(stream); ok {
		s.logVersionProblems([]NodeStatus{n})
	}
}

// logVersionProblems logs the version problems of nodes not logged yet.
func (s *Server) logVersionProblems(nodes []NodeStatus) {
	s.nodeProblems(nodes)
	s.versionLogMu.Lock()
	defer s.versionLogMu.Unlock()
	for _, n := range nodes {
		for _, p := range n.Problems {
			key := n.NodeID + "|" + n.Gateway + "|" + p.key()
			if s.versionLogged[key] {
				continue
			}
			s.versionLogged[key] = true
			s.log.Warn("envoy too old for its gateway's configuration",
				"node", n.NodeID, "gateway", n.Gateway, "envoy_version", n.EnvoyVersion,
				"feature", p.Feature, "needs", p.Needs, "remedy", p.Remedy)
		}
	}
}

// Conditions are the gateway conditions the connected nodes give rise to:
// EnvoyVersionSupported=False (EnvoyTooOld) on a gateway with a node too
// old for its configuration, listing the nodes; and IdentityBound=False
// (NoSuchGateway) on an xds-identities pattern that grants no gateway of
// the current configuration; and Programmed=False (RejectedByEnvoy) on the
// objects behind a NACK that still stands.
func (s *Server) Conditions() []model.Condition {
	nodes := s.tracker.snapshot().Nodes
	s.nodeProblems(nodes)
	byGateway := map[string][]string{}
	for _, n := range nodes {
		if len(n.Problems) == 0 {
			continue
		}
		var needs []string
		for _, p := range n.Problems {
			what := p.Feature + " needs " + p.Needs
			if p.Object != "" {
				what += " (" + p.Object + ")"
			}
			needs = append(needs, what)
		}
		byGateway[n.Gateway] = append(byGateway[n.Gateway], fmt.Sprintf("node %s runs Envoy %s: %s", n.NodeID, n.EnvoyVersion, strings.Join(needs, "; ")))
	}
	var out []model.Condition
	s.mu.RLock()
	defer s.mu.RUnlock()
	for gw, msgs := range byGateway {
		sort.Strings(msgs)
		object := s.gatewayObjects[gw]
		if object == "" {
			object = model.Ref{Kind: model.KindGateway, Name: gw}.String()
		}
		out = append(out, model.Condition{
			Object: object, Type: ConditionEnvoyVersionSupported, Status: false, Reason: ReasonEnvoyTooOld,
			Message: fmt.Sprintf("%d node(s) too old for this gateway's configuration: %s", len(msgs), strings.Join(msgs, "; ")),
		})
	}
	// An identity pattern that grants no current gateway.
	out = append(out, s.opts.Authorizer.patternConditions(func(g string) bool { return s.gateways[g] })...)
	// Objects behind a NACK that still stands (nack.go).
	out = append(out, nackConditions(nodes)...)
	model.SortConditions(out)
	return out
}
