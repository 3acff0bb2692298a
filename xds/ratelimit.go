package xds

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/tollgate-dev/tollgate/translate"
)

// Rate limit service instances (envoyproxy/ratelimit with
// CONFIG_TYPE=GRPC_XDS_SOTW) join over ADS like Envoys, and subscribe to
// ratelimit.config.ratelimit.v3.RateLimitConfig only
// (XdsGrpcSotwProvider in its src/provider/xds_grpc_sotw_provider.go).
// Their node carries no cluster: only an id (CONFIG_GRPC_XDS_NODE_ID, any
// name, shown in /status/nodes) and metadata
// (CONFIG_GRPC_XDS_NODE_METADATA). An instance names the gateway it counts
// for with the metadata key RateLimitGatewayKey, e.g.
// CONFIG_GRPC_XDS_NODE_METADATA=tollgate.dev/gateway=ml/egress, and gets
// that gateway's configuration (one domain). Over mutual TLS its client
// certificate must be bound to the gateway in xds-identities, exactly as
// the gateway's Envoys are: an instance may count for the gateways its
// identity may serve, and nothing else.
const RateLimitGatewayKey = "tollgate.dev/gateway"

// rateLimitPrefix starts the snapshot key of a gateway's rate limit
// service instances; no gateway key holds a ':'.
const rateLimitPrefix = "ratelimit:"

// RateLimitSnapshotKey is the snapshot key of a gateway's rate limit
// service instances.
func RateLimitSnapshotKey(gateway string) string { return rateLimitPrefix + gateway }

// nodeGateway is the gateway a node serves, and whether it is a rate
// limit service instance rather than an Envoy.
func nodeGateway(node *corev3.Node) (gateway string, rls bool) {
	if c := node.GetCluster(); c != "" {
		return c, false
	}
	if v, ok := node.GetMetadata().GetFields()[RateLimitGatewayKey]; ok {
		return v.GetStringValue(), true
	}
	return "", false
}

// nodeKey is a node's snapshot key.
func nodeKey(node *corev3.Node) string {
	gw, rls := nodeGateway(node)
	if rls && gw != "" {
		return RateLimitSnapshotKey(gw)
	}
	return gw
}

// rateLimitSnapshot is what a gateway's rate limit instances get: its
// RateLimitConfig, versioned by content like every other type.
func rateLimitSnapshot(g *translate.GatewayResources, digestFn func(proto.Message) (digest, error)) (*cachev3.Snapshot, error) {
	var items []types.Resource
	if g.RateLimitConfig != nil {
		items = append(items, g.RateLimitConfig)
	}
	version, err := contentVersion(items, digestFn)
	if err != nil {
		return nil, err
	}
	snap := &cachev3.Snapshot{}
	snap.Resources[cachev3.GetResponseType(resourcev3.RateLimitConfigType)] = cachev3.NewResources(version, items)
	return snap, nil
}
