package translate_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/translate"
)

const (
	typeListener = "type.googleapis.com/envoy.config.listener.v3.Listener"
	typeRoute    = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
	typeCluster  = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	typeEDS      = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
	typeSecret   = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
)

func refStrings(refs []model.Ref) []string {
	out := make([]string, len(refs))
	for i, r := range refs {
		out[i] = r.String()
	}
	return out
}

// Every name shape of names.go maps to the objects and policies that
// produced the resource.
func TestOrigin(t *testing.T) {
	for _, tc := range []struct {
		name, file, gateway, typeURL, resource string
		want                                   []string
	}{
		{"cluster", "backend-tls", "egress", typeCluster, "backend/default/partner", []string{"Backend/partner", "BackendTLSPolicy/partner-mtls"}},
		{"endpoints", "egress", "egress", typeEDS, "backend/default/openai", []string{"Backend/openai", "EgressPolicy/openai"}},
		{"validation secret", "backend-tls", "egress", typeSecret, "tls-validation/default/partner", []string{"BackendTLSPolicy/partner-mtls"}},
		{"client certificate secret", "backend-tls", "egress", typeSecret, "tls-client/default/partner", []string{"BackendTLSPolicy/partner-mtls"}},
		{"listener", "backend-tls", "egress", typeListener, "listener/http", []string{"Gateway/egress"}},
		{"route configuration", "backend-tls", "egress", typeRoute, "route/http", []string{"Gateway/egress", "HTTPRoute/r"}},
		{"virtual host", "backend-tls", "egress", "", "vhost/*", []string{"HTTPRoute/r"}},
		{"route", "backend-tls", "egress", "", "httproute/default/r/rule/1/match/0", []string{"HTTPRoute/r"}},
		{"hop listener", "failover-credentials", "egress", typeListener, "hop/default/openai", []string{"Backend/openai", "CredentialInjector/openai", "QoSController/openai"}},
		{"hop cluster", "failover-credentials", "egress", typeCluster, "hop/default/openai", []string{"Backend/openai", "CredentialInjector/openai", "QoSController/openai"}},
		{"aggregate cluster", "failover-credentials", "egress", typeCluster, "failover/default/vllm,default/openai", []string{"Backend/openai", "Backend/vllm", "HTTPRoute/local-first"}},
		{"credential secret", "failover-credentials", "egress", typeSecret, "credential/default/openai", []string{"CredentialInjector/openai"}},
		{"oauth2 token cluster", "credentials", "egress", typeCluster, "oauth2-token/default/internal-llm", []string{"Backend/internal-llm", "CredentialInjector/internal-oauth"}},
		{"oauth2 client secret", "credentials", "egress", typeSecret, "oauth2-client-secret/default/internal-llm", []string{"CredentialInjector/internal-oauth"}},
		{"parent cluster", "parent-child", "team-a/workloads", typeCluster, "parent/default/inference", []string{"Gateway/inference", "Gateway/team-a/workloads"}},
		{"parent cluster of another gateway", "parent-child", "inference", typeCluster, "parent/default/inference", nil},
		{"type does not fit the name", "failover-credentials", "egress", typeCluster, "credential/default/openai", nil},
		{"unknown backend", "backend-tls", "egress", typeCluster, "backend/default/nope", nil},
		{"unknown shape", "backend-tls", "egress", "", "envoy.filters.http.router", nil},
		{"listener of another gateway", "backend-tls", "other", typeListener, "listener/http", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, errs := loadCase(t, filepath.Join("testdata/in", tc.file+".yaml"))
			require.Empty(t, errs)
			got := translate.Origin(cfg, tc.gateway, tc.typeURL, tc.resource)
			if tc.want == nil {
				require.Empty(t, got)
				return
			}
			require.Equal(t, tc.want, refStrings(got))
		})
	}
}

// The hashed form of a long fail-over order maps too.
func TestOriginHashedFailover(t *testing.T) {
	long := strings.Repeat("x", 90)
	a := &model.BackendConfig{Ref: model.Ref{Kind: model.KindBackend, Namespace: "default", Name: long + "-a"}}
	b := &model.BackendConfig{Ref: model.Ref{Kind: model.KindBackend, Namespace: "default", Name: long + "-b"}}
	route := &model.RouteConfig{Ref: model.Ref{Kind: model.KindHTTPRoute, Namespace: "default", Name: "r"}, Rules: []*model.RuleConfig{{
		Backends: []model.WeightedBackend{{Backend: a, Weight: 1}, {Backend: b, Weight: 0, Priority: 1}},
	}}}
	gw := &model.GatewayConfig{Ref: model.Ref{Kind: model.KindGateway, Namespace: "default", Name: "egress"},
		Listeners: []*model.ListenerConfig{{Routes: []*model.RouteConfig{route}}}}
	cfg := &model.Config{Gateways: []*model.GatewayConfig{gw}, Backends: []*model.BackendConfig{a, b}}
	name := translate.AggregateClusterName([]*model.BackendConfig{a, b})
	require.Contains(t, name, ",+", "the name is hashed")
	require.Equal(t, []string{a.Ref.String(), b.Ref.String(), "HTTPRoute/r"}, refStrings(translate.Origin(cfg, "egress", typeCluster, name)))
}

// Every resource of every golden output, and every virtual host and route
// in them, maps to objects of its config.
func TestOriginCoversEveryGoldenResource(t *testing.T) {
	inputs, err := filepath.Glob("testdata/in/*.yaml")
	require.NoError(t, err)
	for _, in := range inputs {
		cfg, errs := loadCase(t, in)
		if len(errs) > 0 {
			continue
		}
		objs := map[model.Ref]bool{}
		for _, o := range cfg.Objects {
			objs[model.RefOf(o)] = true
		}
		out, err := translate.Translate(cfg)
		require.NoError(t, err)
		check := func(gw, typeURL, name string) {
			refs := translate.Origin(cfg, gw, typeURL, name)
			require.NotEmpty(t, refs, "%s: gateway %s: %s %q maps to nothing", in, gw, typeURL, name)
			for _, r := range refs {
				require.True(t, objs[r], "%s: %s maps to %s, which is not in the config", in, name, r)
			}
		}
		for _, g := range out.Gateways {
			for _, l := range g.Listeners {
				check(g.Key, typeListener, l.GetName())
			}
			for _, rc := range g.Routes {
				check(g.Key, typeRoute, rc.GetName())
				for _, vh := range rc.GetVirtualHosts() {
					// A gateway without routes serves one catch-all host
					// that answers 404; nothing produced it but the Gateway.
					if len(vh.GetRoutes()) > 0 && vh.GetRoutes()[0].GetName() != "" {
						check(g.Key, "", vh.GetName())
					}
					for _, r := range vh.GetRoutes() {
						if r.GetName() != "" {
							check(g.Key, "", r.GetName())
						}
					}
				}
			}
			for _, c := range g.Clusters {
				check(g.Key, typeCluster, c.GetName())
			}
			for _, e := range g.Endpoints {
				check(g.Key, typeEDS, e.GetClusterName())
			}
			for _, s := range g.Secrets {
				check(g.Key, typeSecret, s.GetName())
			}
		}
	}
}

// A field Envoy's constraints refuse, which no model validation caught, is
// reported at the file, line and object that produced it, with the Envoy
// field path, instead of as a bare error of the whole gateway.
func TestLocatePlacesEnvoyRefusals(t *testing.T) {
	cfg, errs := loadCase(t, "testdata/in/egress.yaml")
	require.Empty(t, errs)
	for _, b := range cfg.Backends {
		if b.Ref.Name == "openai" {
			negative := -time.Millisecond // the model refuses this; Envoy does too
			b.Egress.ConnectTimeout = &negative
		}
	}
	out, err := translate.Translate(cfg)
	require.NoError(t, err)
	err = out.Validate()
	require.Error(t, err)
	require.Contains(t, err.Error(), "gateway egress: envoy.config.cluster.v3.Cluster: ", "the error itself reads as before")

	vs, ok := model.AsViolations(translate.Locate(cfg, err))
	require.True(t, ok)
	require.Equal(t, []string{
		"testdata/in/egress.yaml:10: Backend/openai: Cluster[backend/default/openai].connect_timeout: envoy would refuse this: value must be greater than 0s",
		"testdata/in/egress.yaml:20: EgressPolicy/openai: Cluster[backend/default/openai].connect_timeout: envoy would refuse this: value must be greater than 0s",
	}, strings.Split(vs.Error(), "\n"))
}

// A route's mistake is placed on its HTTPRoute, not on every route of the
// listener; what nothing maps keeps its message.
func TestLocatePlacesRouteRefusalsOnTheirRoute(t *testing.T) {
	cfg, errs := loadCase(t, "testdata/in/matches.yaml")
	require.Empty(t, errs)
	var bad *model.RouteConfig
	for _, r := range cfg.Gateways[0].Listeners[0].Routes {
		if r.Ref.Name == "b-gemini" {
			bad = r
		}
	}
	require.NotNil(t, bad)
	bad.Rules[0].Matches[1].Headers[0].Name = "bad\nheader" // HeaderMatcher.name may not hold a newline
	out, err := translate.Translate(cfg)
	require.NoError(t, err)
	err = out.Validate()
	require.Error(t, err)
	vs, ok := model.AsViolations(translate.Locate(cfg, err))
	require.True(t, ok)
	require.Len(t, vs, 1, "%v", vs)
	v := vs[0]
	require.Equal(t, "testdata/in/matches.yaml", v.File)
	require.Equal(t, 37, v.Line)
	require.Equal(t, "HTTPRoute/b-gemini", v.Object)
	require.Regexp(t, `^RouteConfiguration\[route/http\]\.virtual_hosts\[\d+\]\.routes\[\d+\]\.match\.headers\[0\]\.name$`, v.Field)
	require.True(t, strings.HasPrefix(v.Msg, "envoy would refuse this: value does not match regex pattern"), v.Msg)

	// Without the objects, the refusal is still reported, as it was.
	vs, ok = model.AsViolations(translate.Locate(&model.Config{}, err))
	require.True(t, ok)
	require.Len(t, vs, 1)
	require.Empty(t, vs[0].File)
	require.True(t, strings.HasPrefix(vs[0].Error(), "gateway egress: RouteConfiguration[route/http].virtual_hosts["), vs[0].Error())
}
