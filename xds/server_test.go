package xds_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/policies"
	"github.com/tollgate-dev/tollgate/translate"
	"github.com/tollgate-dev/tollgate/xds"
)

const twoGateways = `apiVersion: tollgate.dev/v1alpha1
kind: Gateway
metadata: {name: a}
spec: {listeners: [{name: http, port: 10080, protocol: HTTP}]}
---
apiVersion: tollgate.dev/v1alpha1
kind: Gateway
metadata: {name: b, namespace: team}
spec: {listeners: [{name: http, port: 10080, protocol: HTTP}]}
---
apiVersion: tollgate.dev/v1alpha1
kind: Backend
metadata: {name: openai}
spec: {provider: openai}
---
apiVersion: tollgate.dev/v1alpha1
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{name: a}]
  rules: [{backendRefs: [{name: openai}], timeouts: {request: TIMEOUT}}]
`

func config(t *testing.T, src string) *model.Config {
	t.Helper()
	objs, errs := policies.NewScheme().Decode("p.yaml", []byte(src))
	require.Empty(t, errs)
	cfg, errs := model.BuildConfig(objs, model.Settings{})
	require.Empty(t, errs)
	return cfg
}

func TestVersionsAreContentHashesPerType(t *testing.T) {
	s := xds.NewServer(context.Background(), xds.Options{})
	cfg := config(t, strings.ReplaceAll(twoGateways, "TIMEOUT", "60s"))
	require.NoError(t, s.Apply(cfg))
	v1 := s.Versions("a")
	require.Len(t, v1, 5)

	// The same input in another server instance: the same versions.
	other := xds.NewServer(context.Background(), xds.Options{})
	require.NoError(t, other.Apply(config(t, strings.ReplaceAll(twoGateways, "TIMEOUT", "60s"))))
	require.Equal(t, v1, other.Versions("a"))

	// A route change moves only the routes version.
	require.NoError(t, s.Apply(config(t, strings.ReplaceAll(twoGateways, "TIMEOUT", "90s"))))
	v2 := s.Versions("a")
	require.NotEqual(t, v1["routes"], v2["routes"])
	for _, typ := range []string{"clusters", "endpoints", "listeners", "secrets"} {
		require.Equal(t, v1[typ], v2[typ], typ)
	}
	// Gateways in other namespaces are keyed namespace/name.
	require.NotNil(t, s.Versions("team/b"))
}

func TestRemovedGatewayGetsEmptySnapshot(t *testing.T) {
	s := xds.NewServer(context.Background(), xds.Options{})
	require.NoError(t, s.Apply(config(t, strings.ReplaceAll(twoGateways, "TIMEOUT", "60s"))))
	served := s.Versions("a")

	// Gateway a disappears: its Envoys must drop their listeners, not keep
	// serving what they were told last.
	require.NoError(t, s.Apply(config(t, `apiVersion: tollgate.dev/v1alpha1
kind: Gateway
metadata: {name: b, namespace: team}
spec: {listeners: [{name: http, port: 10080, protocol: HTTP}]}
`)))
	empty := xds.NewServer(context.Background(), xds.Options{})
	require.NoError(t, empty.Publish(&translate.Output{Gateways: []*translate.GatewayResources{{Key: "x"}}}))
	require.Equal(t, empty.Versions("x"), s.Versions("a"), "gateway a is served an empty configuration")
	require.NotEqual(t, served, s.Versions("a"))
}

// Skipping the deep check for unchanged resources must never let a changed,
// invalid one through.
func TestPublishChecksChangedResources(t *testing.T) {
	s := xds.NewServer(context.Background(), xds.Options{})
	cfg := config(t, strings.ReplaceAll(twoGateways, "TIMEOUT", "60s"))
	out, err := translate.Translate(cfg)
	require.NoError(t, err)
	require.NoError(t, s.Publish(out))
	served := s.Versions("a")

	bad, err := translate.Translate(cfg)
	require.NoError(t, err)
	bad.Gateway("a").Clusters[0].ConnectTimeout = durationpb.New(-time.Second)
	for range 2 {
		require.ErrorContains(t, s.Publish(bad), "ConnectTimeout")
	}
	require.Equal(t, served, s.Versions("a"), "nothing was published")
	require.NoError(t, s.Publish(out))
}
