package xds

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc/credentials"
)

// TLSFiles are the PEM files of the xDS server's TLS identity and of the
// CA bundle that client certificates must chain to.
type TLSFiles struct {
	// Cert is the server certificate, followed by its intermediates.
	Cert string
	// Key is the server certificate's private key.
	Key string
	// ClientCA holds the CA certificates that Envoy client certificates
	// must chain to.
	ClientCA string
}

// NewServerTLS loads files and returns a TLS configuration (TLS 1.2 or
// later, ALPN h2) that requires and verifies client certificates.
//
// The files are read again at every handshake and used if they changed, so
// that a rotated certificate or CA bundle needs no restart. Comparing
// contents rather than modification times catches two writes within the
// file system's timestamp granularity; the files are small and Envoys keep
// their connection for hours, so the cost is negligible. A rotation caught
// half-way (a new certificate with the old key) is logged and the previous
// files stay in use until the pair is consistent again.
func NewServerTLS(files TLSFiles, log *slog.Logger) (*tls.Config, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &tlsReloader{files: files, log: log}
	raw, err := r.read()
	if err != nil {
		return nil, err
	}
	cfg, err := r.build(raw)
	if err != nil {
		return nil, err
	}
	r.raw, r.cfg = raw, cfg
	r.logLoaded(cfg, "xDS TLS loaded")
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		NextProtos:         []string{"h2"},
		ClientAuth:         tls.RequireAndVerifyClientCert,
		GetConfigForClient: r.getConfigForClient,
	}, nil
}

type tlsReloader struct {
	files TLSFiles
	log   *slog.Logger

	mu     sync.Mutex
	raw    tlsContents // what cfg was built from
	cfg    *tls.Config
	failed [sha256.Size]byte // hash of contents that failed to load, logged once
}

type tlsContents struct{ cert, key, ca []byte }

func (c tlsContents) equal(o tlsContents) bool {
	return bytes.Equal(c.cert, o.cert) && bytes.Equal(c.key, o.key) && bytes.Equal(c.ca, o.ca)
}

func (c tlsContents) hash() [sha256.Size]byte {
	h := sha256.New()
	for _, b := range [][]byte{c.cert, c.key, c.ca} {
		fmt.Fprintf(h, "%d\x00", len(b))
		h.Write(b)
	}
	var out [sha256.Size]byte
	copy(out[:], h.Sum(nil))
	return out
}

func (r *tlsReloader) read() (tlsContents, error) {
	var c tlsContents
	var err error
	if c.cert, err = os.ReadFile(r.files.Cert); err != nil {
		return c, fmt.Errorf("xDS server certificate: %w", err)
	}
	if c.key, err = os.ReadFile(r.files.Key); err != nil {
		return c, fmt.Errorf("xDS server key: %w", err)
	}
	if c.ca, err = os.ReadFile(r.files.ClientCA); err != nil {
		return c, fmt.Errorf("xDS client CA bundle: %w", err)
	}
	return c, nil
}

// build parses the files into the configuration used for one handshake.
func (r *tlsReloader) build(c tlsContents) (*tls.Config, error) {
	pair, err := tls.X509KeyPair(c.cert, c.key)
	if err != nil {
		return nil, fmt.Errorf("xDS server certificate %s with key %s: %w", r.files.Cert, r.files.Key, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(c.ca) {
		return nil, fmt.Errorf("xDS client CA bundle %s: no PEM-encoded certificate found", r.files.ClientCA)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"h2"}, // gRPC needs ALPN h2
		Certificates: []tls.Certificate{pair},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
	}, nil
}

func (r *tlsReloader) logLoaded(cfg *tls.Config, msg string) {
	leaf := cfg.Certificates[0].Leaf
	args := []any{"cert", r.files.Cert, "key", r.files.Key, "client_ca", r.files.ClientCA}
	if leaf != nil {
		args = append(args, "subject", leaf.Subject.String(), "not_after", leaf.NotAfter.UTC().Format(time.RFC3339))
		if time.Now().After(leaf.NotAfter) {
			r.log.Warn("xDS server certificate has expired; Envoys will refuse to connect", "cert", r.files.Cert, "not_after", leaf.NotAfter)
		}
	}
	r.log.Info(msg, args...)
}

// getConfigForClient returns the configuration of the files as they are
// now, or the last good one if they cannot be used.
func (r *tlsReloader) getConfigForClient(*tls.ClientHelloInfo) (*tls.Config, error) {
	raw, readErr := r.read()
	r.mu.Lock()
	defer r.mu.Unlock()
	if readErr != nil {
		r.logFailure(tlsContents{}, readErr)
		return r.cfg, nil
	}
	if raw.equal(r.raw) {
		return r.cfg, nil
	}
	cfg, err := r.build(raw)
	if err != nil {
		r.logFailure(raw, err)
		return r.cfg, nil
	}
	r.raw, r.cfg, r.failed = raw, cfg, [sha256.Size]byte{}
	r.logLoaded(cfg, "xDS TLS files changed; new connections use them")
	return cfg, nil
}

// logFailure logs a failed reload once per distinct file contents.
func (r *tlsReloader) logFailure(raw tlsContents, err error) {
	h := raw.hash()
	if h == r.failed {
		return
	}
	r.failed = h
	r.log.Error("xDS TLS files changed but cannot be used; still serving the previous ones", "error", err)
}

// handshakeLogger logs refused TLS handshakes, which gRPC would only
// report to its own logger: an Envoy with a missing, expired or untrusted
// client certificate never reaches the xDS callbacks.
type handshakeLogger struct {
	credentials.TransportCredentials
	log *slog.Logger
}

func (h handshakeLogger) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	remote := conn.RemoteAddr().String()
	c, info, err := h.TransportCredentials.ServerHandshake(conn)
	if err != nil {
		level := slog.LevelWarn
		if errors.Is(err, io.EOF) {
			level = slog.LevelDebug // a port probe, not an Envoy
		}
		h.log.Log(context.Background(), level, "xDS TLS handshake refused", "peer", remote, "error", err)
	}
	return c, info, err
}

func (h handshakeLogger) Clone() credentials.TransportCredentials {
	return handshakeLogger{TransportCredentials: h.TransportCredentials.Clone(), log: h.log}
}
