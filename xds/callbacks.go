package xds

import (
	"context"
	"fmt"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func sotwStream(id int64) string  { return fmt.Sprintf("sotw/%d", id) }
func deltaStream(id int64) string { return fmt.Sprintf("delta/%d", id) }

func (s *Server) callbacks() serverv3.Callbacks {
	return serverv3.CallbackFuncs{
		StreamOpenFunc: func(ctx context.Context, id int64, _ string) error {
			return s.openStream(ctx, sotwStream(id))
		},
		StreamClosedFunc: func(id int64, _ *corev3.Node) {
			s.closeStream(sotwStream(id))
		},
		StreamRequestFunc: func(id int64, req *discoveryv3.DiscoveryRequest) error {
			stream := sotwStream(id)
			if err := s.authorize(stream, req.GetNode()); err != nil {
				return err
			}
			s.identify(stream, req.GetNode())
			if req.GetErrorDetail() != nil {
				// Envoy NACKs with version_info set to the last version it
				// accepted. Left alone, the snapshot cache sees that it
				// differs from the current version and sends the rejected
				// configuration straight back, in a loop. Pretend the node
				// is up to date with what it rejected: the cache then
				// answers only when the configuration really changes.
				rejected, _ := s.tracker.lastSent(stream, req.GetTypeUrl())
				s.recordNack(stream, req.GetTypeUrl(), rejected, req.GetErrorDetail().GetMessage(), req.GetResourceNames())
				if rejected != "" {
					req.VersionInfo = rejected
				}
				return nil
			}
			if req.GetResponseNonce() != "" {
				s.recordAck(stream, req.GetTypeUrl(), req.GetVersionInfo())
			}
			return nil
		},
		StreamResponseFunc: func(_ context.Context, id int64, req *discoveryv3.DiscoveryRequest, resp *discoveryv3.DiscoveryResponse) {
			stream := sotwStream(id)
			s.countPush(stream, req.GetTypeUrl(), s.tracker.sent(stream, req.GetTypeUrl(), resp.GetVersionInfo(), ""))
		},
		DeltaStreamOpenFunc: func(ctx context.Context, id int64, _ string) error {
			return s.openStream(ctx, deltaStream(id))
		},
		DeltaStreamClosedFunc: func(id int64, _ *corev3.Node) {
			s.closeStream(deltaStream(id))
		},
		StreamDeltaRequestFunc: func(id int64, req *discoveryv3.DeltaDiscoveryRequest) error {
			stream := deltaStream(id)
			if err := s.authorize(stream, req.GetNode()); err != nil {
				return err
			}
			s.identify(stream, req.GetNode())
			if req.GetResponseNonce() == "" {
				return nil
			}
			// Delta tracks what each stream holds per resource, so a NACK
			// does not make the cache resend; it only needs recording.
			version := s.tracker.versionOfNonce(stream, req.GetResponseNonce())
			if req.GetErrorDetail() != nil {
				s.recordNack(stream, req.GetTypeUrl(), version, req.GetErrorDetail().GetMessage(), req.GetResourceNamesSubscribe())
				return nil
			}
			s.recordAck(stream, req.GetTypeUrl(), version)
			return nil
		},
		StreamDeltaResponseFunc: func(id int64, req *discoveryv3.DeltaDiscoveryRequest, resp *discoveryv3.DeltaDiscoveryResponse) {
			stream := deltaStream(id)
			s.countPush(stream, req.GetTypeUrl(), s.tracker.sent(stream, req.GetTypeUrl(), resp.GetSystemVersionInfo(), resp.GetNonce()))
		},
		// The unary Fetch methods of the per-type services bypass streams;
		// they are held to the same rule.
		FetchRequestFunc: s.authorizeFetch,
	}
}

// streamAuth is what a TLS stream has proven: the identities of its client
// certificate and, after its first request, the gateway they were allowed.
type streamAuth struct {
	identities []string
	peer       string
	gateway    string
	key        string // the snapshot key: the gateway's, or its rate limit service's
	authorized bool
}

// openStream starts tracking a stream and, with TLS, reads its client's
// verified identities from the connection.
func (s *Server) openStream(ctx context.Context, stream string) error {
	s.tracker.open(stream, s.now())
	if s.opts.TLS == nil {
		return nil
	}
	ids, addr, err := peerIdentities(ctx)
	peerAddr := ""
	if addr != nil {
		peerAddr = addr.String()
	}
	if err != nil {
		msg := "xDS access denied: " + err.Error()
		s.log.Error("xDS stream refused", "peer", peerAddr, "stream", stream, "reason", msg)
		return status.Error(codes.PermissionDenied, msg)
	}
	s.tracker.setIdentity(stream, strings.Join(ids, ", "))
	s.authMu.Lock()
	s.auth[stream] = &streamAuth{identities: ids, peer: peerAddr}
	s.authMu.Unlock()
	return nil
}

func (s *Server) closeStream(stream string) {
	s.authMu.Lock()
	delete(s.auth, stream)
	s.authMu.Unlock()
	st, ok := s.tracker.close(stream)
	if ok {
		s.convergeClose(stream, st.Gateway)
	}
	if ok && (st.NodeID != "" || st.Gateway != "") {
		s.log.Info("envoy disconnected", "node", st.NodeID, "gateway", st.Gateway, "stream", stream)
	}
}

// authorize checks, with TLS, that the stream's identity may serve the
// gateway its node names. The first request decides; a later request may
// not switch to another gateway, which would otherwise move the stream to
// that gateway's snapshot.
func (s *Server) authorize(stream string, node *corev3.Node) error {
	if s.opts.TLS == nil {
		return nil
	}
	s.authMu.Lock()
	defer s.authMu.Unlock()
	a := s.auth[stream]
	if a == nil {
		return status.Error(codes.PermissionDenied, "xDS access denied: the stream is not authenticated")
	}
	if a.authorized {
		if node != nil && nodeKey(node) != a.key {
			gw, _ := nodeGateway(node)
			msg := fmt.Sprintf("xDS access denied: node %q switched from gateway %q to %q on one stream; a stream serves one gateway", node.GetId(), a.gateway, gw)
			s.log.Error("xDS stream refused", "node", node.GetId(), "gateway", gw, "identity", strings.Join(a.identities, ", "), "peer", a.peer, "stream", stream, "reason", msg)
			return status.Error(codes.PermissionDenied, msg)
		}
		return nil
	}
	if node == nil {
		msg := fmt.Sprintf("xDS access denied: certificate %s: the first request of a stream must carry the node", describeIdentities(a.identities))
		s.log.Error("xDS stream refused", "identity", strings.Join(a.identities, ", "), "peer", a.peer, "stream", stream, "reason", msg)
		return status.Error(codes.PermissionDenied, msg)
	}
	gateway, _ := nodeGateway(node)
	identity, ok := s.opts.Authorizer.allow(a.identities, gateway)
	if gateway == "" || !ok {
		msg := s.opts.Authorizer.refusal(a.identities, node.GetId(), gateway)
		s.log.Error("xDS stream refused", "node", node.GetId(), "gateway", gateway, "identity", strings.Join(a.identities, ", "), "peer", a.peer, "stream", stream, "reason", msg)
		return status.Error(codes.PermissionDenied, msg)
	}
	a.gateway, a.key, a.authorized = gateway, nodeKey(node), true
	s.tracker.setIdentity(stream, identity)
	return nil
}

// authorizeFetch applies authorize's rule to a unary Fetch request.
func (s *Server) authorizeFetch(ctx context.Context, req *discoveryv3.DiscoveryRequest) error {
	if s.opts.TLS == nil {
		return nil
	}
	ids, addr, err := peerIdentities(ctx)
	if err != nil {
		msg := "xDS access denied: " + err.Error()
		s.log.Error("xDS fetch refused", "peer", addr, "reason", msg)
		return status.Error(codes.PermissionDenied, msg)
	}
	gateway, _ := nodeGateway(req.GetNode())
	if _, ok := s.opts.Authorizer.allow(ids, gateway); gateway == "" || !ok {
		msg := s.opts.Authorizer.refusal(ids, req.GetNode().GetId(), gateway)
		s.log.Error("xDS fetch refused", "node", req.GetNode().GetId(), "gateway", gateway, "identity", strings.Join(ids, ", "), "peer", addr, "reason", msg)
		return status.Error(codes.PermissionDenied, msg)
	}
	return nil
}

// identify binds a stream to its node on the first request that carries one
// and logs the connection once.
func (s *Server) identify(stream string, node *corev3.Node) {
	if node == nil {
		return
	}
	gateway, rls := nodeGateway(node)
	key := nodeKey(node)
	known := s.knownGateway(key)
	first, identity := s.tracker.identify(stream, node.GetId(), key, known)
	if !first {
		return
	}
	v, version, ok := envoyVersion(node)
	if !ok {
		version = VersionUnknown
	}
	s.tracker.setEnvoy(stream, v, version)
	args := []any{"node", node.GetId(), "gateway", gateway, "stream", stream, "envoy_version", version}
	if identity != "" {
		args = append(args, "identity", identity)
	}
	defer s.checkStreamVersion(stream)
	switch {
	case rls && gateway == "":
		s.log.Error("rate limit service connected with an empty "+RateLimitGatewayKey+"; it gets no configuration: set CONFIG_GRPC_XDS_NODE_METADATA="+RateLimitGatewayKey+"=<namespace>/<gateway>", args...)
	case rls && !known:
		s.log.Error("rate limit service asks for a gateway without a RateLimitPolicy service; it gets an empty configuration until one exists", args...)
	case rls:
		s.log.Info("rate limit service connected", args...)
	case gateway == "":
		s.log.Error("envoy connected without node.cluster; it gets no resources: set node.cluster to a gateway name (tollgate bootstrap does)", args...)
	case !known:
		s.log.Error("envoy asks for a gateway that no policy defines; it gets no resources until one does", args...)
	default:
		s.log.Info("envoy connected", args...)
	}
}

// recordNack logs and records a NACK. The node comes from the stream, since
// only the first request of a delta stream carries it.
func (s *Server) recordNack(stream, typeURL, version, msg string, requested []string) {
	resources, objects := s.nackProvenance(s.tracker.gatewayOf(stream), typeURL, msg, requested)
	rec := s.tracker.nack(stream, typeURL, version, msg, s.now(), resources, objects)
	s.countNack(stream, typeURL, rec.Gateway)
	s.convergeNack(stream, rec.Gateway, rec.Type, version)
	args := []any{"node", rec.NodeID, "gateway", rec.Gateway, "type", rec.Type, "version", version, "message", msg}
	if len(objects) > 0 {
		args = append(args, "resources", resources, "objects", objects)
	}
	s.log.Error("envoy rejected configuration (NACK)", args...)
}

// recordAck records an ACK for /status/nodes, the metrics and convergence.
func (s *Server) recordAck(stream, typeURL, version string) {
	s.countAck(stream, typeURL, s.tracker.ack(stream, typeURL, version))
	s.convergeAck(stream)
}
