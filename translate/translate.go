// Package translate turns a resolved model.Config into Envoy resources. It is
// pure: no I/O, no clock, no logging; the same Config always produces
// byte-identical output, sorted by name.
package translate

import (
	"sort"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	rlsconfv3 "github.com/envoyproxy/go-control-plane/ratelimit/config/ratelimit/v3"

	"github.com/tollgate-dev/tollgate/model"
)

// Output is everything tollgate serves, per gateway.
type Output struct {
	// Gateways, sorted by key.
	Gateways []*GatewayResources
}

// GatewayResources is one gateway's Envoy configuration: what every Envoy
// whose node.cluster is Key receives.
type GatewayResources struct {
	// Key is the gateway's node.cluster value (see model.GatewayKey).
	Key       string
	Listeners []*listenerv3.Listener
	Routes    []*routev3.RouteConfiguration
	Clusters  []*clusterv3.Cluster
	Endpoints []*endpointv3.ClusterLoadAssignment
	Secrets   []*tlsv3.Secret
	// InlineSecrets is set when a cluster itself carries secret material
	// (static AWS keys, which Envoy's SigV4 signer cannot take over SDS).
	InlineSecrets bool
	// RateLimitConfig is what the gateway's rate limit service counts;
	// nil without one (ratelimit.go).
	RateLimitConfig *rlsconfv3.RateLimitConfig
	// Requirements are the features of this configuration that need an
	// Envoy newer than OldestEnvoy (see requirements.go), sorted.
	Requirements []Requirement
}

// CarriesSecrets reports whether serving the gateway hands out secret
// material, which must only travel over an authenticated, encrypted xDS
// connection.
func (g *GatewayResources) CarriesSecrets() bool {
	return len(g.Secrets) > 0 || g.InlineSecrets
}

// Gateway returns the resources of the gateway with key, or nil.
func (o *Output) Gateway(key string) *GatewayResources {
	for _, g := range o.Gateways {
		if g.Key == key {
			return g
		}
	}
	return nil
}

// Translate builds every gateway's resources. An error means a bug or an
// input the model should have rejected; the caller keeps the last good
// output.
func Translate(cfg *model.Config) (*Output, error) {
	return TranslateIncremental(cfg, nil, nil)
}

// TranslateIncremental is Translate reusing, from prev (what Translate
// made of prevCfg), the resources of every gateway whose resolved
// configuration is the same in cfg as in prevCfg: an edit re-translates
// only the gateways it can affect. The same means deeply equal (same, with
// reflect.DeepEqual's meaning) GatewayConfigs, which is cheap: the store
// shares the model objects of unchanged files between configurations, and
// same takes a pointer equal to itself without looking inside or
// remembering it. It is exact because a gateway's
// translation reads nothing but its GatewayConfig (everything reachable
// from it: listeners, routes, backends and their lowered settings, a
// Parent-mode gateway's parent) and cfg.Settings, which must be equal too.
// A reused gateway keeps its Requirements as well: they read its
// resources and its GatewayConfig only (the owner of each cluster is a
// backend the GatewayConfig reaches, and the policy they name is recorded
// in it). prevCfg and prev may be nil.
func TranslateIncremental(cfg, prevCfg *model.Config, prev *Output) (*Output, error) {
	var (
		prevGateways  map[string]*model.GatewayConfig
		prevResources map[string]*GatewayResources
	)
	if prevCfg != nil && prev != nil && prevCfg.Settings == cfg.Settings {
		prevGateways = make(map[string]*model.GatewayConfig, len(prevCfg.Gateways))
		for _, g := range prevCfg.Gateways {
			prevGateways[model.GatewayKey(g.Ref)] = g
		}
		prevResources = make(map[string]*GatewayResources, len(prev.Gateways))
		for _, gr := range prev.Gateways {
			prevResources[gr.Key] = gr
		}
	}
	out := &Output{}
	var owners map[string]clusterOwner // made for the first gateway translated
	for _, g := range cfg.Gateways {
		key := model.GatewayKey(g.Ref)
		if pg, pr := prevGateways[key], prevResources[key]; pg != nil && pr != nil && same(pg, g) {
			reused := *pr // the resources and requirements are shared, never changed
			out.Gateways = append(out.Gateways, &reused)
			continue
		}
		gr, err := translateGateway(cfg, g)
		if err != nil {
			return nil, err
		}
		if g.Parent == nil {
			gr.RateLimitConfig = RateLimitConfigOf(g)
		}
		if owners == nil {
			owners = clusterOwners(cfg)
		}
		gr.Requirements = requirementsOf(owners, g, gr)
		out.Gateways = append(out.Gateways, gr)
	}
	sort.Slice(out.Gateways, func(i, j int) bool { return out.Gateways[i].Key < out.Gateways[j].Key })
	return out, nil
}

// hopPlan is a hop a gateway needs, with the retry buffer of the most
// generous route through it.
type hopPlan struct {
	backend *model.BackendConfig
	buffer  uint64
}

func translateGateway(cfg *model.Config, g *model.GatewayConfig) (*GatewayResources, error) {
	if g.Parent != nil {
		return translateChild(cfg, g) // Parent mode: see parent.go
	}
	gr := &GatewayResources{Key: model.GatewayKey(g.Ref)}
	// Only the backends this gateway's routes reach become clusters: an
	// Envoy of one gateway learns nothing about another gateway's backends.
	used := map[model.Ref]*model.BackendConfig{}
	aggregates := map[string]bool{}
	hops := map[model.Ref]hopPlan{}
	failoverMembers := map[string]bool{} // backend clusters behind an aggregate
	for _, l := range g.Listeners {
		lis, err := Listener(cfg, l)
		if err != nil {
			return nil, err
		}
		gr.Listeners = append(gr.Listeners, lis)
		gr.Secrets = append(gr.Secrets, ListenerSecrets(l)...)
		rc, err := RouteConfiguration(g, l)
		if err != nil {
			return nil, err
		}
		StripForwardedRoute(g, rc)
		gr.Routes = append(gr.Routes, rc)
		for _, b := range AuthServiceBackends(l) {
			used[b.Ref] = b // ExternalAuth services (externalauth.go)
		}
		for _, b := range ObservabilityBackends(l) {
			used[b.Ref] = b // OTLP collectors (observability.go)
		}
		for _, b := range ProcessorBackends(l) {
			used[b.Ref] = b // payload processors (payloadprocessor.go)
		}
		if svc := g.RateLimitService; svc != nil && rateLimitNeedsOf(g, l).rls() {
			used[svc.Backend.Ref] = svc.Backend // the rate limit service (ratelimit.go)
		}
		for _, r := range l.Routes {
			for _, rule := range r.Rules {
				for _, t := range Targets(g, rule) {
					if t.aggregate() && !aggregates[t.Cluster] {
						aggregates[t.Cluster] = true
						c, err := AggregateCluster(t)
						if err != nil {
							return nil, err
						}
						gr.Clusters = append(gr.Clusters, c)
						for _, b := range t.Members {
							failoverMembers[ClusterName(b)] = true
						}
					}
					// A hop serves every route that reaches its backend, so
					// it buffers as much as the most generous of them.
					buffer := *EffectiveRetry(g, r).BufferLimit
					if !t.aggregate() {
						// A backend that rewrites bodies is reached through
						// its hop also as a rule's only target (body.go).
						if b := t.Members[0]; needsBodyHop(b) && buffer > hops[b.Ref].buffer {
							hops[b.Ref] = hopPlan{backend: b, buffer: buffer}
						}
						continue
					}
					for _, b := range t.Members {
						if needsHop(b) && buffer > hops[b.Ref].buffer {
							hops[b.Ref] = hopPlan{backend: b, buffer: buffer}
						}
					}
				}
				for _, wb := range rule.Backends {
					// An unavailable backend, or one the gateway's
					// RegionAllowListPolicy refuses, gets no cluster: its
					// routes answer 503 or 403 instead (see unavailable.go).
					if g.Serves(wb.Backend) {
						used[wb.Backend.Ref] = wb.Backend
					}
				}
			}
		}
	}
	for _, h := range hops {
		hc, err := HopCluster(h.backend)
		if err != nil {
			return nil, err
		}
		hl, err := HopListener(h.backend, h.buffer)
		if err != nil {
			return nil, err
		}
		gr.Clusters = append(gr.Clusters, hc)
		gr.Listeners = append(gr.Listeners, hl)
	}
	backends := make([]*model.BackendConfig, 0, len(used))
	for _, b := range used {
		backends = append(backends, b)
	}
	sort.Slice(backends, func(i, j int) bool { return backends[i].Ref.Less(backends[j].Ref) })
	for _, b := range backends {
		c, err := Cluster(cfg, g.Ref, b)
		if err != nil {
			return nil, err
		}
		gr.Clusters = append(gr.Clusters, c)
		if isEDS(b) {
			gr.Endpoints = append(gr.Endpoints, ClusterLoadAssignment(b))
		}
		if b.Credential != nil && b.Credential.Kind == model.CredentialOAuth2 {
			tc, err := OAuth2TokenCluster(cfg, g.Ref, b)
			if err != nil {
				return nil, err
			}
			gr.Clusters = append(gr.Clusters, tc)
		}
		// A gateway gets the secrets of its own backends only.
		gr.Secrets = append(gr.Secrets, Secrets(cfg, b)...)
		if c := b.Credential; c != nil && c.AWS != nil && c.AWS.AccessKeyID != nil {
			gr.InlineSecrets = true
		}
	}
	for _, c := range gr.Clusters {
		if failoverMembers[c.Name] {
			noPanic(c)
			wholePriority(c.LoadAssignment)
		}
	}
	for _, cla := range gr.Endpoints {
		if failoverMembers[cla.ClusterName] {
			wholePriority(cla)
		}
	}
	annotateClusters(g, gr) // backend and provider for the access logs (observability.go)
	sort.Slice(gr.Listeners, func(i, j int) bool { return gr.Listeners[i].Name < gr.Listeners[j].Name })
	sort.Slice(gr.Routes, func(i, j int) bool { return gr.Routes[i].Name < gr.Routes[j].Name })
	sort.Slice(gr.Clusters, func(i, j int) bool { return gr.Clusters[i].Name < gr.Clusters[j].Name })
	sort.Slice(gr.Endpoints, func(i, j int) bool { return gr.Endpoints[i].ClusterName < gr.Endpoints[j].ClusterName })
	sort.Slice(gr.Secrets, func(i, j int) bool { return gr.Secrets[i].Name < gr.Secrets[j].Name })
	return gr, nil
}
