package xds

import (
	"sync"
	"time"
)

// convergence measures, per gateway, the time from the publication of a
// new configuration to every node connected at that moment having ACKed
// it. A node that disconnects is dropped from the wait; one that NACKs is
// dropped and counted apart, since its gateway never converged on that
// configuration.
type convergence struct {
	mu    sync.Mutex
	waits map[string]*convergenceWait // by gateway
}

type convergenceWait struct {
	start    time.Time
	versions map[string]string // short type → version published
	nodes    map[string]bool   // streams still to ACK
	acked    int
}

// startConvergence begins the wait for a gateway's new versions. It runs
// before the snapshot is set, so that no ACK can come first.
func (s *Server) startConvergence(gateway string, versions map[string]string) {
	streams := s.tracker.streamsOf(gateway)
	s.conv.mu.Lock()
	defer s.conv.mu.Unlock()
	if old := s.conv.waits[gateway]; old != nil && len(old.nodes) > 0 {
		s.metrics.incomplete.WithLabelValues(gateway, "superseded").Add(float64(len(old.nodes)))
	}
	delete(s.conv.waits, gateway)
	if len(streams) == 0 {
		return
	}
	w := &convergenceWait{start: s.now(), versions: versions, nodes: map[string]bool{}}
	for _, st := range streams {
		p, ok := s.tracker.progress(st)
		switch {
		case !ok:
		case p.lastNack != nil && versions[p.lastNack.Type] == p.lastNack.Version && p.acked[p.lastNack.Type] != p.lastNack.Version:
			// The node already rejected a version this publication
			// keeps; it will not be sent again, so it cannot converge.
			s.metrics.incomplete.WithLabelValues(gateway, "nack").Inc()
		default:
			w.nodes[st] = true
		}
	}
	if len(w.nodes) > 0 {
		s.conv.waits[gateway] = w
	}
}

// converged reports whether a node holds the published versions of every
// type it was ever sent. A type never sent is one the node does not
// subscribe to. A Delta stream is sent a type only when a resource it
// subscribes to changes; tollgate's Envoys subscribe to every resource of
// their gateway's snapshot, so a changed version always reaches them.
func converged(p nodeProgress, versions map[string]string) bool {
	for typ, v := range versions {
		if _, subscribed := p.sent[typ]; subscribed && p.acked[typ] != v {
			return false
		}
	}
	return true
}

// convergeAck re-examines a stream after an ACK: it is done once every type
// it subscribes to holds the published version.
func (s *Server) convergeAck(stream string) {
	p, ok := s.tracker.progress(stream)
	if !ok {
		return
	}
	gateway := p.gateway
	s.conv.mu.Lock()
	defer s.conv.mu.Unlock()
	w := s.conv.waits[gateway]
	if w == nil || !w.nodes[stream] || !converged(p, w.versions) {
		return
	}
	delete(w.nodes, stream)
	w.acked++
	s.finishConvergenceLocked(gateway, w)
}

// convergeNack ends the wait of a stream that rejected a published version.
func (s *Server) convergeNack(stream, gateway, typ, version string) {
	s.conv.mu.Lock()
	defer s.conv.mu.Unlock()
	w := s.conv.waits[gateway]
	if w == nil || !w.nodes[stream] || w.versions[typ] != version {
		return
	}
	delete(w.nodes, stream)
	s.metrics.incomplete.WithLabelValues(gateway, "nack").Inc()
	s.finishConvergenceLocked(gateway, w)
}

// convergeClose drops a disconnected stream from every wait.
func (s *Server) convergeClose(stream, gateway string) {
	s.conv.mu.Lock()
	defer s.conv.mu.Unlock()
	w := s.conv.waits[gateway]
	if w == nil || !w.nodes[stream] {
		return
	}
	delete(w.nodes, stream)
	s.finishConvergenceLocked(gateway, w)
}

// finishConvergenceLocked observes the convergence time once no node is
// left to wait for, if at least one node ACKed.
func (s *Server) finishConvergenceLocked(gateway string, w *convergenceWait) {
	if len(w.nodes) > 0 {
		return
	}
	if w.acked > 0 {
		s.metrics.convergence.WithLabelValues(gateway).Observe(s.now().Sub(w.start).Seconds())
	}
	delete(s.conv.waits, gateway)
}
