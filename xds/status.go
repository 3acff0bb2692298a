package xds

import (
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/tollgate-dev/tollgate/translate"
)

// NodeStatus is what tollgate knows about one connected Envoy stream.
type NodeStatus struct {
	NodeID    string    `json:"node_id"`
	Gateway   string    `json:"gateway"`
	Stream    string    `json:"stream"` // "sotw" or "delta", with its id
	Connected time.Time `json:"connected"`
	// Identity is the verified client certificate identity that the
	// stream was authorized with (before its first request: every
	// identity of the certificate); empty on plaintext xDS.
	Identity string `json:"identity,omitempty"`
	// KnownGateway is false when no policy defines the gateway the node
	// asks for; it gets no resources until one does.
	KnownGateway bool `json:"known_gateway"`
	// Acked is the version the node last accepted, per short type name
	// (clusters, endpoints, listeners, routes, secrets).
	Acked map[string]string `json:"acked"`
	// Sent is the version last sent, per type; it differs from Acked while
	// a response is in flight or after a NACK.
	Sent     map[string]string `json:"sent"`
	LastNack *Nack             `json:"last_nack,omitempty"`
	// EnvoyVersion is the Envoy release the node runs (major.minor.patch),
	// or VersionUnknown.
	EnvoyVersion string `json:"envoy_version,omitempty"`
	// Problems are what the node's Envoy is too old for: tollgate's
	// oldest supported release, or a requirement of its gateway's current
	// configuration.
	Problems []NodeProblem `json:"problems,omitempty"`

	envoy translate.Version // zero when unknown
}

// Nack is a response an Envoy rejected.
type Nack struct {
	Type    string    `json:"type"`
	Version string    `json:"version"`
	Message string    `json:"message"`
	At      time.Time `json:"at"`
	// Resources are the resources of the rejected response that Envoy's
	// message names (or, when it names none, that the node asked for),
	// and Objects the policy objects that produced them
	// (translate.Origin): where to look first.
	Resources []string `json:"resources,omitempty"`
	Objects   []string `json:"objects,omitempty"`
}

// tracker keeps NodeStatus per stream.
type tracker struct {
	mu       sync.Mutex
	streams  map[string]*NodeStatus
	nonces   map[string]map[string]string // stream → nonce → version, for delta ACKs
	lastNack *NackRecord
}

// NackRecord is the most recent NACK from any node.
type NackRecord struct {
	NodeID  string `json:"node_id"`
	Gateway string `json:"gateway"`
	Nack
}

func newTracker() *tracker {
	return &tracker{streams: map[string]*NodeStatus{}, nonces: map[string]map[string]string{}}
}

func shortType(typeURL string) string {
	switch {
	case strings.HasSuffix(typeURL, ".Cluster"):
		return "clusters"
	case strings.HasSuffix(typeURL, ".ClusterLoadAssignment"):
		return "endpoints"
	case strings.HasSuffix(typeURL, ".Listener"):
		return "listeners"
	case strings.HasSuffix(typeURL, ".RouteConfiguration"):
		return "routes"
	case strings.HasSuffix(typeURL, ".Secret"):
		return "secrets"
	}
	return typeURL
}

func (t *tracker) open(stream string, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.streams[stream] = &NodeStatus{Stream: stream, Connected: now, Acked: map[string]string{}, Sent: map[string]string{}}
}

// close forgets a stream and returns what was known about it.
func (t *tracker) close(stream string) (NodeStatus, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.streams[stream]
	delete(t.streams, stream)
	delete(t.nonces, stream)
	if !ok {
		return NodeStatus{}, false
	}
	return *s, true
}

func (t *tracker) setIdentity(stream, identity string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s := t.streams[stream]; s != nil {
		s.Identity = identity
	}
}

// identify records the node of a stream; it reports whether this is the
// first time, so that callers log a node once per stream, not per request,
// and the stream's verified identity.
func (t *tracker) identify(stream, nodeID, gateway string, known bool) (first bool, identity string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.streams[stream]
	if s == nil {
		return false, ""
	}
	first = s.NodeID == "" && s.Gateway == ""
	s.NodeID, s.Gateway, s.KnownGateway = nodeID, gateway, known
	return first, s.Identity
}

// setEnvoy records the Envoy release of a stream's node.
func (t *tracker) setEnvoy(stream string, v translate.Version, text string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s := t.streams[stream]; s != nil {
		s.envoy, s.EnvoyVersion = v, text
	}
}

// sent records a response and returns the stream's gateway.
func (t *tracker) sent(stream, typeURL, version, nonce string) (gateway string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s := t.streams[stream]; s != nil {
		s.Sent[shortType(typeURL)] = version
		gateway = s.Gateway
	}
	if nonce != "" {
		if t.nonces[stream] == nil {
			t.nonces[stream] = map[string]string{}
		}
		t.nonces[stream][nonce] = version
	}
	return gateway
}

// lastSent is the version last sent on the stream for the type.
func (t *tracker) lastSent(stream, typeURL string) (string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.streams[stream]
	if s == nil {
		return "", false
	}
	v, ok := s.Sent[shortType(typeURL)]
	return v, ok
}

// versionOfNonce resolves a delta response nonce to the version it carried
// and forgets it: each nonce is answered once.
func (t *tracker) versionOfNonce(stream, nonce string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	v := t.nonces[stream][nonce]
	delete(t.nonces[stream], nonce)
	return v
}

// ack records an ACK and returns the stream's gateway.
func (t *tracker) ack(stream, typeURL, version string) (gateway string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s := t.streams[stream]; s != nil {
		s.Acked[shortType(typeURL)] = version
		gateway = s.Gateway
	}
	return gateway
}

// nodeProgress is what convergence needs of a stream.
type nodeProgress struct {
	gateway     string
	acked, sent map[string]string // per short type
	lastNack    *Nack
}

// progress returns a copy of a stream's progress.
func (t *tracker) progress(stream string) (nodeProgress, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.streams[stream]
	if s == nil {
		return nodeProgress{}, false
	}
	p := nodeProgress{gateway: s.Gateway, acked: copyMap(s.Acked), sent: copyMap(s.Sent)}
	if s.LastNack != nil {
		n := *s.LastNack
		p.lastNack = &n
	}
	return p, true
}

// streamsOf lists the streams whose node names gateway.
func (t *tracker) streamsOf(gateway string) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []string
	for id, s := range t.streams {
		if s.Gateway == gateway {
			out = append(out, id)
		}
	}
	return out
}

// gatewayOf is the gateway a stream's node asked for.
func (t *tracker) gatewayOf(stream string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s := t.streams[stream]; s != nil {
		return s.Gateway
	}
	return ""
}

func (t *tracker) nack(stream, typeURL, version, msg string, now time.Time, resources, objects []string) NackRecord {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := Nack{Type: shortType(typeURL), Version: version, Message: msg, At: now, Resources: resources, Objects: objects}
	rec := NackRecord{Nack: n}
	if s := t.streams[stream]; s != nil {
		s.LastNack = &n
		rec.NodeID, rec.Gateway = s.NodeID, s.Gateway
	}
	t.lastNack = &rec
	return rec
}

// Status is the admin view of every connected node.
type Status struct {
	Nodes    []NodeStatus `json:"nodes"`
	LastNack *NackRecord  `json:"last_nack,omitempty"`
}

// node returns a copy of one stream's status, without its maps (the
// version checks need only the node, its gateway and Envoy version).
func (t *tracker) node(stream string) (NodeStatus, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.streams[stream]
	if s == nil {
		return NodeStatus{}, false
	}
	c := *s
	c.Acked, c.Sent, c.LastNack = nil, nil, nil
	return c, true
}

func (t *tracker) snapshot() Status {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := Status{Nodes: make([]NodeStatus, 0, len(t.streams))}
	for _, s := range t.streams {
		c := *s
		c.Acked = copyMap(s.Acked)
		c.Sent = copyMap(s.Sent)
		if s.LastNack != nil {
			n := *s.LastNack
			c.LastNack = &n
		}
		st.Nodes = append(st.Nodes, c)
	}
	sort.Slice(st.Nodes, func(i, j int) bool {
		if st.Nodes[i].NodeID != st.Nodes[j].NodeID {
			return st.Nodes[i].NodeID < st.Nodes[j].NodeID
		}
		return st.Nodes[i].Stream < st.Nodes[j].Stream
	})
	if t.lastNack != nil {
		n := *t.lastNack
		st.LastNack = &n
	}
	return st
}

func copyMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
