package xds

import (
	"context"
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
)

func sotwStream(id int64) string  { return fmt.Sprintf("sotw/%d", id) }
func deltaStream(id int64) string { return fmt.Sprintf("delta/%d", id) }

func (s *Server) callbacks() serverv3.Callbacks {
	return serverv3.CallbackFuncs{
		StreamOpenFunc: func(_ context.Context, id int64, _ string) error {
			s.tracker.open(sotwStream(id), s.now())
			return nil
		},
		StreamClosedFunc: func(id int64, node *corev3.Node) {
			s.tracker.close(sotwStream(id))
			if node != nil {
				s.log.Info("envoy disconnected", "node", node.GetId(), "gateway", node.GetCluster())
			}
		},
		StreamRequestFunc: func(id int64, req *discoveryv3.DiscoveryRequest) error {
			stream := sotwStream(id)
			s.identify(stream, req.GetNode())
			if req.GetErrorDetail() != nil {
				// Envoy NACKs with version_info set to the last version it
				// accepted. Left alone, the snapshot cache sees that it
				// differs from the current version and sends the rejected
				// configuration straight back, in a loop. Pretend the node
				// is up to date with what it rejected: the cache then
				// answers only when the configuration really changes.
				rejected, _ := s.tracker.lastSent(stream, req.GetTypeUrl())
				s.recordNack(stream, req.GetTypeUrl(), rejected, req.GetErrorDetail().GetMessage())
				if rejected != "" {
					req.VersionInfo = rejected
				}
				return nil
			}
			if req.GetResponseNonce() != "" {
				s.tracker.ack(stream, req.GetTypeUrl(), req.GetVersionInfo())
			}
			return nil
		},
		StreamResponseFunc: func(_ context.Context, id int64, req *discoveryv3.DiscoveryRequest, resp *discoveryv3.DiscoveryResponse) {
			s.tracker.sent(sotwStream(id), req.GetTypeUrl(), resp.GetVersionInfo(), "")
		},
		DeltaStreamOpenFunc: func(_ context.Context, id int64, _ string) error {
			s.tracker.open(deltaStream(id), s.now())
			return nil
		},
		DeltaStreamClosedFunc: func(id int64, node *corev3.Node) {
			s.tracker.close(deltaStream(id))
			if node != nil {
				s.log.Info("envoy disconnected", "node", node.GetId(), "gateway", node.GetCluster())
			}
		},
		StreamDeltaRequestFunc: func(id int64, req *discoveryv3.DeltaDiscoveryRequest) error {
			stream := deltaStream(id)
			s.identify(stream, req.GetNode())
			if req.GetResponseNonce() == "" {
				return nil
			}
			// Delta tracks what each stream holds per resource, so a NACK
			// does not make the cache resend; it only needs recording.
			version := s.tracker.versionOfNonce(stream, req.GetResponseNonce())
			if req.GetErrorDetail() != nil {
				s.recordNack(stream, req.GetTypeUrl(), version, req.GetErrorDetail().GetMessage())
				return nil
			}
			s.tracker.ack(stream, req.GetTypeUrl(), version)
			return nil
		},
		StreamDeltaResponseFunc: func(id int64, req *discoveryv3.DeltaDiscoveryRequest, resp *discoveryv3.DeltaDiscoveryResponse) {
			s.tracker.sent(deltaStream(id), req.GetTypeUrl(), resp.GetSystemVersionInfo(), resp.GetNonce())
		},
	}
}

// identify binds a stream to its node on the first request that carries one
// and logs the connection once.
func (s *Server) identify(stream string, node *corev3.Node) {
	if node == nil {
		return
	}
	gateway := node.GetCluster()
	known := s.knownGateway(gateway)
	if !s.tracker.identify(stream, node.GetId(), gateway, known) {
		return
	}
	switch {
	case gateway == "":
		s.log.Error("envoy connected without node.cluster; it gets no resources: set node.cluster to a gateway name (tollgate bootstrap does)", "node", node.GetId())
	case !known:
		s.log.Error("envoy asks for a gateway that no policy defines; it gets no resources until one does", "node", node.GetId(), "gateway", gateway)
	default:
		s.log.Info("envoy connected", "node", node.GetId(), "gateway", gateway, "stream", stream)
	}
}

// recordNack logs and records a NACK. The node comes from the stream, since
// only the first request of a delta stream carries it.
func (s *Server) recordNack(stream, typeURL, version, msg string) {
	rec := s.tracker.nack(stream, typeURL, version, msg, s.now())
	s.log.Error("envoy rejected configuration (NACK)",
		"node", rec.NodeID, "gateway", rec.Gateway, "type", rec.Type, "version", version, "message", msg)
}
