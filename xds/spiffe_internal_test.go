package xds

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/stretchr/testify/require"

	"github.com/tollgate-dev/tollgate/xds/xdstest"
)

func slogDiscard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// fakeSource stands in for go-spiffe's X509Source; the SPIRE tests in
// cmd/tollgate run the real one against a real agent.
type fakeSource struct {
	mu      sync.Mutex
	svid    *x509svid.SVID
	err     error
	bundles *x509bundle.Set
	updated chan struct{}
}

func (f *fakeSource) GetX509SVID() (*x509svid.SVID, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.svid, f.err
}

func (f *fakeSource) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	return f.bundles.GetX509BundleForTrustDomain(td)
}
func (f *fakeSource) Updated() <-chan struct{} { return f.updated }
func (f *fakeSource) Close() error             { return nil }

func svidOf(t *testing.T, ca *xdstest.CA, id string) *x509svid.SVID {
	leaf := ca.Issue(t, xdstest.LeafOptions{URIs: []string{id}, Server: true, Client: true})
	return &x509svid.SVID{ID: spiffeid.RequireFromString(id), Certificates: []*x509.Certificate{leaf.Cert}, PrivateKey: leaf.TLS.PrivateKey.(crypto.Signer)}
}

func newTestSPIFFETLS(t *testing.T) (*SPIFFETLS, *fakeSource, *xdstest.CA) {
	ca := xdstest.NewCA(t, "spiffe ca")
	td := spiffeid.RequireTrustDomainFromString("tollgate.test")
	src := &fakeSource{
		svid:    svidOf(t, ca, "spiffe://tollgate.test/tollgate"),
		bundles: x509bundle.NewSet(x509bundle.FromX509Authorities(td, []*x509.Certificate{ca.Cert})),
		updated: make(chan struct{}, 1),
	}
	s := &SPIFFETLS{log: slogDiscard(), now: time.Now}
	require.NoError(t, s.init(src, []spiffeid.TrustDomain{spiffeid.RequireTrustDomainFromString("other.test")}))
	return s, src, ca
}

func TestSPIFFETLSConditions(t *testing.T) {
	s, src, _ := newTestSPIFFETLS(t)
	leaf := s.last.Certificates[0] // valid from 1h ago for 25h
	for _, tc := range []struct {
		name   string
		now    time.Time
		err    error
		status bool
		reason string
		msg    string
	}{
		{"fresh", time.Now(), nil, true, ReasonSVIDValid, "SVID spiffe://tollgate.test/tollgate (serial "},
		{"under a sixth left", leaf.NotAfter.Add(-4 * time.Hour), nil, false, ReasonSVIDExpiringSoon, "has 4h0m0s of its 25h0m0s lifetime left and was not rotated"},
		{"expired", leaf.NotAfter, nil, false, ReasonSVIDExpired, "has expired"},
		{"workload api down", time.Now(), errors.New("connection refused"), false, ReasonWorkloadAPIUnavailable, "the Workload API failed (connection refused); still serving the last good SVID"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s.now = func() time.Time { return tc.now }
			s.watchFailed(tc.err)
			c := s.Conditions()
			require.Len(t, c, 1)
			require.Equal(t, SVIDObject, c[0].Object)
			require.Equal(t, ConditionSVIDReady, c[0].Type)
			require.Equal(t, tc.status, c[0].Status)
			require.Equal(t, tc.reason, c[0].Reason)
			require.Contains(t, c[0].Message, tc.msg)
		})
	}

	// The Workload API losing the SVID keeps the last good one in use.
	s.now = time.Now
	src.mu.Lock()
	src.svid, src.err = nil, errors.New("source is closed")
	src.mu.Unlock()
	require.Equal(t, leaf, s.current().Certificates[0])
}

// A client SVID must chain to the bundle of its own trust domain: a CA
// trusted for one trust domain cannot vouch for another (other.test is
// accepted, but its bundle is not the tollgate.test CA).
func TestSPIFFETLSHandshake(t *testing.T) {
	s, src, ca := newTestSPIFFETLS(t)
	lis, err := tls.Listen("tcp", "127.0.0.1:0", s.Config())
	require.NoError(t, err)
	defer lis.Close()
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	dial := func(id string) (*tls.ConnectionState, error) {
		cfg := tlsconfig.MTLSClientConfig(svidOf(t, ca, id), src.bundles, tlsconfig.AuthorizeID(spiffeid.RequireFromString("spiffe://tollgate.test/tollgate")))
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", lis.Addr().String(), cfg)
		if err != nil {
			return nil, err
		}
		defer conn.Close()
		// TLS 1.3: the server's verdict on the client arrives with the first read.
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = conn.Read(make([]byte, 1))
		st := conn.ConnectionState()
		if err != nil && !errors.Is(err, net.ErrClosed) && err.Error() != "EOF" {
			return &st, err
		}
		return &st, nil
	}
	st, err := dial("spiffe://tollgate.test/gateway/egress/vm-1")
	require.NoError(t, err)
	require.Equal(t, "spiffe://tollgate.test/tollgate", st.PeerCertificates[0].URIs[0].String())

	_, err = dial("spiffe://other.test/gateway/egress/vm-1")
	require.ErrorContains(t, err, "bad certificate")
}
