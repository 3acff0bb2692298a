// Package etcdtest runs a single-member etcd inside a test process, for the
// tests of the etcd API store and of tollgate replicas sharing one. It is
// imported only by tests: the tollgate binary never links etcd's server.
package etcdtest

import (
	"bytes"
	"net/url"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// readyTimeout bounds how long a member may take to serve.
const readyTimeout = 10 * time.Second

// Server is an embedded etcd member listening on the loopback interface.
type Server struct {
	// URL is the client URL, http://127.0.0.1:<port>: an endpoint for
	// clientv3 and store.EtcdOptions.
	URL string
	// Endpoint is URL without the scheme, host:port, as in a tollgate
	// --store etcd://host:port flag.
	Endpoint string
	// Etcd is the running member.
	Etcd *embed.Etcd

	cfg  *embed.Config
	mu   sync.Mutex
	stop bool // Etcd was stopped
}

// Start starts an etcd member for the test and returns its client URL. The
// member is stopped, and its data removed, when the test ends.
func Start(t testing.TB) string {
	t.Helper()
	return StartServer(t).URL
}

// StartServer is Start returning the Server, for tests that stop or restart
// the member to see how clients cope.
func StartServer(t testing.TB) *Server {
	t.Helper()
	cfg := embed.NewConfig()
	cfg.Name = "etcdtest"
	cfg.Dir = t.TempDir()
	// etcd's warnings and errors (some harmless, at every shutdown) are
	// kept, and shown only if the test fails.
	logs := &logBuffer{}
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.New(zapcore.NewCore(
		zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig()), logs, zapcore.WarnLevel)))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("etcdtest: etcd's log:\n%s", logs.String())
		}
	})
	// Port 0: the kernel picks free ports, read back from the listeners,
	// so that parallel test processes never race for one.
	loopback := url.URL{Scheme: "http", Host: "127.0.0.1:0"}
	cfg.ListenClientUrls = []url.URL{loopback}
	cfg.AdvertiseClientUrls = []url.URL{loopback}
	cfg.ListenPeerUrls = []url.URL{loopback}
	cfg.AdvertisePeerUrls = []url.URL{loopback}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	// The data is thrown away with the test: no fsync, no HTTP gateway.
	cfg.UnsafeNoFsync = true
	cfg.EnableGRPCGateway = false
	s := &Server{cfg: cfg}
	t.Cleanup(s.Stop)
	s.start(t)
	// Restarts listen where this member did.
	client := url.URL{Scheme: "http", Host: s.Endpoint}
	peer := url.URL{Scheme: "http", Host: s.Etcd.Peers[0].Addr().String()}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
	cfg.ListenPeerUrls = []url.URL{peer}
	return s
}

// start starts the member of s.cfg and waits until it serves.
func (s *Server) start(t testing.TB) {
	t.Helper()
	e, err := embed.StartEtcd(s.cfg)
	if err != nil {
		t.Fatalf("etcdtest: start etcd: %v", err)
	}
	s.mu.Lock()
	s.Etcd, s.stop = e, false
	s.mu.Unlock()
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		t.Fatalf("etcdtest: etcd failed: %v", err)
	case <-time.After(readyTimeout):
		t.Fatalf("etcdtest: etcd not ready after %s", readyTimeout)
	}
	s.Endpoint = e.Clients[0].Addr().String()
	s.URL = "http://" + s.Endpoint
}

// Stop stops the member and closes its listeners; it may be called more
// than once.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.stop && s.Etcd != nil {
		s.Etcd.Close()
		s.stop = true
	}
}

// Restart stops the member and starts it again on the same data and the
// same address, as an operator's restart of etcd would.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	s.start(t)
}

// logBuffer collects a member's log; zap writes to it from many goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write implements zapcore.WriteSyncer.
func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// Sync implements zapcore.WriteSyncer.
func (l *logBuffer) Sync() error { return nil }

// String is the log so far.
func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}
