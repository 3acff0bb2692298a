package xds

import (
	"fmt"
	"slices"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/tollgate-dev/tollgate/translate"
)

// Pre-encoded resources.
//
// go-control-plane's snapshot cache marshals every resource again for each
// response it sends: createResponse (pkg/cache/v3/simple.go) and
// createDeltaResponse (delta.go) wrap the snapshot's resources in a new
// cachedResource per response, whose getMarshaledResource runs
// proto.Marshal. With a fleet, that is one marshal of the whole route
// configuration per Envoy per change; cmd/tollgate-load measured it at
// two thirds of tollgate's CPU at 3,000 Envoys.
//
// tollgate hands the cache, instead, a message of the same type that holds
// only its name, as a field (the cache indexes by GetResourceName), and
// the rest of its content as already-encoded unknown fields. Marshalling
// it appends those bytes: a copy. The name is field 1 of every type
// tollgate serves, which the deterministic marshal writes first anyway, so
// the result is byte for byte what marshalling the real resource gives
// (TestPreEncodedResourcesDecodeToTheOriginal), and Delta's resource
// versions, hashes of those bytes, do not change. The encoding is done once
// per distinct resource (by content digest) and reused by later
// publications.

// nameField is the field GetResourceName reads: cluster_name for
// endpoints, name for every other type tollgate serves.
func nameField(d protoreflect.MessageDescriptor) protoreflect.FieldDescriptor {
	if f := d.Fields().ByName("cluster_name"); f != nil && d.Fields().ByName("name") == nil {
		return f
	}
	return d.Fields().ByName("name")
}

// preEncode returns r as a pre-encoded message of its own type.
func preEncode(r proto.Message) (types.Resource, error) {
	src := r.ProtoReflect()
	fd := nameField(src.Descriptor())
	if fd == nil || fd.Kind() != protoreflect.StringKind {
		return nil, fmt.Errorf("pre-encode %s: no name field", src.Descriptor().FullName())
	}
	name := src.Get(fd).String()
	rest := proto.Clone(r).ProtoReflect()
	rest.Clear(fd)
	raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(rest.Interface())
	if err != nil {
		return nil, fmt.Errorf("pre-encode %s %q: %w", src.Descriptor().FullName(), name, err)
	}
	shell := src.New()
	if name != "" {
		shell.Set(fd, protoreflect.ValueOfString(name))
	}
	shell.SetUnknown(raw)
	return shell.Interface(), nil
}

// preEncoded replaces every resource of snap by its pre-encoded form,
// reusing those of known, keyed by content digest, and returns the
// encodings it used, for the next publication. The versions are kept:
// they were computed from the real resources.
func preEncoded(snap *cachev3.Snapshot, digestOf func(proto.Message) (digest, error), known map[digest]types.Resource, used map[digest]types.Resource) error {
	for i := range snap.Resources {
		for name, item := range snap.Resources[i].Items {
			d, err := digestOf(item.Resource)
			if err != nil {
				return err
			}
			enc, ok := used[d]
			if !ok {
				enc, ok = known[d]
			}
			if !ok {
				if enc, err = preEncode(item.Resource); err != nil {
					return err
				}
			}
			used[d] = enc
			item.Resource = enc
			snap.Resources[i].Items[name] = item
		}
	}
	return nil
}

// publishedGateway is a gateway's last publication: the resources, and the
// snapshots (the gateway's, and its rate limit service's if any) made of
// them.
type publishedGateway struct {
	res       *translate.GatewayResources
	snap      *cachev3.Snapshot
	rateLimit *cachev3.Snapshot
}

// sameResources reports whether b holds the very messages a held, in the
// same order: what translate.TranslateIncremental hands over for a gateway
// it did not translate again.
func sameResources(a, b *translate.GatewayResources) bool {
	return a.RateLimitConfig == b.RateLimitConfig &&
		slices.Equal(a.Listeners, b.Listeners) && slices.Equal(a.Routes, b.Routes) &&
		slices.Equal(a.Clusters, b.Clusters) && slices.Equal(a.Endpoints, b.Endpoints) &&
		slices.Equal(a.Secrets, b.Secrets)
}

// carryEncoded copies the pre-encoded forms of g's resources from known to
// used, for a gateway whose snapshot is kept; it reports false when one is
// missing (the snapshot is then made again).
func carryEncoded(g *translate.GatewayResources, digestOf func(proto.Message) (digest, error), known, used map[digest]types.Resource) bool {
	for _, r := range g.All() {
		d, err := digestOf(r)
		if err != nil {
			return false
		}
		enc, ok := known[d]
		if !ok {
			return false
		}
		used[d] = enc
	}
	return true
}
