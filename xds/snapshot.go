package xds

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/tollgate-dev/tollgate/translate"
)

// typeOrder is every type tollgate serves, in the order ADS must deliver
// them (CDS before EDS, LDS before RDS, secrets before the clusters and
// listeners that use them are warmed).
var typeOrder = []resourcev3.Type{
	resourcev3.SecretType,
	resourcev3.ClusterType,
	resourcev3.EndpointType,
	resourcev3.ListenerType,
	resourcev3.RouteType,
}

// Snapshot builds a gateway's go-control-plane snapshot. Each type's version
// is a hash of its content, so that two replicas, or one tollgate after a
// restart, serve identical versions for identical policies, and a change to
// one type (a rotated secret) does not bump the others.
func Snapshot(g *translate.GatewayResources) (*cachev3.Snapshot, error) {
	return snapshot(g, digestOf)
}

// digest is the identity of a resource's content: its type and its
// deterministic bytes.
type digest = [sha256.Size]byte

func digestOf(r proto.Message) (digest, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(r)
	if err != nil {
		return digest{}, fmt.Errorf("hash %s: %w", cachev3.GetResourceName(r), err)
	}
	h := sha256.New()
	h.Write([]byte(r.ProtoReflect().Descriptor().FullName()))
	h.Write([]byte{0})
	h.Write(b)
	var d digest
	copy(d[:], h.Sum(nil))
	return d, nil
}

// snapshot is Snapshot with the digests coming from digestFn, so that a
// publication marshals each resource once for validation and versions.
func snapshot(g *translate.GatewayResources, digestFn func(proto.Message) (digest, error)) (*cachev3.Snapshot, error) {
	byType := map[resourcev3.Type][]types.Resource{}
	for _, r := range g.Listeners {
		byType[resourcev3.ListenerType] = append(byType[resourcev3.ListenerType], r)
	}
	for _, r := range g.Routes {
		byType[resourcev3.RouteType] = append(byType[resourcev3.RouteType], r)
	}
	for _, r := range g.Clusters {
		byType[resourcev3.ClusterType] = append(byType[resourcev3.ClusterType], r)
	}
	for _, r := range g.Endpoints {
		byType[resourcev3.EndpointType] = append(byType[resourcev3.EndpointType], r)
	}
	for _, r := range g.Secrets {
		byType[resourcev3.SecretType] = append(byType[resourcev3.SecretType], r)
	}
	snap := &cachev3.Snapshot{}
	for _, typ := range typeOrder {
		items := byType[typ]
		version, err := contentVersion(items, digestFn)
		if err != nil {
			return nil, err
		}
		snap.Resources[cachev3.GetResponseType(typ)] = cachev3.NewResources(version, items)
	}
	if err := snap.Consistent(); err != nil {
		return nil, fmt.Errorf("gateway %s: inconsistent snapshot: %w", g.Key, err)
	}
	return snap, nil
}

// contentVersion hashes the names and content digests of resources in
// their (already sorted) order.
func contentVersion(items []types.Resource, digestFn func(proto.Message) (digest, error)) (string, error) {
	h := sha256.New()
	for _, r := range items {
		d, err := digestFn(r)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s\x00", cachev3.GetResourceName(r))
		h.Write(d[:])
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}
