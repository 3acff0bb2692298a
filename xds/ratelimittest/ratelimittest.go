// Package ratelimittest runs the real envoyproxy/ratelimit service and a
// real redis-server on 127.0.0.1 for integration tests: ratelimit takes its
// configuration over xDS (CONFIG_TYPE=GRPC_XDS_SOTW) from a server the test
// runs, and counts in the Redis the test starts.
//
// The ratelimit binary comes from RATELIMIT_BIN, or else from
// .cache/bin/ratelimit at the repository root, where `make ratelimit`
// builds it (the version is pinned by RATELIMIT_VERSION in the Makefile,
// out of tollgate's go.mod). redis-server comes from REDIS_BIN, or else
// from PATH (Debian's redis-server package). Without them the tests that
// need them are skipped, or fail when TOLLGATE_REQUIRE_INTEGRATION=1 (make
// test sets it) or CI=true (spiretest's convention).
//
// What the pinned ratelimit does, as found when this package was written
// (ratelimit v1.4.1-0.20260122083618-3fb702589d36, built against
// go-control-plane v0.13.4 and envoy protos v1.32.4):
//
//   - It opens none of its ports (gRPC, HTTP, debug) before it has
//     received its first configuration over xDS: service creation blocks
//     on the first config event, and the listeners are opened after it.
//     An xDS server with no snapshot for its node keeps it portless
//     forever. FORCE_START_WITHOUT_INITIAL_CONFIG (Options.ForceStart)
//     opens the ports at once; until a config arrives every
//     ShouldRateLimit then fails with "no rate limit configuration
//     loaded". /healthcheck on HTTPAddr answers 200 "OK" as soon as the
//     HTTP port is open (HEALTHY_WITH_AT_LEAST_ONE_CONFIG_LOADED is off).
//   - Its xDS client is a SotW ADS stream with one wildcard subscription
//     (no resource names) for ratelimit.config.ratelimit.v3.RateLimitConfig.
//     Its node has only id (CONFIG_GRPC_XDS_NODE_ID) and metadata
//     (CONFIG_GRPC_XDS_NODE_METADATA, "k=v,k2=v2", string values, no comma
//     in values): no cluster, no locality, no user agent, so a snapshot
//     cache must key it by node id or metadata.
//   - Every response is taken as the full state: the resources it holds
//     replace the loaded configuration. A config that fails to load (a
//     duplicate domain across resources, an empty key, a bad unit) is
//     NACKed with the loader's message and the previous configuration
//     stays in force. The ACK is sent once the service has taken the new
//     config off its channel, which can be a moment before it is in force.
//   - The xDS client certificate is read once at startup: no rotation.
//   - After the xDS stream breaks it redials after
//     XDS_CLIENT_BACKOFF_INITIAL_INTERVAL (the backoff's "random factor"
//     is in fact its growth factor, 0.5 by default, so it never grows),
//     with a blocking dial under gRPC's own reconnect backoff (1s base):
//     a server back within a second is served again about a second later
//     (TestRatelimitReconnects). Meanwhile the loaded configuration stays
//     in force.
//   - Until its ports are open it catches SIGTERM without acting on it.
//   - RateLimitDescriptor.is_negative_hits (field 4 of
//     envoy.extensions.common.ratelimit.v3, envoy protos >= 1.38) is not in
//     its protos: it is ignored, and a descriptor with hits_addend 2 and
//     is_negative_hits adds 2 (TestRatelimitIgnoresNegativeHits).
//   - Per-descriptor hits_addend 0 checks without counting.
//   - The Redis key of a limit is <domain>_<key>_<value>_..._<window start
//     in unix seconds>, e.g. test_k_v_1767225600.
package ratelimittest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// RequireEnv, set to 1, makes a missing binary fail the test instead of
// skipping it. make test sets it.
const RequireEnv = "TOLLGATE_REQUIRE_INTEGRATION"

// required reports whether a missing binary fails the test: under
// TOLLGATE_REQUIRE_INTEGRATION=1, and under CI=true as xds/spiretest does.
func required() bool {
	return os.Getenv(RequireEnv) == "1" || os.Getenv("CI") == "true"
}

func missing(t testing.TB, msg string) {
	t.Helper()
	if required() {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// Binary returns the path of the ratelimit binary: RATELIMIT_BIN, or else
// .cache/bin/ratelimit at the repository root. When it is missing the test
// is skipped, or fails under TOLLGATE_REQUIRE_INTEGRATION=1 or CI=true.
func Binary(t testing.TB) string {
	t.Helper()
	bin := os.Getenv("RATELIMIT_BIN")
	if bin == "" {
		if root, err := repoRoot(); err == nil {
			bin = filepath.Join(root, ".cache", "bin", "ratelimit")
		}
	}
	if fi, err := os.Stat(bin); err != nil || fi.IsDir() {
		missing(t, fmt.Sprintf("ratelimit binary not found at %q (RATELIMIT_BIN or .cache/bin/ratelimit): run `make ratelimit` to build it", bin))
	}
	return bin
}

// RedisBinary returns the path of redis-server: REDIS_BIN, or else
// redis-server on PATH. When it is missing the test is skipped, or fails
// under TOLLGATE_REQUIRE_INTEGRATION=1 or CI=true.
func RedisBinary(t testing.TB) string {
	t.Helper()
	if bin := os.Getenv("REDIS_BIN"); bin != "" {
		if fi, err := os.Stat(bin); err != nil || fi.IsDir() {
			missing(t, fmt.Sprintf("REDIS_BIN=%q: not found", bin))
		}
		return bin
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		missing(t, "redis-server not found on PATH (or REDIS_BIN): install it, e.g. `apt-get install redis-server`")
	}
	return bin
}

// repoRoot is the directory of tollgate's go.mod above the working
// directory (a test runs in its package's directory).
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.HasPrefix(string(data), "module github.com/tollgate-dev/tollgate\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("tollgate's go.mod not found")
		}
		dir = parent
	}
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// logBuffer collects a process's output; safe for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}
