package xds_test

import (
	"context"
	"strings"
	"testing"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/tollgate-dev/tollgate/translate"
	"github.com/tollgate-dev/tollgate/xds"
)

// TestPublishRefusesAnInvalidResourceOfEveryType guards the promise that
// nothing Envoy would reject is ever served: for each resource type, one
// invalid resource refuses the whole publication, and the versions served
// stay as they were.
func TestPublishRefusesAnInvalidResourceOfEveryType(t *testing.T) {
	cfg := config(t, strings.ReplaceAll(twoGateways, "TIMEOUT", "60s")+`---
apiVersion: tollgate.dev/v1alpha1
kind: Backend
metadata: {name: vllm}
spec: {hostname: vllm.internal, port: 8000, addresses: [{ip: 10.0.0.7}]}
---
apiVersion: tollgate.dev/v1alpha1
kind: HTTPRoute
metadata: {name: local}
spec:
  parentRefs: [{name: a}]
  hostnames: [vllm.internal]
  rules: [{backendRefs: [{name: vllm}]}]
`)
	for _, c := range []struct {
		typ  string
		edit func(*translate.GatewayResources)
	}{
		{"listeners", func(g *translate.GatewayResources) { g.Listeners[0].FilterChains[0].Filters[0].Name = "" }},
		{"routes", func(g *translate.GatewayResources) { g.Routes[0].VirtualHosts[0].Domains = nil }},
		{"clusters", func(g *translate.GatewayResources) { g.Clusters[0].ConnectTimeout = durationpb.New(-time.Second) }},
		{"endpoints", func(g *translate.GatewayResources) { g.Endpoints[0].ClusterName = "" }},
		{"secrets", func(g *translate.GatewayResources) {
			g.Secrets = append(g.Secrets, &tlsv3.Secret{Name: "s", Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
				VerifyCertificateHash: []string{"not-a-hash"},
			}}})
		}},
	} {
		t.Run(c.typ, func(t *testing.T) {
			s := xds.NewServer(context.Background(), xds.Options{})
			out, err := translate.Translate(cfg)
			require.NoError(t, err)
			require.NoError(t, s.Publish(out))
			served := s.Versions("a")
			require.NotEmpty(t, served[c.typ], "the gateway must have a %s resource to break", c.typ)

			bad, err := translate.Translate(cfg)
			require.NoError(t, err)
			c.edit(bad.Gateway("a"))
			require.Error(t, bad.Validate(), "precondition: the broken output is invalid")
			require.Error(t, s.Publish(bad), "an invalid %s was published", c.typ)
			require.Equal(t, served, s.Versions("a"), "nothing was published")
		})
	}
}
