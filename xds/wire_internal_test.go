package xds

import (
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/model/modeltest"
	"github.com/tollgate-dev/tollgate/policies"
	"github.com/tollgate-dev/tollgate/translate"
	"github.com/tollgate-dev/tollgate/translate/translatetest"
)

// TestPreEncodedResourcesDecodeToTheOriginal: what go-control-plane sends
// for a pre-encoded resource decodes to exactly the resource tollgate
// translated and validated, keeps its name for the cache's index, and the
// snapshot keeps the versions of the real resources.
func TestPreEncodedResourcesDecodeToTheOriginal(t *testing.T) {
	objs, errs := policies.NewScheme().Decode("p.yaml", modeltest.GenerateYAML(30))
	require.Empty(t, errs)
	cfg, errs := model.BuildConfig(objs, model.Settings{})
	require.Empty(t, errs)
	out, err := translate.Translate(cfg)
	require.NoError(t, err)
	require.Len(t, out.Gateways, 1)
	g := out.Gateways[0]
	g.Secrets = append(g.Secrets, &tlsv3.Secret{Name: "ca/x", Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
		TrustedCa: &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: "/etc/ssl/certs/ca-certificates.crt"}},
	}}})
	require.NotEmpty(t, g.Endpoints, "the generated set must have EDS endpoints to check cluster_name")

	all := g.All()
	for _, r := range all {
		enc, err := preEncode(r)
		require.NoError(t, err)
		require.Equal(t, cachev3.GetResourceName(r), cachev3.GetResourceName(enc))
		wire, err := cachev3.MarshalResource(enc)
		require.NoError(t, err)
		orig, err := cachev3.MarshalResource(r)
		require.NoError(t, err)
		require.Equal(t, orig, wire, "the very bytes go-control-plane would have sent")
		back := r.ProtoReflect().New().Interface()
		require.NoError(t, proto.Unmarshal(wire, back))
		require.True(t, proto.Equal(r, back), "%s %q decodes to something else", r.ProtoReflect().Descriptor().FullName(), cachev3.GetResourceName(r))
	}

	real, err := snapshot(g, digestOf)
	require.NoError(t, err)
	snap, err := snapshot(g, digestOf)
	require.NoError(t, err)
	known := map[digest]types.Resource{}
	require.NoError(t, preEncoded(snap, digestOf, nil, known))
	require.Len(t, known, len(all))
	for i := range snap.Resources {
		require.Equal(t, real.Resources[i].Version, snap.Resources[i].Version)
		require.Len(t, snap.Resources[i].Items, len(real.Resources[i].Items))
		for name, item := range snap.Resources[i].Items {
			require.NotEmpty(t, item.Resource.ProtoReflect().GetUnknown(), "%s is not pre-encoded", name)
		}
	}
	// A later publication reuses the encodings of unchanged resources.
	again, err := snapshot(g, digestOf)
	require.NoError(t, err)
	reused := map[digest]types.Resource{}
	require.NoError(t, preEncoded(again, digestOf, known, reused))
	for d, enc := range reused {
		require.Same(t, known[d], enc)
	}
}

// TestUnchangedGatewaysKeepTheirSnapshot: after an edit of one gateway of
// three, the other two keep the very snapshot the cache holds (it is not
// handed over again, so their Envoys' watches are not woken), their
// encodings carry over, and the edited gateway gets a new snapshot with a
// new route version only.
func TestUnchangedGatewaysKeepTheirSnapshot(t *testing.T) {
	s := NewServer(t.Context(), Options{})
	files := modeltest.GenerateGateways(3, 5, "600s")
	require.NoError(t, s.Apply(translatetest.BuildFiles(t, files)))
	keys := make([]string, 3)
	before := map[string]cachev3.ResourceSnapshot{}
	for i, gc := range translatetest.BuildFiles(t, files).Gateways {
		keys[i] = model.GatewayKey(gc.Ref)
		snap, err := s.cache.GetSnapshot(keys[i])
		require.NoError(t, err)
		before[keys[i]] = snap
	}
	encodedBefore := len(s.lastEncoded)

	files[1] = modeltest.GatewayFile(1, 5, "601s")
	require.NoError(t, s.Apply(translatetest.BuildFiles(t, files)))
	for i, key := range keys {
		snap, err := s.cache.GetSnapshot(key)
		require.NoError(t, err)
		if i != 1 {
			require.Same(t, before[key], snap, "gateway %s did not change and keeps its snapshot", key)
			continue
		}
		require.NotSame(t, before[key], snap)
		routeType := "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
		for _, typ := range []string{routeType, "type.googleapis.com/envoy.config.cluster.v3.Cluster", "type.googleapis.com/envoy.config.listener.v3.Listener"} {
			if typ == routeType {
				require.NotEqual(t, before[key].GetVersion(typ), snap.GetVersion(typ))
			} else {
				require.Equal(t, before[key].GetVersion(typ), snap.GetVersion(typ), typ)
			}
		}
	}
	require.Len(t, s.lastEncoded, encodedBefore, "every resource still has its one encoding")
	for _, g := range s.lastOut.Gateways {
		require.True(t, carryEncoded(g, digestOf, s.lastEncoded, map[digest]types.Resource{}), "%s: an encoding is missing", g.Key)
	}
}
