package envoysim

import (
	"maps"
	"slices"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/anypb"
)

// wire is what differs between SotW and Delta ADS: the shape of requests
// and responses. update and reply are called with Client.mu held and
// return a function that sends the request they built.
type wire interface {
	// update tells the server that the names wanted of a type changed
	// from previous (nil before the first request) to t.wanted.
	update(typeURL string, t *typeState, previous map[string]bool) func() error
	// reply ACKs the latest response of a type, t.nonce, or NACKs it with
	// nack.
	reply(typeURL string, t *typeState, nack error) func() error
	recv() (*response, error)
}

// response is a SotW or Delta response.
type response struct {
	typeURL, version, nonce string
	resources               []rawResource
	removed                 []string
}

type rawResource struct {
	name string // empty in SotW
	body *anypb.Any
}

// nodeOnce hands out the node for the first request of a stream only.
type nodeOnce struct{ node *corev3.Node }

func (n *nodeOnce) take() *corev3.Node {
	node := n.node
	n.node = nil
	return node
}

// errorDetail is the error_detail of a NACK; Envoy uses code INTERNAL.
func errorDetail(nack error) *status.Status {
	if nack == nil {
		return nil
	}
	return &status.Status{Code: int32(codes.Internal), Message: nack.Error()}
}

type sotwWire struct {
	stream grpc.BidiStreamingClient[discovery.DiscoveryRequest, discovery.DiscoveryResponse]
	nodeOnce
}

// request builds the one shape of SotW request: every request restates
// the whole subscription and the last accepted version, and echoes the
// last nonce so the server does not ignore it as stale.
func (w *sotwWire) request(typeURL string, t *typeState, nack error) func() error {
	req := &discovery.DiscoveryRequest{
		VersionInfo:   t.version,
		Node:          w.take(),
		ResourceNames: slices.Sorted(maps.Keys(t.wanted)),
		TypeUrl:       typeURL,
		ResponseNonce: t.nonce,
		ErrorDetail:   errorDetail(nack),
	}
	return func() error { return w.stream.Send(req) }
}

func (w *sotwWire) update(typeURL string, t *typeState, _ map[string]bool) func() error {
	return w.request(typeURL, t, nil)
}

func (w *sotwWire) reply(typeURL string, t *typeState, nack error) func() error {
	return w.request(typeURL, t, nack)
}

func (w *sotwWire) recv() (*response, error) {
	m, err := w.stream.Recv()
	if err != nil {
		return nil, err
	}
	r := &response{typeURL: m.GetTypeUrl(), version: m.GetVersionInfo(), nonce: m.GetNonce()}
	for _, a := range m.GetResources() {
		r.resources = append(r.resources, rawResource{body: a})
	}
	return r, nil
}

type deltaWire struct {
	stream grpc.BidiStreamingClient[discovery.DeltaDiscoveryRequest, discovery.DeltaDiscoveryResponse]
	nodeOnce
}

// update sends the difference. The first request of a wildcard type has
// no names, which subscribes to it as (legacy) wildcard like Envoy does.
func (w *deltaWire) update(typeURL string, t *typeState, previous map[string]bool) func() error {
	req := &discovery.DeltaDiscoveryRequest{
		Node:                     w.take(),
		TypeUrl:                  typeURL,
		ResourceNamesSubscribe:   missing(t.wanted, previous),
		ResourceNamesUnsubscribe: missing(previous, t.wanted),
	}
	return func() error { return w.stream.Send(req) }
}

func (w *deltaWire) reply(typeURL string, t *typeState, nack error) func() error {
	req := &discovery.DeltaDiscoveryRequest{
		Node:          w.take(),
		TypeUrl:       typeURL,
		ResponseNonce: t.nonce,
		ErrorDetail:   errorDetail(nack),
	}
	return func() error { return w.stream.Send(req) }
}

func (w *deltaWire) recv() (*response, error) {
	m, err := w.stream.Recv()
	if err != nil {
		return nil, err
	}
	r := &response{
		typeURL: m.GetTypeUrl(),
		version: m.GetSystemVersionInfo(),
		nonce:   m.GetNonce(),
		removed: m.GetRemovedResources(),
	}
	for _, res := range m.GetResources() {
		r.resources = append(r.resources, rawResource{name: res.GetName(), body: res.GetResource()})
	}
	return r, nil
}

// missing lists, sorted, the names in a that are not in b.
func missing(a, b map[string]bool) []string {
	var out []string
	for name := range a {
		if !b[name] {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}
