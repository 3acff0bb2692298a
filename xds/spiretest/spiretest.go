// Package spiretest runs a real SPIRE server and agent for tests: the
// server on 127.0.0.1 and a unix socket, an in-file sqlite datastore and
// in-memory keys, the agent attested with a join token and serving the
// Workload API (and Envoy's SDS) on a unix socket, with the unix workload
// attestor. Everything lives in a temporary directory removed by Close.
//
// The binaries come from SPIRE_BIN_DIR, or else from .cache/bin at the
// repository root, where `make spire` builds them from the tools module
// beside this file. Without them the tests that need SPIRE fail under
// CI=true and are skipped otherwise.
package spiretest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// startTimeout bounds each wait: server and agent health, SVID delivery.
const startTimeout = 60 * time.Second

// Options configure a SPIRE deployment.
type Options struct {
	// TrustDomain defaults to "tollgate.test".
	TrustDomain string
	// X509SVIDTTL is the server's default_x509_svid_ttl; default 1h.
	// An entry may set its own (Entry.X509SVIDTTL).
	X509SVIDTTL time.Duration
}

// SPIRE is a running server and agent.
type SPIRE struct {
	// TrustDomain of the deployment.
	TrustDomain spiffeid.TrustDomain
	// AgentSocket is the path of the agent's Workload API socket, which
	// also serves Envoy's SDS API.
	AgentSocket string
	// ServerSocket is the server API socket (the CLI talks to it).
	ServerSocket string
	// AgentID is the agent's SPIFFE ID, the parent of workload entries.
	AgentID spiffeid.ID

	t       testing.TB
	bin     string
	dir     string
	procs   []*exec.Cmd
	waiters []chan error
}

// BinDir returns the directory with spire-server and spire-agent. When
// they are missing it fails the test under CI=true and skips it
// otherwise.
func BinDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("SPIRE_BIN_DIR")
	if dir == "" {
		if root, err := repoRoot(); err == nil {
			dir = filepath.Join(root, ".cache", "bin")
		}
	}
	for _, b := range []string{"spire-server", "spire-agent"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			msg := fmt.Sprintf("SPIRE binaries not found in %q (SPIRE_BIN_DIR or .cache/bin): run `make spire` to build them", dir)
			if os.Getenv("CI") == "true" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
	return dir
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

// Start runs a SPIRE server and an agent until the test ends (or Close).
func Start(t testing.TB, o Options) *SPIRE {
	t.Helper()
	bin := BinDir(t)
	if o.TrustDomain == "" {
		o.TrustDomain = "tollgate.test"
	}
	if o.X509SVIDTTL == 0 {
		o.X509SVIDTTL = time.Hour
	}
	td, err := spiffeid.TrustDomainFromString(o.TrustDomain)
	if err != nil {
		t.Fatalf("trust domain: %v", err)
	}
	// Unix socket paths are limited to about 100 bytes, which a test's
	// TempDir can exceed: a short directory of our own.
	dir, err := os.MkdirTemp("", "spire")
	if err != nil {
		t.Fatal(err)
	}
	s := &SPIRE{
		TrustDomain: td, t: t, bin: bin, dir: dir,
		ServerSocket: filepath.Join(dir, "server.sock"),
		AgentSocket:  filepath.Join(dir, "agent.sock"),
	}
	t.Cleanup(s.Close)

	port := freePort(t)
	s.write("server.conf", fmt.Sprintf(serverConf, port, s.ServerSocket, o.TrustDomain, dir, o.X509SVIDTTL, dir))
	s.run("server", filepath.Join(bin, "spire-server"), "run", "-config", filepath.Join(dir, "server.conf"))
	s.waitHealthy("spire-server", "-socketPath", s.ServerSocket)

	out := s.cli("token", "generate", "-ttl", "600")
	// "Token: <token>", then a warning that no SPIFFE ID alias was asked for.
	first, _, _ := strings.Cut(out, "\n")
	token, ok := strings.CutPrefix(strings.TrimSpace(first), "Token: ")
	if !ok {
		t.Fatalf("spire-server token generate: unexpected output %q", out)
	}
	s.AgentID = spiffeid.RequireFromPath(td, "/spire/agent/join_token/"+token)
	s.write("agent.conf", fmt.Sprintf(agentConf, dir, port, s.AgentSocket, o.TrustDomain))
	s.run("agent", filepath.Join(bin, "spire-agent"), "run", "-config", filepath.Join(dir, "agent.conf"), "-joinToken", token)
	s.waitHealthy("spire-agent", "-socketPath", s.AgentSocket)
	return s
}

const serverConf = `server {
  bind_address = "127.0.0.1"
  bind_port = "%d"
  socket_path = %q
  trust_domain = %q
  data_dir = "%s/server-data"
  log_level = "DEBUG"
  default_x509_svid_ttl = "%s"
  ca_ttl = "24h"
}
plugins {
  DataStore "sql" {
    plugin_data {
      database_type = "sqlite3"
      connection_string = "%s/server-data/datastore.sqlite3"
    }
  }
  NodeAttestor "join_token" {
    plugin_data {}
  }
  KeyManager "memory" {
    plugin_data {}
  }
}
`

const agentConf = `agent {
  data_dir = "%s/agent-data"
  log_level = "DEBUG"
  server_address = "127.0.0.1"
  server_port = "%d"
  socket_path = %q
  trust_domain = %q
  insecure_bootstrap = true
}
plugins {
  NodeAttestor "join_token" {
    plugin_data {}
  }
  KeyManager "memory" {
    plugin_data {}
  }
  WorkloadAttestor "unix" {
    plugin_data {}
  }
}
`

// Entry is a registration entry for a workload of this agent.
type Entry struct {
	// SPIFFEID is the ID the workload gets.
	SPIFFEID string
	// Selectors default to unix:uid:<this process's uid>. Every process of
	// a test runs as one uid, so entries that differ only in SPIFFE ID are
	// all delivered to each of them; a process picks its SVID by ID.
	Selectors []string
	// X509SVIDTTL overrides the server's default SVID lifetime.
	X509SVIDTTL time.Duration
}

// CreateEntry registers e with the server through its CLI.
func (s *SPIRE) CreateEntry(e Entry) {
	s.t.Helper()
	args := []string{"entry", "create", "-parentID", s.AgentID.String(), "-spiffeID", e.SPIFFEID}
	sel := e.Selectors
	if len(sel) == 0 {
		sel = []string{"unix:uid:" + strconv.Itoa(os.Getuid())}
	}
	for _, x := range sel {
		args = append(args, "-selector", x)
	}
	if e.X509SVIDTTL > 0 {
		args = append(args, "-x509SVIDTTL", strconv.Itoa(int(e.X509SVIDTTL/time.Second)))
	}
	s.cli(args...)
}

// WorkloadAPIAddr is the agent's Workload API address for go-spiffe.
func (s *SPIRE) WorkloadAPIAddr() string { return "unix://" + s.AgentSocket }

// WaitForSVIDs waits until the Workload API gives this process an SVID for
// each of ids (entries take a sync of the agent, about 5s, to arrive) and
// returns them by ID, with the bundles delivered alongside.
func (s *SPIRE) WaitForSVIDs(ids ...string) (map[string]*x509svid.SVID, *x509bundle.Set) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	var last string
	for {
		got := map[string]*x509svid.SVID{}
		x509ctx, err := workloadapi.FetchX509Context(ctx, workloadapi.WithAddr(s.WorkloadAPIAddr()))
		if err == nil {
			for _, svid := range x509ctx.SVIDs {
				got[svid.ID.String()] = svid
			}
			missing := 0
			for _, id := range ids {
				if got[id] == nil {
					missing++
				}
			}
			if missing == 0 {
				return got, x509ctx.Bundles
			}
			last = fmt.Sprintf("%d of %d SVIDs missing (have %d)", missing, len(ids), len(got))
		} else {
			last = err.Error()
		}
		if !s.pause(ctx) {
			s.t.Fatalf("SVIDs %q not delivered within %s: %s", ids, startTimeout, last)
			return nil, nil
		}
	}
}

// Close stops the agent and the server and removes their directory. The
// logs of both are printed if the test failed.
func (s *SPIRE) Close() {
	for i := len(s.procs) - 1; i >= 0; i-- {
		p := s.procs[i]
		_ = p.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.waiters[i]:
		case <-time.After(10 * time.Second):
			_ = p.Process.Kill()
			<-s.waiters[i]
		}
	}
	s.procs, s.waiters = nil, nil
	if s.t.Failed() {
		for _, name := range []string{"server", "agent"} {
			if data, err := os.ReadFile(filepath.Join(s.dir, name+".log")); err == nil {
				s.t.Logf("spire-%s log (last lines):\n%s", name, tail(data, 60))
			}
		}
	}
	_ = os.RemoveAll(s.dir)
}

func (s *SPIRE) write(name, content string) {
	s.t.Helper()
	if err := os.WriteFile(filepath.Join(s.dir, name), []byte(content), 0o600); err != nil {
		s.t.Fatal(err)
	}
}

// run starts a long-running process logging to name.log.
func (s *SPIRE) run(name, bin string, args ...string) {
	s.t.Helper()
	log, err := os.Create(filepath.Join(s.dir, name+".log"))
	if err != nil {
		s.t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir, cmd.Stdout, cmd.Stderr = s.dir, log, log
	if err := cmd.Start(); err != nil {
		log.Close()
		s.t.Fatalf("start %s: %v", bin, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait(); log.Close() }()
	s.procs, s.waiters = append(s.procs, cmd), append(s.waiters, done)
}

// cli runs a spire-server command against the server socket.
func (s *SPIRE) cli(args ...string) string {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	args = append(args[:2:2], append([]string{"-socketPath", s.ServerSocket}, args[2:]...)...)
	out, err := exec.CommandContext(ctx, filepath.Join(s.bin, "spire-server"), args...).CombinedOutput()
	if err != nil {
		s.t.Fatalf("spire-server %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// waitHealthy polls `<bin> healthcheck` until it passes, the process
// exits, or the deadline passes.
func (s *SPIRE) waitHealthy(bin string, args ...string) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	done := s.waiters[len(s.waiters)-1]
	for {
		out, err := exec.CommandContext(ctx, filepath.Join(s.bin, bin), append([]string{"healthcheck"}, args...)...).CombinedOutput()
		if err == nil {
			return
		}
		select {
		case werr := <-done:
			done <- werr
			s.t.Fatalf("%s exited while starting: %v", bin, werr)
		default:
		}
		if !s.pause(ctx) {
			s.t.Fatalf("%s not healthy within %s: %v\n%s", bin, startTimeout, err, out)
		}
	}
}

// pause waits a poll interval; false once ctx is done.
func (s *SPIRE) pause(ctx context.Context) bool {
	t := time.NewTimer(200 * time.Millisecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func tail(data []byte, n int) string {
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}
