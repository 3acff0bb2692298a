// Package xdstest makes throwaway certificate authorities and certificates
// for tests of tollgate's authenticated xDS. Nothing it makes is fit for
// anything but a test.
package xdstest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

var serial atomic.Int64

// CA is a certificate authority.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
	// PEM is the CA certificate, PEM-encoded.
	PEM []byte
}

// Leaf is a certificate issued by a CA and its key.
type Leaf struct {
	Cert *x509.Certificate
	// CertPEM and KeyPEM are the certificate and its PKCS#8 key,
	// PEM-encoded.
	CertPEM, KeyPEM []byte
	TLS             tls.Certificate
}

// LeafOptions describe a certificate to issue.
type LeafOptions struct {
	CommonName string
	DNSNames   []string
	IPs        []net.IP
	// URIs are URI SANs, e.g. SPIFFE IDs.
	URIs []string
	// Server and Client select the extended key usages.
	Server, Client bool
}

// NewCA makes a self-signed CA.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial.Add(1)),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"tollgate tests"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatalf("xdstest: create CA: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("xdstest: parse CA: %v", err)
	}
	return &CA{Cert: cert, Key: key, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// Pool is a pool holding only the CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// Issue makes a certificate signed by the CA.
func (ca *CA) Issue(t testing.TB, o LeafOptions) *Leaf {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)),
		Subject:      pkix.Name{CommonName: o.CommonName},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		DNSNames:     o.DNSNames,
		IPAddresses:  o.IPs,
	}
	for _, u := range o.URIs {
		parsed, err := url.Parse(u)
		if err != nil {
			t.Fatalf("xdstest: URI SAN %q: %v", u, err)
		}
		tmpl.URIs = append(tmpl.URIs, parsed)
	}
	if o.Server {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	if o.Client {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		t.Fatalf("xdstest: issue %s: %v", o.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("xdstest: parse %s: %v", o.CommonName, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatalf("xdstest: marshal key: %v", err)
	}
	l := &Leaf{
		Cert:    cert,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}
	l.TLS, err = tls.X509KeyPair(l.CertPEM, l.KeyPEM)
	if err != nil {
		t.Fatalf("xdstest: key pair: %v", err)
	}
	return l
}

// Server issues a server certificate for 127.0.0.1, ::1 and localhost.
func (ca *CA) Server(t testing.TB, name string) *Leaf {
	t.Helper()
	return ca.Issue(t, LeafOptions{
		CommonName: name,
		DNSNames:   []string{"localhost"},
		IPs:        []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		Server:     true,
	})
}

// Client issues a client certificate with the given URI SANs and DNS SANs.
func (ca *CA) Client(t testing.TB, uris []string, dnsNames []string) *Leaf {
	t.Helper()
	name := "client"
	if len(uris) > 0 {
		name = uris[0]
	} else if len(dnsNames) > 0 {
		name = dnsNames[0]
	}
	return ca.Issue(t, LeafOptions{CommonName: name, URIs: uris, DNSNames: dnsNames, Client: true})
}

// ClientTLS is the TLS configuration of a client that trusts ca and, if
// leaf is not nil, presents it. Like Envoy, and unlike Go's default, it
// presents its certificate even when the server lists other CAs as
// acceptable, so that a server's verification can be tested.
func ClientTLS(ca *CA, leaf *Leaf) *tls.Config {
	cfg := &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}
	if leaf != nil {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &leaf.TLS, nil
		}
	}
	return cfg
}

// WriteFile writes data to dir/name atomically (write and rename, as
// certificate rotation tools do) and returns the path.
func WriteFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	tmp, err := os.CreateTemp(dir, "."+name+".*")
	if err != nil {
		t.Fatalf("xdstest: %v", err)
	}
	if _, err := tmp.Write(data); err != nil {
		t.Fatalf("xdstest: %v", err)
	}
	if err := tmp.Close(); err != nil {
		t.Fatalf("xdstest: %v", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		t.Fatalf("xdstest: %v", err)
	}
	return path
}

// Files are the PEM files of a tollgate xDS server: its certificate and
// key, and the CA bundle client certificates must chain to.
type Files struct{ Cert, Key, ClientCA string }

// WriteServerFiles writes server's certificate and key and clientCA's
// certificate into dir.
func WriteServerFiles(t testing.TB, dir string, server *Leaf, clientCA *CA) Files {
	t.Helper()
	return Files{
		Cert:     WriteFile(t, dir, "server.crt", server.CertPEM),
		Key:      WriteFile(t, dir, "server.key", server.KeyPEM),
		ClientCA: WriteFile(t, dir, "client-ca.crt", clientCA.PEM),
	}
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("xdstest: generate key: %v", err)
	}
	return key
}
