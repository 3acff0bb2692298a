package ratelimittest

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	ratelimitv3common "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

const (
	// startTimeout bounds the wait for ratelimit's ports.
	startTimeout = 20 * time.Second
	// configTimeout bounds WaitConfig and WaitLimits.
	configTimeout = 15 * time.Second
	// stopGrace is how long ratelimit gets to exit after SIGTERM.
	stopGrace = 3 * time.Second
	// pollInterval is the interval of every poll.
	pollInterval = 50 * time.Millisecond
)

// TLSFiles are the PEM files of ratelimit's xDS client: its certificate
// and key, the CA that signs the xDS server's certificate, and the name
// to verify that certificate for (default: the host of Options.XDSAddr).
type TLSFiles struct{ Cert, Key, CA, SAN string }

// Options configure a ratelimit service.
type Options struct {
	// XDSAddr is the xDS server's host:port.
	XDSAddr string
	// NodeID is the node id ratelimit sends; default "ratelimit".
	NodeID string
	// NodeMetadata are the node's metadata, all string values. Neither
	// keys nor values may contain a comma, nor keys an "=".
	NodeMetadata map[string]string
	// RedisAddr is the Redis to count in; empty starts one (StartRedis).
	RedisAddr string
	// TLS, if set, makes the xDS connection TLS (mutual if Cert and Key
	// are set).
	TLS *TLSFiles
	// ForceStart opens ratelimit's ports before it has a configuration
	// (FORCE_START_WITHOUT_INITIAL_CONFIG). Without it StartRatelimit
	// returns only once the xDS server has served ratelimit a first
	// configuration.
	ForceStart bool
	// ExtraEnv are more KEY=value settings, after (and so overriding) the
	// ones StartRatelimit sets.
	ExtraEnv []string
}

func (o Options) nodeID() string {
	if o.NodeID == "" {
		return "ratelimit"
	}
	return o.NodeID
}

// Ratelimit is a running ratelimit service.
type Ratelimit struct {
	// GRPCAddr serves envoy.service.ratelimit.v3.RateLimitService and
	// grpc.health.v1.
	GRPCAddr string
	// HTTPAddr serves /healthcheck and /json.
	HTTPAddr string
	// DebugAddr serves /rlconfig (the loaded configuration), /stats and
	// pprof.
	DebugAddr string
	// RedisAddr is the Redis ratelimit counts in.
	RedisAddr string
	// Logs returns everything ratelimit has written so far (JSON lines).
	Logs func() string

	t        testing.TB
	cmd      *exec.Cmd
	done     chan error
	stopOnce sync.Once
	started  bool // its ports opened: it handles SIGTERM gracefully
	connOnce sync.Once
	conn     *grpc.ClientConn
	connErr  error
}

// Env returns the environment StartRatelimit gives ratelimit for o and the
// given addresses, without o.ExtraEnv. The environment is exactly this:
// nothing is inherited from the test's.
func Env(o Options, grpcPort, httpPort, debugPort int) []string {
	nodeID := o.nodeID()
	var md []string
	for _, k := range slices.Sorted(maps.Keys(o.NodeMetadata)) {
		md = append(md, k+"="+o.NodeMetadata[k])
	}
	env := []string{
		// Listen on loopback only.
		"HOST=127.0.0.1", "PORT=" + strconv.Itoa(httpPort),
		"GRPC_HOST=127.0.0.1", "GRPC_PORT=" + strconv.Itoa(grpcPort),
		"DEBUG_HOST=127.0.0.1", "DEBUG_PORT=" + strconv.Itoa(debugPort),
		// Configuration over xDS.
		"CONFIG_TYPE=GRPC_XDS_SOTW",
		"CONFIG_GRPC_XDS_SERVER_URL=" + o.XDSAddr,
		"CONFIG_GRPC_XDS_NODE_ID=" + nodeID,
		"CONFIG_GRPC_XDS_NODE_METADATA=" + strings.Join(md, ","),
		"CONFIG_GRPC_XDS_SERVER_CONNECT_RETRY_INTERVAL=200ms",
		// Reconnect quickly after the xDS stream breaks. (The "random
		// factor" is in fact the backoff's growth factor; 0.5 keeps
		// every wait at the initial interval.)
		"XDS_CLIENT_BACKOFF_INITIAL_INTERVAL=200ms",
		"XDS_CLIENT_BACKOFF_MAX_INTERVAL=1s",
		"XDS_CLIENT_BACKOFF_JITTER=false",
		"FORCE_START_WITHOUT_INITIAL_CONFIG=" + strconv.FormatBool(o.ForceStart),
		// Count in one plain Redis, with no local over-limit cache, so
		// that every call reaches Redis.
		"BACKEND_TYPE=redis",
		"REDIS_SOCKET_TYPE=tcp", "REDIS_TYPE=SINGLE", "REDIS_URL=" + o.RedisAddr,
		"REDIS_POOL_SIZE=4", "REDIS_TIMEOUT=2s",
		"LOCAL_CACHE_SIZE_IN_BYTES=0",
		// No other service: no stats sink (not even stdout's), no
		// tracing exporter.
		"USE_STATSD=false", "USE_DOG_STATSD=false", "USE_PROMETHEUS=false", "DISABLE_STATS=true",
		"TRACING_ENABLED=false",
		"LOG_LEVEL=debug", "LOG_FORMAT=json",
	}
	if o.TLS != nil {
		env = append(env,
			"CONFIG_GRPC_XDS_SERVER_USE_TLS=true",
			"CONFIG_GRPC_XDS_CLIENT_TLS_CERT="+o.TLS.Cert,
			"CONFIG_GRPC_XDS_CLIENT_TLS_KEY="+o.TLS.Key,
			"CONFIG_GRPC_XDS_SERVER_TLS_CACERT="+o.TLS.CA,
			"CONFIG_GRPC_XDS_SERVER_TLS_SAN="+o.TLS.SAN,
		)
	}
	return env
}

// StartRatelimit runs ratelimit (Binary) until the test ends and returns
// once its gRPC port accepts connections and /healthcheck answers OK.
// Unless o.ForceStart, that is once the xDS server at o.XDSAddr has served
// it a first configuration: publish a snapshot for its node first (or
// from another goroutine). Its logs are printed if the test failed.
func StartRatelimit(t testing.TB, o Options) *Ratelimit {
	t.Helper()
	bin := Binary(t)
	if o.XDSAddr == "" {
		t.Fatal("ratelimittest: Options.XDSAddr is required")
	}
	for k, v := range o.NodeMetadata {
		if k == "" || strings.ContainsAny(k, ",=") || strings.Contains(v, ",") {
			t.Fatalf("ratelimittest: node metadata %q=%q: ratelimit splits CONFIG_GRPC_XDS_NODE_METADATA at commas and at the first '='", k, v)
		}
	}
	if o.RedisAddr == "" {
		o.RedisAddr = StartRedis(t)
	}
	grpcPort, httpPort, debugPort := FreePort(t), FreePort(t), FreePort(t)
	logs := &logBuffer{}
	r := &Ratelimit{
		GRPCAddr:  net.JoinHostPort("127.0.0.1", strconv.Itoa(grpcPort)),
		HTTPAddr:  net.JoinHostPort("127.0.0.1", strconv.Itoa(httpPort)),
		DebugAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(debugPort)),
		RedisAddr: o.RedisAddr,
		Logs:      logs.String,
		t:         t,
		done:      make(chan error, 1),
	}
	r.cmd = exec.Command(bin)
	r.cmd.Env = append(Env(o, grpcPort, httpPort, debugPort), o.ExtraEnv...)
	r.cmd.Dir, r.cmd.Stdout, r.cmd.Stderr = t.TempDir(), logs, logs
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	go func() { r.done <- r.cmd.Wait() }()
	t.Cleanup(func() {
		r.Stop()
		if t.Failed() {
			t.Logf("ratelimit log (last lines):\n%s", tail(logs.String(), 60))
		}
	})

	deadline := time.Now().Add(startTimeout)
	for {
		if err := r.exited(); err != nil {
			t.Fatalf("ratelimit exited while starting: %v\n%s", err, tail(logs.String(), 60))
		}
		if r.ready() {
			r.started = true
			return r
		}
		if time.Now().After(deadline) {
			hint := ""
			if !o.ForceStart {
				hint = fmt.Sprintf(" (it opens its ports only after a first configuration over xDS: does %s have a snapshot for node %q?)", o.XDSAddr, o.nodeID())
			}
			t.Fatalf("ratelimit not serving on %s within %s%s", r.GRPCAddr, startTimeout, hint)
		}
		time.Sleep(pollInterval)
	}
}

// exited returns a non-nil error once the process has exited.
func (r *Ratelimit) exited() error {
	select {
	case err := <-r.done:
		r.done <- err
		if err == nil {
			return fmt.Errorf("exit status 0")
		}
		return err
	default:
		return nil
	}
}

func (r *Ratelimit) ready() bool {
	c, err := net.DialTimeout("tcp", r.GRPCAddr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	ok, _ := r.healthy()
	return ok
}

func (r *Ratelimit) healthy() (bool, error) {
	body, code, err := httpGet("http://" + r.HTTPAddr + "/healthcheck")
	if err != nil {
		return false, err
	}
	return code == http.StatusOK && body == "OK", nil
}

// Healthy reports whether /healthcheck answers 200 OK.
func (r *Ratelimit) Healthy(t testing.TB) bool {
	t.Helper()
	ok, err := r.healthy()
	if err != nil {
		t.Fatalf("ratelimit /healthcheck: %v", err)
	}
	return ok
}

// Stop stops ratelimit: SIGTERM, then SIGKILL after 3s. (Before its ports
// open it catches SIGTERM but does not act on it: SIGKILL at once.) The
// test's cleanup calls it; calling it earlier (and again) is fine.
func (r *Ratelimit) Stop() {
	r.stopOnce.Do(func() {
		if r.conn != nil {
			_ = r.conn.Close()
		}
		if r.exited() != nil {
			return
		}
		if !r.started {
			_ = r.cmd.Process.Kill()
			<-r.done
			r.done <- nil
			return
		}
		_ = r.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-r.done:
		case <-time.After(stopGrace):
			_ = r.cmd.Process.Kill()
			<-r.done
		}
		// Keep exited() true.
		r.done <- nil
	})
}

// Client is a RateLimitService client over a plaintext connection shared
// by all of r's clients, closed by Stop.
func (r *Ratelimit) Client(t testing.TB) rlsv3.RateLimitServiceClient {
	t.Helper()
	r.connOnce.Do(func() {
		r.conn, r.connErr = grpc.NewClient(r.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	})
	if r.connErr != nil {
		t.Fatalf("ratelimit client: %v", r.connErr)
	}
	return rlsv3.NewRateLimitServiceClient(r.conn)
}

// ShouldRateLimit asks about descriptors of domain with hits_addend
// unset (one hit each unless a descriptor has its own); an error fails
// the test.
func (r *Ratelimit) ShouldRateLimit(t testing.TB, domain string, descriptors ...*ratelimitv3common.RateLimitDescriptor) *rlsv3.RateLimitResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := r.Client(t).ShouldRateLimit(ctx, &rlsv3.RateLimitRequest{Domain: domain, Descriptors: descriptors})
	if err != nil {
		t.Fatalf("ShouldRateLimit(%s): %v", domain, err)
	}
	return resp
}

// Descriptor builds a descriptor from key, value pairs.
func Descriptor(kv ...string) *ratelimitv3common.RateLimitDescriptor {
	if len(kv)%2 != 0 {
		panic("ratelimittest.Descriptor: odd number of arguments")
	}
	d := &ratelimitv3common.RateLimitDescriptor{}
	for i := 0; i < len(kv); i += 2 {
		d.Entries = append(d.Entries, &ratelimitv3common.RateLimitDescriptor_Entry{Key: kv[i], Value: kv[i+1]})
	}
	return d
}

// Limit is one limit of ratelimit's loaded configuration, as /rlconfig
// shows it. An unlimited descriptor shows as unit UNKNOWN, 0 requests.
type Limit struct {
	Unit            string // SECOND, MINUTE, HOUR, DAY, ...
	RequestsPerUnit uint32
	ShadowMode      bool
	QuotaMode       bool
}

// Limits returns the loaded configuration from /rlconfig, by full key:
// "<domain>.<key>_<value>" for a top-level descriptor ("<domain>.<key>"
// without a value), with ".<key>_<value>" appended per nesting level.
// A domain without a limited descriptor does not show.
func (r *Ratelimit) Limits(t testing.TB) map[string]Limit {
	t.Helper()
	limits, err := r.limits()
	if err != nil {
		t.Fatalf("ratelimit /rlconfig: %v", err)
	}
	return limits
}

func (r *Ratelimit) limits() (map[string]Limit, error) {
	body, code, err := httpGet("http://" + r.DebugAddr + "/rlconfig")
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("status %d: %s", code, body)
	}
	return parseRLConfig(body)
}

// parseRLConfig parses lines like
// "test.k_v: unit=MINUTE requests_per_unit=3, shadow_mode: false, quota_mode: false".
func parseRLConfig(dump string) (map[string]Limit, error) {
	out := map[string]Limit{}
	for line := range strings.Lines(dump) {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		i := strings.LastIndex(line, ": unit=")
		if i < 0 {
			return nil, fmt.Errorf("unexpected /rlconfig line %q", line)
		}
		var l Limit
		var shadow, quota string
		if _, err := fmt.Sscanf(line[i+2:], "unit=%s requests_per_unit=%d, shadow_mode: %s quota_mode: %s", &l.Unit, &l.RequestsPerUnit, &shadow, &quota); err != nil {
			return nil, fmt.Errorf("unexpected /rlconfig line %q: %v", line, err)
		}
		l.ShadowMode = strings.TrimSuffix(shadow, ",") == "true"
		l.QuotaMode = quota == "true"
		out[line[:i]] = l
	}
	return out, nil
}

// WaitLimits polls /rlconfig every 50ms until ok accepts the loaded
// configuration, and returns it; after 15s the test fails, with what
// describes the wait.
func (r *Ratelimit) WaitLimits(t testing.TB, what string, ok func(map[string]Limit) bool) map[string]Limit {
	t.Helper()
	deadline := time.Now().Add(configTimeout)
	var last map[string]Limit
	var lastErr error
	for {
		limits, err := r.limits()
		if err == nil && ok(limits) {
			return limits
		}
		last, lastErr = limits, err
		if err := r.exited(); err != nil {
			t.Fatalf("ratelimit exited waiting for %s: %v", what, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("ratelimit: no %s within %s; loaded: %v (error: %v)", what, configTimeout, last, lastErr)
		}
		time.Sleep(pollInterval)
	}
}

// WaitConfig waits (15s at most) until the loaded configuration has a
// limit in domain and every limit of want (by full key, as Limits), and
// returns it.
func (r *Ratelimit) WaitConfig(t testing.TB, domain string, want map[string]Limit) map[string]Limit {
	t.Helper()
	return r.WaitLimits(t, fmt.Sprintf("configuration for domain %q with %v", domain, want), func(got map[string]Limit) bool {
		hasDomain := false
		for k := range got {
			if strings.HasPrefix(k, domain+".") {
				hasDomain = true
				break
			}
		}
		if !hasDomain {
			return false
		}
		for k, l := range want {
			if got[k] != l {
				return false
			}
		}
		return true
	})
}

func httpGet(url string) (string, int, error) {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return string(body), resp.StatusCode, err
}
