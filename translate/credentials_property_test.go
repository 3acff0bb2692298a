package translate_test

import (
	"path/filepath"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	aggregatev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/clusters/aggregate/v3"
	awssigningv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/aws_request_signing/v3"
	credinjectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/credential_injector/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	genericv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/http/injected_credentials/generic/v3"
	oauth2credv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/http/injected_credentials/oauth2/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/policies"
	"github.com/tollgate-dev/tollgate/store"
	"github.com/tollgate-dev/tollgate/translate"
	"github.com/tollgate-dev/tollgate/translate/translatetest"
)

// credentialSources are every policy set the property is checked on: the
// golden inputs and the examples.
func credentialSources(t *testing.T) map[string]*model.Config {
	t.Helper()
	out := map[string]*model.Config{}
	inputs, err := filepath.Glob("testdata/in/*.yaml")
	require.NoError(t, err)
	for _, in := range inputs {
		if cfg, errs := loadCase(t, in); len(errs) == 0 {
			out[in] = cfg
		}
	}
	dirs, err := translatetest.ExampleDirs("../examples")
	require.NoError(t, err)
	for _, dir := range dirs {
		st, err := store.New(store.Options{})
		require.NoError(t, err)
		src := store.NewFileSource(dir, policies.NewScheme(), nil)
		require.NoError(t, src.Sync(st), "example %s must load", dir)
		out[dir] = st.Config()
	}
	return out
}

// TestCredentialsStayWithTheirBackend checks, on every route of every
// golden case and example, that any credential Envoy injects belongs to the
// backend the traffic reaches, and that no listener- or route-wide
// credential exists. It counts what it checked and fails on nothing of a
// kind, so that a lowering that drops credentials cannot make it pass.
func TestCredentialsStayWithTheirBackend(t *testing.T) {
	checked := map[string]int{} // credential kind (or "parent hop") → routes × clusters checked
	for name, cfg := range credentialSources(t) {
		out, err := translate.Translate(cfg)
		require.NoError(t, err, name)
		backends := map[string]*model.BackendConfig{}
		for _, b := range cfg.Backends {
			backends[translate.ClusterName(b)] = b
		}
		hops := map[string]bool{} // Parent mode: clusters to a parent gateway
		for _, g := range cfg.Gateways {
			if g.Parent != nil {
				hops[translate.ParentClusterName(g.Parent.Gateway.Ref)] = true
			}
		}
		for _, g := range out.Gateways {
			where := name + " gateway " + g.Key
			// No credential at listener scope.
			for _, l := range g.Listeners {
				for _, fc := range l.GetFilterChains() {
					for _, f := range fc.GetFilters() {
						hcm := &hcmv3.HttpConnectionManager{}
						require.NoError(t, f.GetTypedConfig().UnmarshalTo(hcm))
						for _, hf := range hcm.GetHttpFilters() {
							require.False(t, isCredentialFilter(hf.GetTypedConfig()), "%s: listener %s has credential filter %s", where, l.GetName(), hf.GetName())
						}
					}
				}
			}
			// No credential at route scope.
			for _, rc := range g.Routes {
				require.Empty(t, credentialHeaders(rc.GetRequestHeadersToAdd()), "%s: route config %s adds credential headers", where, rc.GetName())
				for _, vh := range rc.GetVirtualHosts() {
					require.Empty(t, credentialHeaders(vh.GetRequestHeadersToAdd()), where)
					for _, r := range vh.GetRoutes() {
						require.Empty(t, credentialHeaders(r.GetRequestHeadersToAdd()), "%s: route %s", where, r.GetName())
						for fname, cfgAny := range r.GetTypedPerFilterConfig() {
							require.False(t, isCredentialFilter(cfgAny), "%s: route %s configures %s", where, r.GetName(), fname)
						}
						for _, cw := range r.GetRoute().GetWeightedClusters().GetClusters() {
							require.Empty(t, credentialHeaders(cw.GetRequestHeadersToAdd()), "%s: route %s weighted cluster %s", where, r.GetName(), cw.GetName())
							require.Empty(t, cw.GetTypedPerFilterConfig(), where)
						}
					}
				}
			}
			// Every cluster's credential is its own backend's.
			clusters := map[string]*clusterv3.Cluster{}
			for _, c := range g.Clusters {
				clusters[c.GetName()] = c
			}
			used := map[string]bool{}
			for _, rc := range g.Routes {
				for _, vh := range rc.GetVirtualHosts() {
					for _, r := range vh.GetRoutes() {
						for _, cn := range followHops(t, g.Listeners, clusters, expandAggregates(t, clusters, routeClusters(r))) {
							c := clusters[cn]
							require.NotNil(t, c, "%s: route %s reaches unknown cluster %s", where, r.GetName(), cn)
							if hops[cn] {
								// The parent injects its own credentials; the
								// hop to it must carry none.
								secrets, aws := clusterCredential(t, c)
								require.Empty(t, secrets, "%s: route %s → parent cluster %s injects a credential", where, r.GetName(), cn)
								require.False(t, aws, "%s: route %s → parent cluster %s signs requests", where, r.GetName(), cn)
								checked["parent hop"]++
								continue
							}
							b := backends[cn]
							require.NotNil(t, b, "%s: cluster %s is no backend's", where, cn)
							secrets, aws := clusterCredential(t, c)
							want := map[string]bool{}
							if cred := b.Credential; cred != nil {
								require.True(t, targets(cfg, cred.Policy, b.Ref), "%s: credential of %s comes from %s, which does not target it", where, cn, cred.Policy)
								checked[string(cred.Kind)]++
								switch cred.Kind {
								case model.CredentialAPIKey:
									want[translate.CredentialSecretName(b)] = true
								case model.CredentialOAuth2:
									want[translate.OAuth2ClientSecretName(b)] = true
								case model.CredentialAWSSigV4:
									require.True(t, aws, "%s: %s signs with SigV4", where, cn)
								}
							} else {
								require.False(t, aws, where)
							}
							require.Equal(t, want, secrets, "%s: route %s → cluster %s injects another backend's credential", where, r.GetName(), cn)
							for s := range secrets {
								used[s] = true
							}
						}
					}
				}
			}
			// A gateway gets no secret its own clusters do not use.
			for _, s := range g.Secrets {
				if strings.HasPrefix(s.GetName(), "credential/") || strings.HasPrefix(s.GetName(), "oauth2-client-secret/") {
					require.True(t, used[s.GetName()], "%s: secret %s is served but no route of this gateway reaches its backend", where, s.GetName())
					checked["served secret"]++
				}
			}
		}
	}
	t.Logf("checked: %v", checked)
	for _, kind := range []string{string(model.CredentialAPIKey), string(model.CredentialOAuth2), string(model.CredentialAWSSigV4), "parent hop", "served secret"} {
		require.NotZero(t, checked[kind], "no %s was checked: the property holds vacuously", kind)
	}
}

// expandAggregates replaces aggregate clusters by their members: the
// credential that matters is the one of the cluster a request ends up at.
func expandAggregates(t *testing.T, clusters map[string]*clusterv3.Cluster, names []string) []string {
	var out []string
	for _, n := range names {
		c := clusters[n]
		agg := &aggregatev3.ClusterConfig{}
		if tc := c.GetClusterType().GetTypedConfig(); tc != nil && tc.MessageIs(agg) {
			require.NoError(t, tc.UnmarshalTo(agg))
			require.Empty(t, c.GetTypedExtensionProtocolOptions(), "aggregate %s must not carry filters of its own", n)
			out = append(out, agg.GetClusters()...)
			continue
		}
		out = append(out, n)
	}
	return out
}

// followHops replaces hop clusters (which reach an internal listener of the
// same Envoy) by the clusters that listener's route sends to, where the
// credential filters run.
func followHops(t *testing.T, listeners []*listenerv3.Listener, clusters map[string]*clusterv3.Cluster, names []string) []string {
	var out []string
	for _, n := range names {
		c := clusters[n]
		internal := ""
		for _, le := range c.GetLoadAssignment().GetEndpoints() {
			for _, lb := range le.GetLbEndpoints() {
				if a := lb.GetEndpoint().GetAddress().GetEnvoyInternalAddress(); a != nil {
					internal = a.GetServerListenerName()
				}
			}
		}
		if internal == "" {
			out = append(out, n)
			continue
		}
		hopOpts := &httpv3.HttpProtocolOptions{}
		if a := c.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]; a != nil {
			require.NoError(t, a.UnmarshalTo(hopOpts))
		}
		require.Empty(t, hopOpts.GetHttpFilters(), "hop cluster %s must not carry filters: they belong to the backend's cluster", n)
		found := false
		for _, l := range listeners {
			if l.GetName() != internal {
				continue
			}
			found = true
			hcm := &hcmv3.HttpConnectionManager{}
			require.NoError(t, l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(hcm))
			for _, vh := range hcm.GetRouteConfig().GetVirtualHosts() {
				for _, r := range vh.GetRoutes() {
					out = append(out, routeClusters(r)...)
				}
			}
		}
		require.True(t, found, "hop cluster %s reaches no internal listener", n)
	}
	return out
}

// targets reports whether the policy named ref targets the object.
func targets(cfg *model.Config, ref, object model.Ref) bool {
	for _, o := range cfg.Objects {
		p, ok := o.(model.Policy)
		if !ok || model.RefOf(o) != ref {
			continue
		}
		for _, tr := range p.Targets() {
			if tr.Ref(ref.Namespace) == object {
				return true
			}
		}
	}
	return false
}

func routeClusters(r *routev3.Route) []string {
	if c := r.GetRoute().GetCluster(); c != "" {
		return []string{c}
	}
	var out []string
	for _, cw := range r.GetRoute().GetWeightedClusters().GetClusters() {
		out = append(out, cw.GetName())
	}
	return out
}

var credentialHeaderNames = map[string]bool{"authorization": true, "x-api-key": true, "api-key": true, "x-goog-api-key": true}

func credentialHeaders(hs []*corev3.HeaderValueOption) []string {
	var out []string
	for _, h := range hs {
		if credentialHeaderNames[strings.ToLower(h.GetHeader().GetKey())] {
			out = append(out, h.GetHeader().GetKey())
		}
	}
	return out
}

func isCredentialFilter(a *anypb.Any) bool {
	if a == nil {
		return false
	}
	for _, m := range []proto.Message{&credinjectorv3.CredentialInjector{}, &awssigningv3.AwsRequestSigning{}, &awssigningv3.AwsRequestSigningPerRoute{}} {
		if a.MessageIs(m) {
			return true
		}
	}
	return false
}

// clusterCredential lists the SDS secrets a cluster's upstream credential
// filters read, and whether it signs with SigV4.
func clusterCredential(t *testing.T, c *clusterv3.Cluster) (map[string]bool, bool) {
	t.Helper()
	secrets := map[string]bool{}
	aws := false
	opts := &httpv3.HttpProtocolOptions{}
	if a := c.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]; a != nil {
		require.NoError(t, a.UnmarshalTo(opts))
	}
	for _, f := range opts.GetHttpFilters() {
		switch {
		case f.GetTypedConfig().MessageIs(&credinjectorv3.CredentialInjector{}):
			ci := &credinjectorv3.CredentialInjector{}
			require.NoError(t, f.GetTypedConfig().UnmarshalTo(ci))
			inner, err := ci.GetCredential().GetTypedConfig().UnmarshalNew()
			require.NoError(t, err)
			switch x := inner.(type) {
			case *genericv3.Generic:
				secrets[x.GetCredential().GetName()] = true
			case *oauth2credv3.OAuth2:
				secrets[x.GetClientCredentials().GetClientSecret().GetName()] = true
			default:
				t.Fatalf("unexpected credential type %T", inner)
			}
		case f.GetTypedConfig().MessageIs(&awssigningv3.AwsRequestSigning{}):
			aws = true
		}
	}
	return secrets, aws
}
