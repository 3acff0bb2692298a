package store

import (
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tollgate-dev/tollgate/model"
)

// Defaults of EtcdOptions.
const (
	// DefaultEtcdPrefix is the key prefix of the API store in etcd.
	DefaultEtcdPrefix = "/tollgate/"
	// DefaultEtcdPort is the port of an etcd:// host given without one.
	DefaultEtcdPort = "2379"
	// DefaultEtcdTimeout bounds connecting (EtcdOptions.DialTimeout) and
	// every request (EtcdOptions.RequestTimeout).
	DefaultEtcdTimeout = 5 * time.Second
)

// Watch reconnects after watchMinDelay, doubled on every failure in a row
// up to watchMaxDelay.
const (
	watchMinDelay = 100 * time.Millisecond
	watchMaxDelay = 5 * time.Second
)

// revDigits is the width of revisions in history and audit keys: zero
// padded, so that etcd's byte order of keys is the order of revisions.
const revDigits = 20

// EtcdOptions says where the API store lives in etcd and how to reach it.
type EtcdOptions struct {
	// Endpoints are the etcd members' client addresses, host:port (or
	// http:// or https:// URLs).
	Endpoints []string
	// Prefix is prepended to every key; several tollgate deployments can
	// share one etcd with distinct prefixes. Default DefaultEtcdPrefix; a
	// missing final "/" is added.
	Prefix string
	// DialTimeout bounds OpenEtcd's first contact with etcd. Default
	// DefaultEtcdTimeout.
	DialTimeout time.Duration
	// RequestTimeout bounds every call, on top of the caller's context.
	// Default DefaultEtcdTimeout.
	RequestTimeout time.Duration
	// UseTLS connects with TLS (the etcds:// scheme). If TLS is nil,
	// the system's roots verify etcd's certificate.
	UseTLS bool
	// TLS configures the connection (CA, client certificate); setting it
	// implies UseTLS.
	TLS *tls.Config
	// Username and Password authenticate to etcd when its auth is enabled;
	// both or neither.
	Username string
	Password string
}

// EtcdBackend keeps API objects in etcd, for several tollgate replicas that
// share one store. Keys, under the prefix:
//
//	revision                                 store revision, decimal
//	objects/<kind>/<ns>/<name>               Record (JSON)
//	history/<kind>/<ns>/<name>/<rev>         Record (JSON), Deleted for a delete
//	audit/<rev>                              AuditEntry (JSON)
//
// with <rev> zero padded to 20 digits. The store revision is tollgate's own
// counter, kept in the revision key, not etcd's revision (which other users
// of the same etcd move too); every Commit is one etcd transaction that
// checks it and advances it by one.
type EtcdBackend struct {
	cli       *clientv3.Client
	prefix    string
	endpoints string // for error messages
	timeout   time.Duration
}

// ParseEtcdURL parses the --store flag's etcd form,
// etcd://host1:2379,host2:2379/prefix, into options: the hosts become
// Endpoints (port 2379 when left out), the path the Prefix (default
// DefaultEtcdPrefix). etcds:// sets UseTLS; the certificates come from
// other flags. user:password@ before the hosts sets Username and Password,
// though a password on a command line is visible to every local user.
func ParseEtcdURL(s string) (EtcdOptions, error) {
	bad := func(why string) (EtcdOptions, error) {
		return EtcdOptions{}, fmt.Errorf("--store %q: %s: want etcd://host:2379[,host:2379...][/prefix], or etcds:// for TLS", s, why)
	}
	var opts EtcdOptions
	scheme, rest, ok := strings.Cut(s, "://")
	switch {
	case !ok:
		return bad("no scheme")
	case strings.EqualFold(scheme, "etcd"):
	case strings.EqualFold(scheme, "etcds"):
		opts.UseTLS = true
	default:
		return bad("unknown scheme " + scheme)
	}
	if strings.ContainsAny(rest, "?#") {
		return bad("query and fragment are not allowed")
	}
	hosts, path, _ := strings.Cut(rest, "/")
	if at := strings.LastIndex(hosts, "@"); at >= 0 {
		user, pass, hasPass := strings.Cut(hosts[:at], ":")
		var err error
		if opts.Username, err = url.PathUnescape(user); err != nil || opts.Username == "" {
			return bad("bad user name")
		}
		if opts.Password, err = url.PathUnescape(pass); err != nil || !hasPass {
			return bad("user " + opts.Username + " has no password")
		}
		hosts = hosts[at+1:]
	}
	for h := range strings.SplitSeq(hosts, ",") {
		h = strings.TrimSpace(h)
		if h == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(h); err != nil {
			h = net.JoinHostPort(strings.Trim(h, "[]"), DefaultEtcdPort)
		}
		host, port, err := net.SplitHostPort(h)
		if err != nil || host == "" {
			return bad(fmt.Sprintf("bad host %q", h))
		}
		if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
			return bad(fmt.Sprintf("bad port in %q", h))
		}
		opts.Endpoints = append(opts.Endpoints, h)
	}
	if len(opts.Endpoints) == 0 {
		return bad("no etcd host")
	}
	if path = strings.Trim(path, "/"); path != "" {
		opts.Prefix = "/" + path + "/"
	} else {
		opts.Prefix = DefaultEtcdPrefix
	}
	return opts, nil
}

// OpenEtcd connects to etcd and checks, within opts.DialTimeout, that it
// answers and that the store's revision key is readable.
func OpenEtcd(ctx context.Context, opts EtcdOptions) (*EtcdBackend, error) {
	if len(opts.Endpoints) == 0 {
		return nil, errors.New("API store: no etcd endpoints: give --store etcd://host:2379")
	}
	if (opts.Username == "") != (opts.Password == "") {
		return nil, errors.New("API store: etcd needs both a user name and a password, or neither")
	}
	b := &EtcdBackend{
		prefix:    cmp.Or(opts.Prefix, DefaultEtcdPrefix),
		endpoints: strings.Join(opts.Endpoints, ","),
		timeout:   cmp.Or(opts.RequestTimeout, DefaultEtcdTimeout),
	}
	if !strings.HasSuffix(b.prefix, "/") {
		b.prefix += "/"
	}
	dial := cmp.Or(opts.DialTimeout, DefaultEtcdTimeout)
	tlsConfig := opts.TLS
	if tlsConfig == nil && opts.UseTLS {
		tlsConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	cfg := clientv3.Config{
		Endpoints:   opts.Endpoints,
		DialTimeout: dial,
		TLS:         tlsConfig,
		Username:    opts.Username,
		Password:    opts.Password,
		// Pings find a dead connection (a member's machine gone) under an
		// idle Watch; etcd refuses pings more often than every 5 s.
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 5 * time.Second,
	}
	if os.Getenv("ETCD_CLIENT_DEBUG") == "" {
		// Our errors carry what failed; the client's own log (JSON on
		// stderr) stays off unless asked for.
		cfg.Logger = zap.NewNop()
	}
	cctx, cancel := context.WithTimeout(ctx, dial)
	defer cancel()
	cli, err := clientv3.New(cfg)
	if err != nil {
		return nil, b.fail(cctx, ctx, "connect", dial, err)
	}
	b.cli = cli
	// clientv3.New does not wait for a connection: read once, so that a
	// wrong address fails here rather than at the first API write.
	resp, err := cli.Get(cctx, b.key("revision"))
	if err != nil {
		cli.Close()
		return nil, b.fail(cctx, ctx, "connect", dial, err)
	}
	if _, err := b.parseRevision(resp.Kvs); err != nil {
		cli.Close()
		return nil, err
	}
	return b, nil
}

// key is the etcd key of name under the prefix.
func (b *EtcdBackend) key(name string) string { return b.prefix + name }

// refPath is the key path of an object: kind, namespace and name.
func refPath(ref model.Ref) string {
	return ref.Kind + "/" + ref.Namespace + "/" + ref.Name
}

// revString is rev zero padded to revDigits, for history and audit keys.
func revString(rev uint64) string {
	return fmt.Sprintf("%0*d", revDigits, rev)
}

// parseRevision reads the store revision from a Get of the revision key;
// a missing key is revision 0, a fresh store.
func (b *EtcdBackend) parseRevision(kvs []*mvccpb.KeyValue) (uint64, error) {
	if len(kvs) == 0 {
		return 0, nil
	}
	rev, err := strconv.ParseUint(string(kvs[0].Value), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("API store: etcd key %s holds %q, not a revision: is another program writing under prefix %s?", kvs[0].Key, kvs[0].Value, b.prefix)
	}
	return rev, nil
}

// call is the context of one request: ctx bounded by the request timeout.
func (b *EtcdBackend) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, b.timeout)
}

// fail turns an error of the request made with rctx (derived from the
// caller's ctx, bounded by timeout) into one that says what to check.
func (b *EtcdBackend) fail(rctx, ctx context.Context, what string, timeout time.Duration, err error) error {
	code := status.Code(err)
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("API store: etcd %s: %w", what, err)
	case errors.Is(err, context.DeadlineExceeded) || rctx.Err() != nil ||
		code == codes.DeadlineExceeded || code == codes.Unavailable:
		return fmt.Errorf("API store: etcd at %s unreachable (%s got no answer within %s): check --store, the TLS settings for etcds://, and that etcd is running: %w", b.endpoints, what, timeout, err)
	case errors.Is(err, rpctypes.ErrNoLeader), errors.Is(err, rpctypes.ErrTimeout):
		return fmt.Errorf("API store: etcd at %s has no leader or did not commit in time: check that a majority of its members are running and can reach each other: %w", b.endpoints, err)
	case errors.Is(err, rpctypes.ErrRequestTooLarge), code == codes.ResourceExhausted:
		return fmt.Errorf("API store: the change is larger than etcd at %s accepts (its --max-request-bytes, 1.5 MiB by default): %w", b.endpoints, err)
	case errors.Is(err, rpctypes.ErrAuthFailed), errors.Is(err, rpctypes.ErrPermissionDenied),
		errors.Is(err, rpctypes.ErrUserEmpty), errors.Is(err, rpctypes.ErrInvalidAuthToken),
		code == codes.Unauthenticated, code == codes.PermissionDenied:
		return fmt.Errorf("API store: etcd at %s refused %s: check the etcd user, its password and its read-write role on prefix %s: %w", b.endpoints, what, b.prefix, err)
	}
	return fmt.Errorf("API store: etcd at %s: %s: %w", b.endpoints, what, err)
}

// refused reports whether err is etcd's refusal of a request, which it
// therefore did not apply; other errors (timeouts, lost connections) leave
// that unknown.
func refused(err error) bool {
	switch status.Code(err) {
	case codes.InvalidArgument, codes.ResourceExhausted, codes.Unauthenticated, codes.PermissionDenied, codes.FailedPrecondition:
		return true
	}
	for _, e := range []error{rpctypes.ErrRequestTooLarge, rpctypes.ErrTooManyRequests, rpctypes.ErrAuthFailed, rpctypes.ErrPermissionDenied, rpctypes.ErrUserEmpty, rpctypes.ErrInvalidAuthToken, rpctypes.ErrNoLeader, rpctypes.ErrNotCapable} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// Load implements Backend: the revision key and every object are read in
// one etcd transaction, so they are consistent with each other.
func (b *EtcdBackend) Load(ctx context.Context) (Snapshot, error) {
	rctx, cancel := b.call(ctx)
	defer cancel()
	resp, err := b.cli.Txn(rctx).Then(
		clientv3.OpGet(b.key("revision")),
		clientv3.OpGet(b.key("objects/"), clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		return Snapshot{}, b.fail(rctx, ctx, "load", b.timeout, err)
	}
	var snap Snapshot
	if snap.Revision, err = b.parseRevision(resp.Responses[0].GetResponseRange().Kvs); err != nil {
		return Snapshot{}, err
	}
	for _, kv := range resp.Responses[1].GetResponseRange().Kvs {
		var r Record
		if err := json.Unmarshal(kv.Value, &r); err != nil {
			return Snapshot{}, fmt.Errorf("API store: etcd key %s: %w", kv.Key, err)
		}
		snap.Records = append(snap.Records, r)
	}
	// etcd orders keys by bytes, and "/" is not the lowest byte of a
	// name: sort by the fields themselves, as Snapshot promises.
	slices.SortFunc(snap.Records, func(x, y Record) int {
		return cmp.Or(cmp.Compare(x.Kind, y.Kind), cmp.Compare(x.Namespace, y.Namespace), cmp.Compare(x.Name, y.Name))
	})
	return snap, nil
}

// Commit implements Backend: one etcd transaction puts (or deletes) the
// object and puts its history entry, the audit entry and the next store
// revision, if the revision key still holds rev (is absent, for rev 0) and,
// for a delete, the object exists. When the transaction's compares fail, it
// reads both back to tell ErrStale from a delete of a missing object.
func (b *EtcdBackend) Commit(ctx context.Context, rev uint64, ch Change) (uint64, error) {
	next := rev + 1
	rec := ch.Record
	rec.ResourceVersion = next
	ref := rec.Ref()
	revKey := b.key("revision")
	objKey := b.key("objects/" + refPath(ref))

	var revCmp clientv3.Cmp
	if rev == 0 {
		revCmp = clientv3.Compare(clientv3.CreateRevision(revKey), "=", 0)
	} else {
		revCmp = clientv3.Compare(clientv3.Value(revKey), "=", strconv.FormatUint(rev, 10))
	}
	cmps := []clientv3.Cmp{revCmp}
	var ops []clientv3.Op
	hist := rec
	if ch.Verb == "delete" {
		cmps = append(cmps, clientv3.Compare(clientv3.Version(objKey), ">", 0))
		ops = append(ops, clientv3.OpDelete(objKey))
		hist = Record{Kind: ref.Kind, Namespace: ref.Namespace, Name: ref.Name, UID: rec.UID, ResourceVersion: next, Updated: ch.Time, Deleted: true}
	} else {
		data, err := json.Marshal(rec)
		if err != nil {
			return 0, fmt.Errorf("API store: %w", err)
		}
		ops = append(ops, clientv3.OpPut(objKey, string(data)))
	}
	histData, err := json.Marshal(hist)
	if err != nil {
		return 0, fmt.Errorf("API store: %w", err)
	}
	auditData, err := json.Marshal(auditEntry(ch, next))
	if err != nil {
		return 0, fmt.Errorf("API store: %w", err)
	}
	ops = append(ops,
		clientv3.OpPut(b.key("history/"+refPath(ref)+"/"+revString(next)), string(histData)),
		clientv3.OpPut(b.key("audit/"+revString(next)), string(auditData)),
		clientv3.OpPut(revKey, strconv.FormatUint(next, 10)),
	)

	rctx, cancel := b.call(ctx)
	defer cancel()
	resp, err := b.cli.Txn(rctx).If(cmps...).Then(ops...).Else(
		clientv3.OpGet(revKey),
		clientv3.OpGet(objKey, clientv3.WithCountOnly()),
	).Commit()
	if err != nil {
		if refused(err) {
			return 0, b.fail(rctx, ctx, "commit", b.timeout, err)
		}
		// A timeout or a lost connection does not say whether etcd
		// applied the transaction.
		return 0, fmt.Errorf("%w (the change may or may not have been committed: reload before retrying)", b.fail(rctx, ctx, "commit", b.timeout, err))
	}
	if resp.Succeeded {
		return next, nil
	}
	revGet := resp.Responses[0].GetResponseRange()
	cur, err := b.parseRevision(revGet.Kvs)
	switch {
	case err != nil:
		return 0, err
	case cur != rev || (rev == 0 && len(revGet.Kvs) > 0):
		return 0, ErrStale
	case ch.Verb == "delete" && resp.Responses[1].GetResponseRange().Count == 0:
		return 0, fmt.Errorf("API store: %s does not exist", ref)
	}
	return 0, fmt.Errorf("API store: etcd at %s refused commit at revision %d for no known reason", b.endpoints, rev)
}

// History implements Backend.
func (b *EtcdBackend) History(ctx context.Context, ref model.Ref) ([]Record, error) {
	rctx, cancel := b.call(ctx)
	defer cancel()
	prefix := b.key("history/" + refPath(ref) + "/")
	resp, err := b.cli.Get(rctx, prefix, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, b.fail(rctx, ctx, "history", b.timeout, err)
	}
	var out []Record
	for _, kv := range resp.Kvs {
		// Only <prefix><rev>: a name that extends this one with "/"
		// would share the prefix.
		if len(kv.Key) != len(prefix)+revDigits {
			continue
		}
		var r Record
		if err := json.Unmarshal(kv.Value, &r); err != nil {
			return nil, fmt.Errorf("API store: etcd key %s: %w", kv.Key, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// Audit implements Backend: a range read from audit/<after+1>.
func (b *EtcdBackend) Audit(ctx context.Context, after uint64, limit int) ([]AuditEntry, error) {
	if after == math.MaxUint64 {
		return nil, nil
	}
	rctx, cancel := b.call(ctx)
	defer cancel()
	prefix := b.key("audit/")
	opts := []clientv3.OpOption{
		clientv3.WithRange(clientv3.GetPrefixRangeEnd(prefix)),
		clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend),
	}
	if limit > 0 {
		opts = append(opts, clientv3.WithLimit(int64(limit)))
	}
	resp, err := b.cli.Get(rctx, prefix+revString(after+1), opts...)
	if err != nil {
		return nil, b.fail(rctx, ctx, "audit", b.timeout, err)
	}
	var out []AuditEntry
	for _, kv := range resp.Kvs {
		var e AuditEntry
		if err := json.Unmarshal(kv.Value, &e); err != nil {
			return nil, fmt.Errorf("API store: etcd key %s: %w", kv.Key, err)
		}
		out = append(out, e)
	}
	return out, nil
}

// Watch implements Backend: it watches the revision key and sends its value
// after every commit. On (re)connecting, after an error or a compaction
// that lost events, it first sends the current revision, so that a reader
// that missed commits resyncs; a reader may therefore see a revision more
// than once. The channel is closed when ctx ends or the backend is closed.
func (b *EtcdBackend) Watch(ctx context.Context) <-chan uint64 {
	out := make(chan uint64, 1)
	go b.watch(ctx, out)
	return out
}

// watch is Watch's loop.
func (b *EtcdBackend) watch(ctx context.Context, out chan<- uint64) {
	defer close(out)
	send := func(rev uint64) bool {
		select {
		case out <- rev:
			return true
		case <-ctx.Done():
			return false
		}
	}
	revKey := b.key("revision")
	delay := watchMinDelay
	for {
		if ctx.Err() != nil || b.cli.Ctx().Err() != nil {
			return
		}
		if b.watchOnce(ctx, revKey, send) {
			delay = watchMinDelay
		}
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
		delay = min(2*delay, watchMaxDelay)
	}
}

// watchOnce reads the current revision, sends it, and sends the revisions
// of the following commits until the etcd watch ends; it reports whether
// it got as far as sending.
func (b *EtcdBackend) watchOnce(ctx context.Context, revKey string, send func(uint64) bool) bool {
	rctx, cancel := b.call(ctx)
	resp, err := b.cli.Get(rctx, revKey)
	cancel()
	if err != nil {
		return false
	}
	rev, err := b.parseRevision(resp.Kvs)
	if err != nil || !send(rev) {
		return false
	}
	// WithRequireLeader: a member cut off from its cluster cancels the
	// watch instead of silently delivering nothing.
	wctx, stop := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer stop()
	for wr := range b.cli.Watch(wctx, revKey, clientv3.WithRev(resp.Header.Revision+1)) {
		if wr.Err() != nil {
			return true
		}
		for _, ev := range wr.Events {
			if ev.Type != clientv3.EventTypePut {
				continue
			}
			rev, err := b.parseRevision([]*mvccpb.KeyValue{ev.Kv})
			if err != nil || !send(rev) {
				return true
			}
		}
	}
	return true
}

// Close implements Backend.
func (b *EtcdBackend) Close() error { return b.cli.Close() }
