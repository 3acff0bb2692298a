package translate

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	dnsclusterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/clusters/dns/v3"

	"github.com/tollgate-dev/tollgate/model"
)

// Version is an Envoy release, major.minor; patch releases add no API.
type Version struct {
	Major, Minor int
}

// The Envoy releases tollgate supports: CI decodes every golden and example
// output with each one's API (translate/envoycompat). Output that needs a
// newer release than OldestEnvoy is emitted only where a policy asks for it,
// and carries a Requirement.
var (
	OldestEnvoy = Version{1, 37}
	NewestEnvoy = Version{1, 40}
)

func (v Version) String() string { return fmt.Sprintf("%d.%d", v.Major, v.Minor) }

// Less orders releases.
func (v Version) Less(o Version) bool {
	if v.Major != o.Major {
		return v.Major < o.Major
	}
	return v.Minor < o.Minor
}

// IsZero reports whether v is unset (an unknown version).
func (v Version) IsZero() bool { return v == Version{} }

// MarshalText renders "1.39", as status and goldens show it.
func (v Version) MarshalText() ([]byte, error) { return []byte(v.String()), nil }

// UnmarshalText reads "1.39" (a patch number, as in "1.39.2", is ignored).
func (v *Version) UnmarshalText(b []byte) error {
	parts := strings.SplitN(string(b), ".", 3)
	if len(parts) < 2 {
		return fmt.Errorf("envoy version %q: want major.minor", b)
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil || major < 0 || minor < 0 {
		return fmt.Errorf("envoy version %q: want major.minor", b)
	}
	*v = Version{major, minor}
	return nil
}

// Requirement is a feature of a gateway's configuration that needs an Envoy
// newer than OldestEnvoy, and the object that asked for it. An Envoy older
// than MinVersion rejects the configuration (an unknown field) or, worse,
// ignores the feature; xds reports such nodes.
type Requirement struct {
	// Feature names it in the policy's terms and Envoy's, e.g. "DNSPolicy
	// minRefreshRate (DnsCluster.dns_min_refresh_rate)".
	Feature string `json:"feature"`
	// MinVersion is the oldest Envoy release that has it.
	MinVersion Version `json:"minVersion"`
	// Object asked for it, e.g. DNSPolicy/models.
	Object string `json:"object"`
	// Setting is what to remove from Object to do without it, e.g.
	// minRefreshRate.
	Setting string `json:"setting"`
	// Field is the full name of the proto field (or message) older
	// releases lack; the compatibility test checks that exactly those
	// releases reject it.
	Field string `json:"field"`
}

// Remedy says what to do on an Envoy older than MinVersion.
func (r Requirement) Remedy() string {
	return fmt.Sprintf("upgrade this Envoy to %s or remove %s from %s", r.MinVersion, r.Setting, r.Object)
}

// MaxVersion is the newest MinVersion of rs, or the zero Version when rs is
// empty.
func MaxVersion(rs []Requirement) Version {
	var max Version
	for _, r := range rs {
		if max.Less(r.MinVersion) {
			max = r.MinVersion
		}
	}
	return max
}

// requirementsOf lists what the gateway's resources need beyond OldestEnvoy.
// It reads the resources themselves, so that every path that emits a
// version-bound field (a backend's cluster, its OAuth2 token cluster, ...)
// is covered by the one check next to where the field is set, and the model
// to name the object that asked for it. Sorted, without duplicates.
func requirementsOf(byCluster map[string]clusterOwner, g *model.GatewayConfig, gr *GatewayResources) []Requirement {
	seen := map[Requirement]bool{}
	var out []Requirement
	for _, c := range gr.Clusters {
		for _, r := range clusterRequirements(g, byCluster[c.GetName()], c) {
			if !seen[r] {
				seen[r] = true
				out = append(out, r)
			}
		}
	}
	for _, l := range g.Listeners {
		if rateLimitNeedsOf(g, l).usage {
			object, setting := usageLimitPolicy(g, l)
			r := Requirement{
				Feature:    "token usage of streamed responses, for RateLimitPolicy input and total budgets and ObservabilityPolicy attribution (envoy.filters.http.sse_to_metadata)",
				MinVersion: Version{1, 38},
				Object:     object,
				Setting:    setting,
				Field:      "envoy.extensions.filters.http.sse_to_metadata.v3.SseToMetadata",
			}
			if !seen[r] {
				seen[r] = true
				out = append(out, r)
			}
		}
	}
	for _, r := range schemaRequirements(g, gr) {
		if !seen[r] {
			seen[r] = true
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Feature != b.Feature {
			return a.Feature < b.Feature
		}
		return a.Object < b.Object
	})
	return out
}

// clusterOwner is the backend a cluster belongs to, and whether the cluster
// is that backend's OAuth2 token endpoint rather than the backend itself.
type clusterOwner struct {
	backend *model.BackendConfig
	token   bool
}

func clusterOwners(cfg *model.Config) map[string]clusterOwner {
	out := map[string]clusterOwner{}
	for _, b := range cfg.Backends {
		out[ClusterName(b)] = clusterOwner{backend: b}
		if b.Credential != nil && b.Credential.OAuth2 != nil {
			out[OAuth2ClusterName(b)] = clusterOwner{backend: b, token: true}
		}
	}
	return out
}

func clusterRequirements(g *model.GatewayConfig, owner clusterOwner, c *clusterv3.Cluster) []Requirement {
	dc := dnsClusterOf(c)
	if dc == nil {
		return nil
	}
	var out []Requirement
	for _, f := range dnsClusterFeatures(dc) {
		out = append(out, Requirement{
			Feature:    f.feature,
			MinVersion: f.minVersion,
			Object:     dnsPolicyOf(g, owner, f),
			Setting:    f.setting,
			Field:      f.field,
		})
	}
	return out
}

// feature is a version-bound setting that the file emitting it declares.
type feature struct {
	feature    string
	minVersion Version
	setting    string // the policy field that asks for it
	field      string // the proto field older Envoys lack
}

// dnsPolicyOf names the DNSPolicy whose setting reached the cluster: the
// backend's own when it sets it (DNSSettings.Over: the backend's wins),
// else the gateway's defaults.
func dnsPolicyOf(g *model.GatewayConfig, owner clusterOwner, f feature) string {
	if b := owner.backend; b != nil && !owner.token && b.DNS.Policy != nil && dnsSets(b.DNS.Backend, f) {
		return b.DNS.Policy.String()
	}
	// The gateway-scope policy that lowering applied (the winner, when
	// several target the gateway).
	if g.DNSPolicy != nil {
		return g.DNSPolicy.String()
	}
	return "the DNSPolicy of " + g.Ref.String()
}

// dnsClusterOf unpacks the envoy.cluster.dns configuration of c, or nil.
func dnsClusterOf(c *clusterv3.Cluster) *dnsclusterv3.DnsCluster {
	cfg := c.GetClusterType().GetTypedConfig()
	if cfg == nil {
		return nil
	}
	dc := &dnsclusterv3.DnsCluster{}
	if cfg.MessageIs(dc) && cfg.UnmarshalTo(dc) == nil {
		return dc
	}
	return nil
}

// schemaRequirements: translating a request for a backend of another
// schema (schema.go) needs Envoy's ai_protocol_manager filter with its
// transcoder AI filter, alpha and new in Envoy 1.40, in the backend's hop,
// whose translating routes carry its per-route configuration. One
// requirement per field and HTTPRoute, naming each backendRef that sends
// the route's clients to a backend of another schema through a hop this
// gateway serves.
func schemaRequirements(g *model.GatewayConfig, gr *GatewayResources) []Requirement {
	hops := map[string]bool{}
	for _, l := range gr.Listeners {
		hops[l.GetName()] = true
	}
	var out []Requirement
	for _, l := range g.Listeners {
		for _, rc := range l.Routes {
			var settings []string
			for _, rule := range rc.Rules {
				client, ok := rule.ClientSchema()
				if !ok {
					continue
				}
				for _, wb := range ServedBackends(g, rule) {
					b := wb.Backend
					if b.Schema == client || !slices.Contains(b.ClientSchemas, client) || !hops[HopName(b)] {
						continue
					}
					settings = append(settings, fmt.Sprintf("the backendRef %s (schema %s) from spec.rules[%d], whose clients speak %s", b.Ref.Name, b.Schema, rule.Index, client))
				}
			}
			if len(settings) == 0 {
				continue
			}
			for _, f := range []struct{ feature, field string }{
				{"translation between provider schemas (envoy.filters.http.ai_protocol_manager with the transcoder AI filter, alpha)", "envoy.extensions.filters.http.ai_protocol_manager.v3.AiProtocolManager"},
				{"translation between provider schemas, per route (AiProtocolManagerPerRoute, alpha)", "envoy.extensions.filters.http.ai_protocol_manager.v3.AiProtocolManagerPerRoute"},
			} {
				out = append(out, Requirement{
					Feature:    f.feature,
					MinVersion: Version{1, 40},
					Object:     rc.Ref.String(),
					Setting:    strings.Join(settings, "; "),
					Field:      f.field,
				})
			}
		}
	}
	return out
}
