// Package envoysim is an xDS client that behaves like Envoy on an ADS
// stream, for integration tests of a control plane.
//
// A Client subscribes to clusters and listeners as wildcard, follows their
// references to endpoints (EDS), route configurations (RDS) and TLS secrets
// (SDS) the way Envoy does, validates every response and ACKs or NACKs it.
// Tests read the accepted state and the record of responses, and wait on
// them with WaitFor and WaitForResponse instead of sleeping.
//
// Unlike Envoy, a Client does not reconnect: the end of its stream is
// final and reported by Err, so tests can check why a server refused it.
package envoysim

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/tollgate-dev/tollgate/translate"
)

// Options configures a Client.
type Options struct {
	// NodeID is the node's id.
	NodeID string
	// Gateway is the node's cluster.
	Gateway string
	// Delta selects incremental ADS (DeltaAggregatedResources) instead of
	// state of the world (StreamAggregatedResources).
	Delta bool
	// DialOptions are passed to grpc.NewClient; they must at least set the
	// transport credentials.
	DialOptions []grpc.DialOption
	// Reject, if set, sees every resource that passed validation. An error
	// makes the client NACK the response, like an Envoy that cannot use the
	// resource.
	Reject func(typeURL string, res proto.Message) error
	// SkipValidation accepts responses without the deep check of Envoy's
	// constraints, for load measurements where the client's own CPU would
	// otherwise dominate. Reject still applies.
	SkipValidation bool
	// Node, if set, changes the node the first request carries before it
	// is sent, e.g. to give it Envoy's user_agent_build_version or
	// metadata (see EnvoyNode).
	Node func(*corev3.Node)
	// Logf, if set, receives a line per response. With t.Logf, close the
	// client before the test ends, e.g. with t.Cleanup(c.Close).
	Logf func(format string, args ...any)
}

// State is the configuration a Client has accepted.
type State struct {
	// Resources holds the accepted resources by type URL and name. The
	// messages are shared with the client and must not be modified.
	Resources map[string]map[string]proto.Message
	// Versions holds by type URL the version of the last accepted response:
	// version_info in SotW, system_version_info in Delta.
	Versions map[string]string
}

// Names lists the names of the accepted resources of a type, sorted.
func (s State) Names(typeURL string) []string {
	return slices.Sorted(maps.Keys(s.Resources[typeURL]))
}

// Get returns the accepted resource of type T named name, for instance
// Get[*clusterv3.Cluster](s, "backend").
func Get[T proto.Message](s State, name string) (T, bool) {
	var zero T
	typeURL := resource.APITypePrefix + string(zero.ProtoReflect().Descriptor().FullName())
	m, ok := s.Resources[typeURL][name].(T)
	return m, ok
}

// Response records one response the client received and its answer.
type Response struct {
	TypeURL string
	// Version is version_info in SotW, system_version_info in Delta.
	Version string
	Nonce   string
	// ResourceNames lists the resources in the response, sorted.
	ResourceNames []string
	// RemovedNames lists the removed_resources of a Delta response.
	RemovedNames []string
	// Acked is whether the client ACKed the response; if not, Err is the
	// error_detail message of its NACK.
	Acked bool
	Err   string
}

func (r Response) String() string {
	verdict := "ACK"
	if !r.Acked {
		verdict = "NACK: " + r.Err
	}
	s := fmt.Sprintf("%s version %q nonce %q %v", shortType(r.TypeURL), r.Version, r.Nonce, r.ResourceNames)
	if len(r.RemovedNames) > 0 {
		s += fmt.Sprintf(" removed %v", r.RemovedNames)
	}
	return s + " " + verdict
}

// Client is one simulated Envoy with one ADS stream. Its methods are safe
// for concurrent use.
type Client struct {
	opts      Options
	conn      *grpc.ClientConn
	wire      wire
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	done      chan struct{}
	closeOnce sync.Once
	// wake tells the sender goroutine that outbox is not empty.
	wake chan struct{}

	mu      sync.Mutex
	types   map[string]*typeState
	history []Response
	err     error
	// changed is closed and replaced whenever the state, history or err
	// change, to wake the waiters.
	changed chan struct{}
	// outbox holds the requests not yet sent, in order. Requests are built
	// under mu, when the state they describe is current, and sent by a
	// goroutine of their own so that a blocked Send never holds up Recv.
	outbox []func() error
}

// typeState is the client's side of the subscription to one type.
type typeState struct {
	// wildcard types (clusters, listeners) are subscribed without names.
	wildcard bool
	// derived are the names referenced by the accepted clusters and
	// listeners, extra those added with Subscribe, and wanted their union
	// as last told to the server.
	derived, extra, wanted map[string]bool
	// version is the last accepted version, nonce the last one received.
	version, nonce string
	resources      map[string]proto.Message
}

// New dials addr and opens an ADS stream that lives until ctx ends or
// Close. The stream's requests carry a node with opts.NodeID and
// opts.Gateway on the first request only, which is all the xDS protocol
// guarantees a server.
func New(ctx context.Context, addr string, opts Options) (*Client, error) {
	conn, err := grpc.NewClient(addr, opts.DialOptions...)
	if err != nil {
		return nil, fmt.Errorf("envoysim: dial %s: %w", addr, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	node := nodeOnce{node: &corev3.Node{Id: opts.NodeID, Cluster: opts.Gateway}}
	if opts.Node != nil {
		opts.Node(node.node)
	}
	ads := discovery.NewAggregatedDiscoveryServiceClient(conn)
	var w wire
	if opts.Delta {
		s, err := ads.DeltaAggregatedResources(ctx)
		if err != nil {
			cancel()
			conn.Close()
			return nil, fmt.Errorf("envoysim: open delta ADS stream: %w", err)
		}
		w = &deltaWire{stream: s, nodeOnce: node}
	} else {
		s, err := ads.StreamAggregatedResources(ctx)
		if err != nil {
			cancel()
			conn.Close()
			return nil, fmt.Errorf("envoysim: open ADS stream: %w", err)
		}
		w = &sotwWire{stream: s, nodeOnce: node}
	}
	c := &Client{
		opts:    opts,
		conn:    conn,
		wire:    w,
		cancel:  cancel,
		done:    make(chan struct{}),
		wake:    make(chan struct{}, 1),
		types:   map[string]*typeState{},
		changed: make(chan struct{}),
	}
	c.mu.Lock()
	for _, typeURL := range []string{resource.ClusterType, resource.ListenerType} {
		t := c.typeState(typeURL)
		t.wildcard = true
		c.enqueue(c.wire.update(typeURL, t, nil))
	}
	c.mu.Unlock()
	c.wg.Add(2)
	go c.recvLoop()
	go c.sendLoop(ctx)
	return c, nil
}

// Close ends the stream and the connection and waits for the client's
// goroutines, so that Logf is not called after Close returns.
func (c *Client) Close() {
	c.closeOnce.Do(func() {
		c.cancel()
		c.wg.Wait()
		c.conn.Close()
	})
}

// Done is closed when the stream has ended.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err is the error that ended the stream: nil while it runs, the gRPC
// status the server ended it with (io.EOF for OK), or a Canceled status
// after Close or the end of New's context.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// State returns a copy of the accepted state.
func (c *Client) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := State{Resources: map[string]map[string]proto.Message{}, Versions: map[string]string{}}
	for typeURL, t := range c.types {
		s.Resources[typeURL] = maps.Clone(t.resources)
		s.Versions[typeURL] = t.version
	}
	return s
}

// History returns every response received so far, oldest first.
func (c *Client) History() []Response {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.history)
}

// Responses counts the responses received for a type.
func (c *Client) Responses(typeURL string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, r := range c.history {
		if r.TypeURL == typeURL {
			n++
		}
	}
	return n
}

// WaitFor blocks until cond holds for the accepted state and returns that
// state. It fails when ctx ends or the stream ends first.
func (c *Client) WaitFor(ctx context.Context, cond func(State) bool) (State, error) {
	var s State
	err := c.await(ctx, func() bool {
		s = c.State()
		return cond(s)
	})
	if err != nil {
		return s, fmt.Errorf("envoysim: waiting for a state (versions %v): %w", s.Versions, err)
	}
	return s, nil
}

// WaitForResponse blocks until a response received since the start of the
// stream matches, and returns the first that does. match sees each
// response once, in order, so it may count. It fails when ctx ends or the
// stream ends first.
func (c *Client) WaitForResponse(ctx context.Context, match func(Response) bool) (Response, error) {
	var (
		found Response
		seen  int
	)
	err := c.await(ctx, func() bool {
		c.mu.Lock()
		// Recorded responses never change, so the slice can be read unlocked.
		fresh := c.history[seen:]
		c.mu.Unlock()
		seen += len(fresh)
		for _, r := range fresh {
			if match(r) {
				found = r
				return true
			}
		}
		return false
	})
	if err != nil {
		return found, fmt.Errorf("envoysim: waiting for a response (%d received): %w", seen, err)
	}
	return found, nil
}

// await calls check until it reports true, after each change of the
// client, until ctx or the stream ends.
func (c *Client) await(ctx context.Context, check func() bool) error {
	for {
		// Take changed before checking, so a change during check is not
		// missed.
		c.mu.Lock()
		changed, ended := c.changed, c.err
		c.mu.Unlock()
		if check() {
			return nil
		}
		if ended != nil {
			return fmt.Errorf("stream ended: %w", ended)
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// Subscribe adds names to the subscription to typeURL on top of the ones
// the client follows from clusters and listeners, as Envoy does for
// resources referenced from configuration this client does not interpret.
// Clusters and listeners are subscribed as wildcard; names for them are
// ignored.
func (c *Client) Subscribe(typeURL string, names ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.typeState(typeURL)
	if t.wildcard {
		return
	}
	for _, name := range names {
		t.extra[name] = true
	}
	c.resubscribe(typeURL, t)
}

func (c *Client) typeState(typeURL string) *typeState {
	t, ok := c.types[typeURL]
	if !ok {
		t = &typeState{extra: map[string]bool{}, resources: map[string]proto.Message{}}
		c.types[typeURL] = t
	}
	return t
}

// resubscribe tells the server when the names wanted of a type changed,
// and forgets resources no longer wanted as Envoy does. c.mu must be held.
func (c *Client) resubscribe(typeURL string, t *typeState) {
	wanted := map[string]bool{}
	maps.Copy(wanted, t.derived)
	maps.Copy(wanted, t.extra)
	if maps.Equal(wanted, t.wanted) {
		return
	}
	previous := t.wanted
	t.wanted = wanted
	maps.DeleteFunc(t.resources, func(name string, _ proto.Message) bool { return !wanted[name] })
	c.enqueue(c.wire.update(typeURL, t, previous))
}

// enqueue queues a request for the sender goroutine. c.mu must be held.
func (c *Client) enqueue(send func() error) {
	c.outbox = append(c.outbox, send)
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// notify wakes the waiters. c.mu must be held.
func (c *Client) notify() {
	close(c.changed)
	c.changed = make(chan struct{})
}

func (c *Client) sendLoop(ctx context.Context) {
	defer c.wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.wake:
		}
		c.mu.Lock()
		batch := c.outbox
		c.outbox = nil
		c.mu.Unlock()
		for _, send := range batch {
			// Send fails only once the stream is broken; Recv reports why.
			if err := send(); err != nil {
				return
			}
		}
	}
}

func (c *Client) recvLoop() {
	defer c.wg.Done()
	for {
		r, err := c.wire.recv()
		if err != nil {
			c.mu.Lock()
			c.err = err
			c.notify()
			c.mu.Unlock()
			c.cancel() // stops the sender
			close(c.done)
			return
		}
		c.handle(r)
	}
}

// handle validates a response, applies it if it is valid and answers it.
func (c *Client) handle(r *response) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.typeState(r.typeURL)
	t.nonce = r.nonce
	msgs, names, err := c.unpack(r)
	rec := Response{
		TypeURL:       r.typeURL,
		Version:       r.version,
		Nonce:         r.nonce,
		ResourceNames: names,
		RemovedNames:  r.removed,
		Acked:         err == nil,
	}
	if err != nil {
		// Like Envoy, keep what was accepted before and report the last
		// accepted version in the NACK.
		rec.Err = err.Error()
	} else {
		c.apply(t, r, msgs)
		t.version = r.version
	}
	c.history = append(c.history, rec)
	if c.opts.Logf != nil {
		c.opts.Logf("envoysim %s: %v", c.opts.NodeID, rec)
	}
	c.enqueue(c.wire.reply(r.typeURL, t, err))
	if err == nil && t.wildcard {
		c.follow()
	}
	c.notify()
}

// unpack decodes and validates the resources of a response, keyed by name,
// and lists their names.
func (c *Client) unpack(r *response) (map[string]proto.Message, []string, error) {
	msgs := make(map[string]proto.Message, len(r.resources))
	names := make([]string, 0, len(r.resources))
	var errs []error
	for _, raw := range r.resources {
		name := raw.name
		if got := raw.body.GetTypeUrl(); got != r.typeURL {
			names = append(names, name)
			errs = append(errs, fmt.Errorf("resource %q: type %s in a %s response", name, got, r.typeURL))
			continue
		}
		m, err := raw.body.UnmarshalNew()
		if err != nil {
			names = append(names, name)
			errs = append(errs, fmt.Errorf("resource %q: %w", name, err))
			continue
		}
		if name == "" {
			// SotW responses carry names only inside the resources.
			name = resourceName(m)
		}
		names = append(names, name)
		if _, dup := msgs[name]; dup {
			errs = append(errs, fmt.Errorf("duplicate resource %q", name))
			continue
		}
		msgs[name] = m
		if err := c.validate(r.typeURL, m); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: %w", shortType(r.typeURL), name, err))
		}
	}
	slices.Sort(names)
	return msgs, names, errors.Join(errs...)
}

func (c *Client) validate(typeURL string, m proto.Message) error {
	if !c.opts.SkipValidation {
		if err := translate.ValidateDeep(m); err != nil {
			return err
		}
	}
	if c.opts.Reject != nil {
		return c.opts.Reject(typeURL, m)
	}
	return nil
}

// apply merges an accepted response into the state.
func (c *Client) apply(t *typeState, r *response, msgs map[string]proto.Message) {
	if t.wildcard && !c.opts.Delta {
		// A SotW response for clusters or listeners is their full state:
		// what it lacks was removed.
		t.resources = msgs
		return
	}
	for name, m := range msgs {
		// Envoy ignores resources it did not ask for.
		if t.wildcard || t.wanted[name] {
			t.resources[name] = m
		}
	}
	for _, name := range r.removed {
		delete(t.resources, name)
	}
}

// follow updates the subscriptions to what the accepted clusters and
// listeners reference. c.mu must be held.
func (c *Client) follow() {
	refs := references(c.types[resource.ClusterType].resources, c.types[resource.ListenerType].resources)
	for _, typeURL := range followedTypes {
		t := c.typeState(typeURL)
		t.derived = refs[typeURL]
		c.resubscribe(typeURL, t)
	}
}

// resourceName is the name of a resource as the xDS protocol defines it.
func resourceName(m proto.Message) string {
	switch r := m.(type) {
	case *endpointv3.ClusterLoadAssignment:
		return r.GetClusterName()
	case interface{ GetName() string }:
		return r.GetName()
	}
	return ""
}

// shortType turns a type URL into its message name, for messages.
func shortType(typeURL string) string {
	return typeURL[strings.LastIndex(typeURL, ".")+1:]
}
