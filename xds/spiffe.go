package xds

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/tollgate-dev/tollgate/model"
)

// Status of tollgate's own SVID on /status/policies.
const (
	// SVIDObject is the object of the SVIDReady condition: the xDS
	// server's own identity, not a policy object.
	SVIDObject = "tollgate/xds-server"
	// ConditionSVIDReady says whether the xDS server holds a usable SVID
	// with enough lifetime left, freshly delivered by the Workload API.
	ConditionSVIDReady = "SVIDReady"

	ReasonSVIDValid        = "Valid"
	ReasonSVIDExpiringSoon = "ExpiringSoon"
	ReasonSVIDExpired      = "Expired"
	// ReasonWorkloadAPIUnavailable: the Workload API stream failed; the
	// last good SVID is still used.
	ReasonWorkloadAPIUnavailable = "WorkloadAPIUnavailable"
)

// expiringFraction: an SVID with less than this share of its lifetime
// left is reported. SPIRE rotates at half-life, so a healthy agent never
// lets it get this close.
const expiringFraction = 6

// SPIFFEOptions configure the xDS server's identity from the SPIFFE
// Workload API.
type SPIFFEOptions struct {
	// Socket is the Workload API socket: a path, or a unix:// address.
	Socket string
	// ID picks tollgate's SVID when the Workload API returns several for
	// this process; empty means the first (the Workload API's default).
	ID string
	// TrustDomains are the trust domains whose bundles Envoy client
	// certificates may chain to, besides tollgate's own (the trust domains
	// named in xds-identities; see Authorizer.TrustDomains).
	TrustDomains []spiffeid.TrustDomain
	Log          *slog.Logger
}

// svidSource is what SPIFFETLS needs of go-spiffe's X509Source.
type svidSource interface {
	x509svid.Source
	x509bundle.Source
	Updated() <-chan struct{}
	Close() error
}

// SPIFFETLS is the xDS server's TLS identity, taken from a SPIFFE Workload
// API (e.g. the local SPIRE agent) and rotated as the Workload API pushes
// new SVIDs: every handshake reads the current SVID and bundles, so
// connected Envoys keep their streams and new connections see the new
// certificate. If the Workload API goes away the last good SVID is kept.
type SPIFFETLS struct {
	src          svidSource
	log          *slog.Logger
	now          func() time.Time
	trustDomains []spiffeid.TrustDomain

	mu       sync.Mutex
	last     *x509svid.SVID // last good SVID
	watchErr error          // the Workload API's last failure, until the next update
	reported string         // reason last logged
}

// NewSPIFFETLS connects to the Workload API and waits, until ctx ends,
// for tollgate's first SVID.
func NewSPIFFETLS(ctx context.Context, o SPIFFEOptions) (*SPIFFETLS, error) {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	addr := o.Socket
	if !strings.Contains(addr, "://") {
		addr = "unix://" + addr
	}
	s := &SPIFFETLS{log: log, now: time.Now}
	opts := []workloadapi.X509SourceOption{workloadapi.WithClientOptions(
		workloadapi.WithAddr(addr), workloadapi.WithLogger(workloadAPILogger{s}))}
	if o.ID != "" {
		want, err := spiffeid.FromString(o.ID)
		if err != nil {
			return nil, fmt.Errorf("--spiffe-id %q: %w", o.ID, err)
		}
		opts = append(opts, workloadapi.WithDefaultX509SVIDPicker(func(svids []*x509svid.SVID) *x509svid.SVID {
			for _, svid := range svids {
				if svid.ID == want {
					return svid
				}
			}
			return nil
		}))
	}
	src, err := workloadapi.NewX509Source(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("SPIFFE Workload API at %s: no SVID for tollgate (is the SPIRE agent running, and is there a registration entry for tollgate?): %w", o.Socket, err)
	}
	if err := s.init(src, o.TrustDomains); err != nil {
		src.Close()
		if o.ID != "" {
			return nil, fmt.Errorf("SPIFFE Workload API at %s: %w (is there a registration entry with SPIFFE ID %s for tollgate?)", o.Socket, err, o.ID)
		}
		return nil, fmt.Errorf("SPIFFE Workload API at %s: %w", o.Socket, err)
	}
	return s, nil
}

func (s *SPIFFETLS) init(src svidSource, tds []spiffeid.TrustDomain) error {
	svid, err := src.GetX509SVID()
	if err != nil {
		return err
	}
	if svid == nil || len(svid.Certificates) == 0 {
		return errors.New("the Workload API returned no SVID with the SPIFFE ID asked for")
	}
	s.src, s.last = src, svid
	s.trustDomains = append([]spiffeid.TrustDomain{svid.ID.TrustDomain()}, tds...)
	leaf := svid.Certificates[0]
	s.log.Info("xDS TLS identity from the SPIFFE Workload API", "spiffe_id", svid.ID.String(),
		"serial", leaf.SerialNumber.String(), "not_after", leaf.NotAfter.UTC().Format(time.RFC3339))
	return nil
}

// Close stops following the Workload API.
func (s *SPIFFETLS) Close() error { return s.src.Close() }

// Config is the xDS server's TLS configuration: TLS 1.2 or later, ALPN
// h2, the current SVID as server certificate, and client certificates
// required, chaining to a bundle of the trust domain of their own SPIFFE
// ID.
func (s *SPIFFETLS) Config() *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		NextProtos:         []string{"h2"},
		ClientAuth:         tls.RequireAndVerifyClientCert,
		GetConfigForClient: s.configForClient,
	}
}

// AdminConfig is the admin server's TLS configuration with the same SVID:
// HTTP/2 and HTTP/1.1, and client certificates verified as for xDS when
// one is sent, but not required (reads and bearer tokens need none); the
// API's writers are the verified SPIFFE IDs its api-identities grant.
func (s *SPIFFETLS) AdminConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2", "http/1.1"},
		ClientAuth: tls.VerifyClientCertIfGiven,
		GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			c, err := s.configForClient(h)
			if err != nil {
				return nil, err
			}
			c.NextProtos, c.ClientAuth = []string{"h2", "http/1.1"}, tls.VerifyClientCertIfGiven
			verify := c.VerifyPeerCertificate
			c.VerifyPeerCertificate = func(raw [][]byte, chains [][]*x509.Certificate) error {
				if len(raw) == 0 {
					return nil
				}
				return verify(raw, chains)
			}
			return c, nil
		},
	}
}

// configForClient builds one handshake's configuration. Go verifies the
// client chain against the pool of every accepted trust domain's bundle
// (so the verified chains that authorization reads are set), and
// go-spiffe's check then makes sure a certificate chains to the bundle of
// its own trust domain, so no federated CA can speak for another trust
// domain.
func (s *SPIFFETLS) configForClient(*tls.ClientHelloInfo) (*tls.Config, error) {
	svid := s.current()
	pool := x509.NewCertPool()
	for _, td := range s.trustDomains {
		b, err := s.src.GetX509BundleForTrustDomain(td)
		if err != nil {
			continue // a federated bundle not (yet) delivered
		}
		for _, c := range b.X509Authorities() {
			pool.AddCert(c)
		}
	}
	cert := tls.Certificate{PrivateKey: svid.PrivateKey, Leaf: svid.Certificates[0]}
	for _, c := range svid.Certificates {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	return &tls.Config{
		MinVersion:            tls.VersionTLS12,
		NextProtos:            []string{"h2"},
		Certificates:          []tls.Certificate{cert},
		ClientAuth:            tls.RequireAndVerifyClientCert,
		ClientCAs:             pool,
		VerifyPeerCertificate: tlsconfig.VerifyPeerCertificate(s.src, tlsconfig.AuthorizeAny()),
	}, nil
}

// current returns the Workload API's SVID, or the last good one.
func (s *SPIFFETLS) current() *x509svid.SVID {
	svid, err := s.src.GetX509SVID()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil || svid == nil || len(svid.Certificates) == 0 {
		return s.last
	}
	if s.last.Certificates[0].SerialNumber.Cmp(svid.Certificates[0].SerialNumber) != 0 {
		leaf := svid.Certificates[0]
		s.log.Info("xDS SVID rotated; new connections use it, connected Envoys keep their streams",
			"spiffe_id", svid.ID.String(), "serial", leaf.SerialNumber.String(), "not_after", leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	s.last = svid
	return svid
}

// Run follows the Workload API until ctx ends: it picks up each new SVID,
// and logs when the SVID gets close to expiry or the Workload API fails.
func (s *SPIFFETLS) Run(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		s.current()
		cond := s.condition()
		s.mu.Lock()
		if cond.Reason != s.reported {
			s.reported = cond.Reason
			if cond.Status {
				s.log.Info("xDS SVID ready", "message", cond.Message)
			} else {
				s.log.Warn("xDS SVID not ready; still serving the last good one", "reason", cond.Reason, "message", cond.Message)
			}
		}
		// Wake up when the SVID crosses the next threshold.
		leaf := s.last.Certificates[0]
		next := leaf.NotAfter.Sub(s.now())
		if warn := next - leaf.NotAfter.Sub(leaf.NotBefore)/expiringFraction; warn > 0 {
			next = warn
		}
		s.mu.Unlock()
		if next <= 0 {
			next = time.Hour
		}
		timer.Reset(next + time.Millisecond)
		select {
		case <-ctx.Done():
			return
		case <-s.src.Updated():
			s.mu.Lock()
			s.watchErr = nil
			s.mu.Unlock()
		case <-timer.C:
		}
	}
}

// Conditions are the SVIDReady condition of the xDS server's identity.
func (s *SPIFFETLS) Conditions() []model.Condition {
	return []model.Condition{s.condition()}
}

func (s *SPIFFETLS) condition() model.Condition {
	s.mu.Lock()
	defer s.mu.Unlock()
	leaf := s.last.Certificates[0]
	now := s.now()
	left := leaf.NotAfter.Sub(now)
	lifetime := leaf.NotAfter.Sub(leaf.NotBefore)
	desc := fmt.Sprintf("SVID %s (serial %s) valid until %s", s.last.ID, leaf.SerialNumber, leaf.NotAfter.UTC().Format(time.RFC3339))
	c := model.Condition{Object: SVIDObject, Type: ConditionSVIDReady}
	switch {
	case !now.Before(leaf.NotAfter):
		c.Reason, c.Message = ReasonSVIDExpired, desc+" has expired and the Workload API has not delivered a new one: Envoys will refuse new connections; check the SPIRE agent"
	case s.watchErr != nil:
		c.Reason, c.Message = ReasonWorkloadAPIUnavailable, fmt.Sprintf("the Workload API failed (%v); still serving the last good %s", s.watchErr, desc)
	case left < lifetime/expiringFraction:
		c.Reason, c.Message = ReasonSVIDExpiringSoon, fmt.Sprintf("%s has %s of its %s lifetime left and was not rotated; check the SPIRE agent", desc, left.Round(time.Second), lifetime.Round(time.Second))
	default:
		c.Status, c.Reason, c.Message = true, ReasonSVIDValid, desc
	}
	return c
}

// watchFailed records a Workload API failure reported by go-spiffe.
func (s *SPIFFETLS) watchFailed(err error) {
	s.mu.Lock()
	s.watchErr = err
	s.mu.Unlock()
}

// workloadAPILogger passes go-spiffe's log lines to tollgate's log, and
// notes the Workload API's failures for the SVIDReady condition (the
// X509Source reports them in no other way).
type workloadAPILogger struct{ s *SPIFFETLS }

func (l workloadAPILogger) Debugf(format string, args ...any) {
	l.s.log.Debug("spiffe workload api: " + fmt.Sprintf(format, args...))
}
func (l workloadAPILogger) Infof(format string, args ...any) {
	l.s.log.Info("spiffe workload api: " + fmt.Sprintf(format, args...))
}
func (l workloadAPILogger) Warnf(format string, args ...any) {
	l.s.log.Warn("spiffe workload api: " + fmt.Sprintf(format, args...))
}
func (l workloadAPILogger) Errorf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	l.s.log.Warn("spiffe workload api: " + msg)
	l.s.watchFailed(errors.New(msg))
}
