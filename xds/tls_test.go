package xds_test

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tollgate-dev/tollgate/xds"
	"github.com/tollgate-dev/tollgate/xds/xdstest"
)

// handshake runs one TLS handshake over loopback TCP between server and
// client and returns the certificate the client saw and the server's
// verdict.
func handshake(t *testing.T, server, client *tls.Config) (*x509.Certificate, error) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer lis.Close()
	serverErr := make(chan error, 1)
	go func() {
		conn, err := lis.Accept()
		if err != nil {
			serverErr <- err
			return
		}
		defer conn.Close()
		serverErr <- tls.Server(conn, server).HandshakeContext(t.Context())
	}()
	conn, err := tls.Dial("tcp", lis.Addr().String(), client)
	var leaf *x509.Certificate
	if err == nil {
		leaf = conn.ConnectionState().PeerCertificates[0]
		defer conn.Close()
	}
	return leaf, <-serverErr
}

func TestNewServerTLSErrorsNameTheFile(t *testing.T) {
	ca := xdstest.NewCA(t, "ca")
	dir := t.TempDir()
	good := xdstest.WriteServerFiles(t, dir, ca.Server(t, "tollgate"), ca)
	other := ca.Server(t, "other")
	otherKey := xdstest.WriteFile(t, dir, "other.key", other.KeyPEM)
	garbage := xdstest.WriteFile(t, dir, "garbage.pem", []byte("not a certificate\n"))
	missing := filepath.Join(dir, "missing.pem")

	for name, tc := range map[string]struct {
		files xds.TLSFiles
		want  []string
	}{
		"missing cert":   {xds.TLSFiles{Cert: missing, Key: good.Key, ClientCA: good.ClientCA}, []string{"xDS server certificate", missing, "no such file"}},
		"missing key":    {xds.TLSFiles{Cert: good.Cert, Key: missing, ClientCA: good.ClientCA}, []string{"xDS server key", missing}},
		"missing CA":     {xds.TLSFiles{Cert: good.Cert, Key: good.Key, ClientCA: missing}, []string{"xDS client CA bundle", missing}},
		"garbage CA":     {xds.TLSFiles{Cert: good.Cert, Key: good.Key, ClientCA: garbage}, []string{"xDS client CA bundle " + garbage + ": no PEM-encoded certificate found"}},
		"garbage cert":   {xds.TLSFiles{Cert: garbage, Key: good.Key, ClientCA: good.ClientCA}, []string{"xDS server certificate " + garbage + " with key " + good.Key}},
		"mismatched key": {xds.TLSFiles{Cert: good.Cert, Key: otherKey, ClientCA: good.ClientCA}, []string{good.Cert, otherKey, "private key does not match public key"}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := xds.NewServerTLS(tc.files, nil)
			require.Error(t, err)
			for _, want := range tc.want {
				require.ErrorContains(t, err, want)
			}
		})
	}
}

func TestServerTLSReloadsRotatedFiles(t *testing.T) {
	ca := xdstest.NewCA(t, "ca")
	dir := t.TempDir()
	files := xdstest.WriteServerFiles(t, dir, ca.Server(t, "tollgate-1"), ca)
	logs := &syncBuffer{}
	cfg, err := xds.NewServerTLS(xds.TLSFiles(files), slogText(logs))
	require.NoError(t, err)
	require.Equal(t, uint16(tls.VersionTLS12), cfg.MinVersion)
	require.Equal(t, tls.RequireAndVerifyClientCert, cfg.ClientAuth)
	client := ca.Client(t, []string{egressID}, nil)

	leaf, err := handshake(t, cfg, xdstest.ClientTLS(ca, client))
	require.NoError(t, err)
	require.Equal(t, "tollgate-1", leaf.Subject.CommonName)

	// A rotated certificate and key are used by the next connection.
	second := ca.Server(t, "tollgate-2")
	xdstest.WriteFile(t, dir, "server.crt", second.CertPEM)
	xdstest.WriteFile(t, dir, "server.key", second.KeyPEM)
	leaf, err = handshake(t, cfg, xdstest.ClientTLS(ca, client))
	require.NoError(t, err)
	require.Equal(t, "tollgate-2", leaf.Subject.CommonName)
	require.Contains(t, logs.String(), "xDS TLS files changed; new connections use them")

	// Caught half-way, with the new certificate but the old key, the
	// rotation is logged once and the last good pair stays in use.
	third := ca.Server(t, "tollgate-3")
	xdstest.WriteFile(t, dir, "server.crt", third.CertPEM)
	for range 2 {
		leaf, err = handshake(t, cfg, xdstest.ClientTLS(ca, client))
		require.NoError(t, err)
		require.Equal(t, "tollgate-2", leaf.Subject.CommonName)
	}
	require.Equal(t, 1, strings.Count(logs.String(), "xDS TLS files changed but cannot be used"), logs.String())
	xdstest.WriteFile(t, dir, "server.key", third.KeyPEM)
	leaf, err = handshake(t, cfg, xdstest.ClientTLS(ca, client))
	require.NoError(t, err)
	require.Equal(t, "tollgate-3", leaf.Subject.CommonName)

	// An unreadable file keeps the last good configuration too.
	require.NoError(t, os.Remove(files.ClientCA))
	_, err = handshake(t, cfg, xdstest.ClientTLS(ca, client))
	require.NoError(t, err)
	xdstest.WriteFile(t, dir, "client-ca.crt", ca.PEM)

	// A new client CA: its clients are accepted, the old CA's refused.
	newCA := xdstest.NewCA(t, "new ca")
	xdstest.WriteFile(t, dir, "client-ca.crt", newCA.PEM)
	_, err = handshake(t, cfg, xdstest.ClientTLS(ca, client))
	require.ErrorContains(t, err, "certificate signed by unknown authority")
	_, err = handshake(t, cfg, xdstest.ClientTLS(ca, newCA.Client(t, []string{egressID}, nil)))
	require.NoError(t, err)

	// Neither TLS 1.1 nor a client without a certificate gets in.
	old := xdstest.ClientTLS(ca, client)
	old.MinVersion, old.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	_, err = handshake(t, cfg, old)
	require.Error(t, err)
	_, err = handshake(t, cfg, xdstest.ClientTLS(ca, nil))
	require.ErrorContains(t, err, "didn't provide a certificate")
}
