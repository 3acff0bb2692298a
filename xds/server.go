// Package xds serves tollgate's translated configuration to Envoys over ADS
// (State of the World and Delta) with go-control-plane: one snapshot per
// gateway shared by all of its Envoys, content-hash versions, per-node
// ACK/NACK tracking, and no resend loop on NACK.
package xds

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	clusterservice "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	endpointservice "github.com/envoyproxy/go-control-plane/envoy/service/endpoint/v3"
	listenerservice "github.com/envoyproxy/go-control-plane/envoy/service/listener/v3"
	routeservice "github.com/envoyproxy/go-control-plane/envoy/service/route/v3"
	secretservice "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/sotw/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/proto"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/translate"
)

// gatewayHash keys the snapshot cache by gateway: every Envoy whose
// node.cluster names a gateway shares that gateway's snapshot.
type gatewayHash struct{}

func (gatewayHash) ID(node *corev3.Node) string { return nodeKey(node) }

// Options configure a Server. The zero value serves plaintext xDS, on
// loopback addresses only, to any client, and refuses to publish secrets.
type Options struct {
	// Log receives connections, refusals and NACKs; nil discards them.
	Log *slog.Logger
	// TLS, if set, is the server's TLS configuration (see NewServerTLS,
	// and SPIFFETLS.Config for an identity from the Workload API).
	// Every stream must then come with a verified client certificate
	// whose identity Authorizer binds to the gateway the node asks for.
	TLS *tls.Config
	// Authorizer binds client certificate identities to gateways. With
	// TLS and no Authorizer, every stream is refused.
	Authorizer *Authorizer
	// AllowPlaintextSecrets lets a server without TLS publish SDS secrets,
	// which any local process could then fetch.
	AllowPlaintextSecrets bool
	// Metrics receives the server's metrics; nil keeps them on a registry
	// nobody scrapes.
	Metrics *Metrics
}

// Server is tollgate's xDS server.
type Server struct {
	log     *slog.Logger
	opts    Options
	cache   cachev3.SnapshotCache
	xds     serverv3.Server
	tracker *tracker
	now     func() time.Time
	metrics *Metrics
	conv    convergence

	authMu sync.Mutex
	auth   map[string]*streamAuth // by stream, with TLS only

	publishMu sync.Mutex
	validated map[digest]bool // digests that passed ValidateDeep last time; under publishMu
	// checkedCfg and checkedOut are the last Check's input and output,
	// for the Apply that follows it; under publishMu.
	checkedCfg *model.Config
	checkedOut *translate.Output
	// lastCfg and lastOut are the configuration last applied and its
	// translation, whose unchanged gateways the next translation reuses;
	// lastDigests the digests of the resources last published, by
	// message (reused resources are the same messages). Under publishMu.
	lastCfg     *model.Config
	lastOut     *translate.Output
	lastDigests map[proto.Message]digest
	// lastEncoded are the pre-encoded forms (wire.go) of the resources
	// last published, by digest; under publishMu.
	lastEncoded map[digest]types.Resource
	// lastSnaps are the snapshots last handed to the cache, by gateway,
	// with the resources they were made of; a gateway whose resources are
	// the very same messages next time keeps its snapshot, and the cache
	// is not handed it again. Under publishMu.
	lastSnaps map[string]publishedGateway
	mu        sync.RWMutex
	gateways  map[string]bool // keys with a snapshot from the current config
	served    map[string]bool // every key ever given a snapshot
	// requirements of each current gateway's configuration, and the
	// Gateway object of each key (for conditions); under mu.
	requirements   map[string][]translate.Requirement
	gatewayObjects map[string]string
	// cfg is the configuration last served, and names its resources per
	// gateway and short type: what a NACK is mapped back with (nack.go).
	cfg   *model.Config
	names map[string]map[string][]string
	// usageOf caches, for usageCfg, which gateways and types each object
	// shapes (programmed.go).
	usageMu  sync.Mutex
	usageCfg *model.Config
	usageOf  objectTypes

	versionLogMu  sync.Mutex
	versionLogged map[string]bool // node|gateway|problem already logged
}

// NewServer returns a server with no configuration; Apply gives it one.
func NewServer(ctx context.Context, opts Options) *Server {
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		log:      log,
		opts:     opts,
		tracker:  newTracker(),
		auth:     map[string]*streamAuth{},
		now:      time.Now,
		gateways: map[string]bool{},
		served:   map[string]bool{},

		versionLogged: map[string]bool{},
		metrics:       opts.Metrics,
		conv:          convergence{waits: map[string]*convergenceWait{}},
	}
	if s.metrics == nil {
		s.metrics = NewMetrics()
	}
	s.metrics.attach(s)
	s.cache = cachev3.NewSnapshotCache(true, gatewayHash{}, cacheLogger{log})
	s.xds = serverv3.NewServer(ctx, s.cache, s.callbacks(), sotw.WithOrderedADS())
	return s
}

// Apply translates cfg, checks every resource against Envoy's constraints
// and publishes one snapshot per gateway. On error nothing is published and
// the previous configuration keeps being served.
func (s *Server) Apply(cfg *model.Config) error {
	out, err := s.translated(cfg)
	if err != nil {
		s.metrics.RefusedChange(RefusedInvalidPolicy)
		return fmt.Errorf("translate: %w", err)
	}
	objects := make(map[string]string, len(cfg.Gateways))
	for _, g := range cfg.Gateways {
		objects[model.GatewayKey(g.Ref)] = g.Ref.String()
	}
	s.mu.Lock()
	s.gatewayObjects = objects
	s.mu.Unlock()
	err = s.Publish(out)
	if err != nil {
		s.metrics.RefusedChange(refusalReason(err))
	} else {
		s.mu.Lock()
		s.cfg = cfg
		s.mu.Unlock()
		s.publishMu.Lock()
		s.lastCfg, s.lastOut = cfg, out
		s.publishMu.Unlock()
	}
	// A refusal of Envoy's constraints is placed on the policies.
	return translate.Locate(cfg, err)
}

// Check translates cfg and checks the result as Apply would, without
// publishing anything: dry runs and diffs get the refusals a real change
// would, and a write through the API is checked before it is committed, so
// that what is stored is what can be served (a crash between the commit
// and the publication then leaves a configuration tollgate starts with).
// The resources that pass are remembered as validated, and the output is
// kept for the Apply of the same cfg that normally follows, so that a
// checked write is not translated and validated twice.
func (s *Server) Check(cfg *model.Config) error {
	out, err := s.translate(cfg)
	if err != nil {
		return fmt.Errorf("translate: %w", err)
	}
	if err := s.checkPlaintextSecrets(out); err != nil {
		return err
	}
	s.publishMu.Lock()
	defer s.publishMu.Unlock()
	_, passed, err := s.validate(out)
	if err != nil {
		return translate.Locate(cfg, &errEnvoyWouldRefuse{fmt.Errorf("generated configuration would be rejected by Envoy (this is a tollgate bug; please report it): %w", err)})
	}
	if s.validated == nil {
		s.validated = map[digest]bool{}
	}
	for d := range passed {
		s.validated[d] = true
	}
	s.checkedCfg, s.checkedOut = cfg, out
	return nil
}

// translated is the translation of cfg: the one Check kept for it, or a
// new one.
func (s *Server) translated(cfg *model.Config) (*translate.Output, error) {
	s.publishMu.Lock()
	out := s.checkedOut
	hit := s.checkedCfg == cfg
	s.checkedCfg, s.checkedOut = nil, nil
	s.publishMu.Unlock()
	if hit {
		return out, nil
	}
	start := time.Now()
	out, err := s.translate(cfg)
	s.metrics.translation.Observe(time.Since(start).Seconds())
	return out, err
}

// translate translates cfg, reusing the resources of the gateways that
// did not change since the configuration last applied
// (translate.TranslateIncremental).
func (s *Server) translate(cfg *model.Config) (*translate.Output, error) {
	s.publishMu.Lock()
	prevCfg, prev := s.lastCfg, s.lastOut
	s.publishMu.Unlock()
	return translate.TranslateIncremental(cfg, prevCfg, prev)
}

// Publish serves out. A gateway that disappeared from the policies gets an
// empty snapshot, so that its Envoys drop what they were told before
// instead of serving it forever.
//
// Without TLS, Publish refuses an output that carries confidential
// secrets (API keys, private keys; not trust bundles) unless
// Options.AllowPlaintextSecrets is set.
func (s *Server) Publish(out *translate.Output) error {
	if err := s.checkPlaintextSecrets(out); err != nil {
		return err
	}
	// publishMu serialises publications; mu only guards the maps, and is
	// never held while the cache delivers responses: a Delta stream's
	// callbacks read the maps while the cache waits for that stream.
	s.publishMu.Lock()
	defer s.publishMu.Unlock()
	start := time.Now()
	digests, validated, err := s.validate(out)
	s.metrics.validation.Observe(time.Since(start).Seconds())
	if err != nil {
		return &errEnvoyWouldRefuse{fmt.Errorf("generated configuration would be rejected by Envoy (this is a tollgate bug; please report it): %w", err)}
	}
	snaps := make(map[string]*cachev3.Snapshot, len(out.Gateways))
	digestFn := func(m proto.Message) (digest, error) {
		if d, ok := digests[m]; ok {
			return d, nil
		}
		return digestOf(m)
	}
	encoded := make(map[digest]types.Resource, len(s.lastEncoded))
	published := make(map[string]publishedGateway, len(out.Gateways))
	kept := map[string]bool{} // keys whose snapshot the cache already holds
	for _, g := range out.Gateways {
		if p, ok := s.lastSnaps[g.Key]; ok && sameResources(p.res, g) && carryEncoded(g, digestFn, s.lastEncoded, encoded) {
			// An unchanged gateway (translate.TranslateIncremental reused
			// its messages): same snapshot, same versions, nothing to
			// hand the cache, whose watches of that gateway's Envoys
			// would all find nothing new.
			p.res = g
			published[g.Key] = p
			snaps[g.Key] = p.snap
			kept[g.Key] = true
			if p.rateLimit != nil {
				snaps[RateLimitSnapshotKey(g.Key)] = p.rateLimit
				kept[RateLimitSnapshotKey(g.Key)] = true
			}
			continue
		}
		snap, err := snapshot(g, digestFn)
		if err != nil {
			return err
		}
		if err := preEncoded(snap, digestFn, s.lastEncoded, encoded); err != nil {
			return err
		}
		snaps[g.Key] = snap
		p := publishedGateway{res: g, snap: snap}
		if g.RateLimitConfig != nil {
			rs, err := rateLimitSnapshot(g, digestOf)
			if err != nil {
				return err
			}
			snaps[RateLimitSnapshotKey(g.Key)] = rs
			p.rateLimit = rs
		}
		published[g.Key] = p
	}
	s.mu.RLock()
	for key := range s.served {
		if _, ok := snaps[key]; ok {
			continue
		}
		empty, err := Snapshot(&translate.GatewayResources{Key: key})
		if strings.HasPrefix(key, rateLimitPrefix) {
			empty, err = rateLimitSnapshot(&translate.GatewayResources{Key: key}, digestOf)
		}
		if err != nil {
			s.mu.RUnlock()
			return err
		}
		snaps[key] = empty
		if s.gateways[key] {
			s.log.Warn("gateway removed from policies; its Envoys now get an empty configuration", "gateway", key)
		}
	}
	s.mu.RUnlock()
	current := make(map[string]bool, len(out.Gateways))
	requirements := make(map[string][]translate.Requirement, len(out.Gateways))
	for _, g := range out.Gateways {
		current[g.Key] = true
		requirements[g.Key] = g.Requirements
		if g.RateLimitConfig != nil {
			current[RateLimitSnapshotKey(g.Key)] = true
		}
	}
	// Known gateways are updated first, so that an Envoy connecting while
	// its gateway appears is logged as known.
	names := make(map[string]map[string][]string, len(out.Gateways))
	for _, g := range out.Gateways {
		names[g.Key] = resourceNames(g)
	}
	s.mu.Lock()
	s.gateways, s.requirements, s.names = current, requirements, names
	for key := range snaps {
		s.served[key] = true
	}
	s.mu.Unlock()
	keys := make([]string, 0, len(snaps))
	for key := range snaps {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	for _, key := range keys {
		if kept[key] {
			continue
		}
		s.beginConvergence(key, snaps[key])
		if err := s.cache.SetSnapshot(context.Background(), key, snaps[key]); err != nil {
			// Some gateways now hold this publication's snapshot, others
			// the last one's: hand every one over again next time.
			s.lastSnaps = nil
			return fmt.Errorf("gateway %s: %w", key, err)
		}
	}
	s.validated, s.lastDigests, s.lastEncoded, s.lastSnaps = validated, digests, encoded, published
	s.checkVersions()
	return nil
}

// validate checks every resource of out against Envoy's constraints
// (translate.ValidateDeep). Resources whose exact content passed in the
// previous publication are not checked again: most changes touch a few
// resources, and the deep check is the larger part of a publication's cost.
// It returns every resource's digest, and the digests that passed, for the
// next round.
func (s *Server) validate(out *translate.Output) (map[proto.Message]digest, map[digest]bool, error) {
	digests := map[proto.Message]digest{}
	passed := make(map[digest]bool, len(s.validated))
	var errs []error
	for _, g := range out.Gateways {
		for _, m := range g.All() {
			d, known := s.lastDigests[m] // a resource reused from the last output
			if !known {
				var err error
				if d, err = digestOf(m); err != nil {
					return nil, nil, err
				}
			}
			digests[m] = d
			if s.validated[d] || passed[d] {
				passed[d] = true
				continue
			}
			if err := translate.ValidateDeep(m); err != nil {
				errs = append(errs, &translate.ResourceError{Gateway: g.Key, Resource: m, Err: err})
				continue
			}
			passed[d] = true
		}
		// What the rate limit service loads, checked as its loader does
		// (an invalid policy never reaches it).
		if c := g.RateLimitConfig; c != nil {
			if err := translate.ValidateRateLimitConfig(c); err != nil {
				errs = append(errs, &translate.ResourceError{Gateway: g.Key, Resource: c, Err: err})
			}
		}
	}
	if len(errs) > 0 {
		return nil, nil, errors.Join(errs...)
	}
	return digests, passed, nil
}

// checkPlaintextSecrets refuses to serve secrets to unauthenticated
// clients.
func (s *Server) checkPlaintextSecrets(out *translate.Output) error {
	if s.opts.TLS != nil || s.opts.AllowPlaintextSecrets {
		return nil
	}
	var errs []error
	for _, g := range out.Gateways {
		if !g.CarriesSecrets() {
			continue
		}
		var what, names []string
		for _, sec := range g.Secrets {
			if sensitive(sec) {
				names = append(names, sec.GetName())
			}
		}
		if len(names) > 0 {
			what = append(what, fmt.Sprintf("%d secret(s) %q", len(names), names))
		}
		if g.InlineSecrets {
			what = append(what, "credentials inline in its clusters (static AWS keys)")
		}
		if len(what) > 0 {
			errs = append(errs, fmt.Errorf("gateway %s: %s", g.Key, strings.Join(what, " and ")))
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w, where any process that reaches the xDS port could fetch them: "+
		"serve xDS over mutual TLS (--xds-tls-cert, --xds-tls-key, --xds-client-ca and xds-identities), "+
		"or, if only trusted processes can reach the loopback port, pass --allow-plaintext-secrets:\n%w", ErrPlaintextSecrets, errors.Join(errs...))
}

// ErrPlaintextSecrets is the error of Publish when the policies are valid
// but carry secrets that plaintext xDS must not serve.
var ErrPlaintextSecrets = errors.New("refusing to serve secrets over plaintext xDS")

// sensitive reports whether a secret holds confidential material: an API
// key or other generic secret, a private key, session ticket keys. A
// validation context (trusted CAs, CRLs, pins, SANs) is public; refusing
// it would push operators towards --allow-plaintext-secrets for nothing.
func sensitive(sec *tlsv3.Secret) bool {
	_, public := sec.GetType().(*tlsv3.Secret_ValidationContext)
	return !public
}

// Versions returns the versions a gateway is served, per short type name.
func (s *Server) Versions(gateway string) map[string]string {
	snap, err := s.cache.GetSnapshot(gateway)
	if err != nil {
		return nil
	}
	out := map[string]string{}
	types := typeOrder
	if strings.HasPrefix(gateway, rateLimitPrefix) {
		types = []resourcev3.Type{resourcev3.RateLimitConfigType}
	}
	for _, typ := range types {
		out[shortType(typ)] = snap.GetVersion(typ)
	}
	return out
}

// Status reports every connected node.
func (s *Server) Status() Status {
	st := s.tracker.snapshot()
	s.mu.RLock()
	defer s.mu.RUnlock()
	for i := range st.Nodes {
		st.Nodes[i].KnownGateway = s.gateways[st.Nodes[i].Gateway]
	}
	s.nodeProblemsLocked(st.Nodes)
	return st
}

// AdminHandler serves the xDS status as JSON: GET /status/nodes lists every
// connected Envoy with its gateway, the versions it was sent and ACKed per
// type, its last NACK, its Envoy version and what that version is too old
// for.
func (s *Server) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status/nodes", func(w http.ResponseWriter, _ *http.Request) {
		WriteJSON(w, s.Status())
	})
	mux.HandleFunc("GET /status/gateways", func(w http.ResponseWriter, _ *http.Request) {
		s.mu.RLock()
		keys := make([]string, 0, len(s.gateways))
		for k := range s.gateways {
			keys = append(keys, k)
		}
		s.mu.RUnlock()
		sort.Strings(keys)
		out := make(map[string]map[string]string, len(keys))
		for _, k := range keys {
			out[k] = s.Versions(k)
		}
		WriteJSON(w, out)
	})
	return mux
}

// WriteJSON writes v as indented JSON.
func WriteJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func (s *Server) knownGateway(key string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.gateways[key]
}

// Register adds the ADS service (and the per-type services, for Envoys
// configured without ADS) to g.
func (s *Server) Register(g *grpc.Server) {
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(g, s.xds)
	clusterservice.RegisterClusterDiscoveryServiceServer(g, s.xds)
	endpointservice.RegisterEndpointDiscoveryServiceServer(g, s.xds)
	listenerservice.RegisterListenerDiscoveryServiceServer(g, s.xds)
	routeservice.RegisterRouteDiscoveryServiceServer(g, s.xds)
	secretservice.RegisterSecretDiscoveryServiceServer(g, s.xds)
}

// GRPCServerOptions are the options tollgate's gRPC server uses: keepalives
// that notice a dead Envoy within a minute, and room for many streams.
func GRPCServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxConcurrentStreams(1 << 20),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	}
}

// Serve serves xDS on lis until ctx ends, then stops gracefully (bounded,
// since Envoy streams never end on their own). Without Options.TLS, lis
// must be on a loopback address.
func (s *Server) Serve(ctx context.Context, lis net.Listener, opts ...grpc.ServerOption) error {
	opts = append(GRPCServerOptions(), opts...)
	if s.opts.TLS != nil {
		opts = append(opts, grpc.Creds(handshakeLogger{credentials.NewTLS(s.opts.TLS), s.log}))
	} else if err := CheckPlaintextAddr(lis.Addr().String()); err != nil {
		return err
	}
	g := grpc.NewServer(opts...)
	s.Register(g)
	errc := make(chan error, 1)
	go func() { errc <- g.Serve(lis) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	stopped := make(chan struct{})
	go func() { g.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		g.Stop()
	}
	if err := <-errc; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	return nil
}

// cacheLogger routes go-control-plane's logging to slog at debug level,
// except for errors.
type cacheLogger struct{ log *slog.Logger }

func (l cacheLogger) Debugf(format string, args ...any) {
	l.log.Debug(fmt.Sprintf(format, args...), "component", "xds-cache")
}
func (l cacheLogger) Infof(format string, args ...any) {
	l.log.Debug(fmt.Sprintf(format, args...), "component", "xds-cache")
}
func (l cacheLogger) Warnf(format string, args ...any) {
	l.log.Warn(fmt.Sprintf(format, args...), "component", "xds-cache")
}
func (l cacheLogger) Errorf(format string, args ...any) {
	l.log.Error(fmt.Sprintf(format, args...), "component", "xds-cache")
}

// beginConvergence starts measuring convergence on snap if it changes any
// version the gateway is served.
func (s *Server) beginConvergence(key string, snap *cachev3.Snapshot) {
	versions := make(map[string]string, len(typeOrder))
	for _, typ := range typeOrder {
		versions[shortType(typ)] = snap.GetVersion(typ)
	}
	if maps.Equal(versions, s.Versions(key)) {
		return
	}
	s.startConvergence(key, versions)
}
