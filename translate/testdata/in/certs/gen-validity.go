//go:build ignore

// gen-validity regenerates the TEST-ONLY PKI of the certificate-validity
// goldens (hardening-crl-expired, hardening-cert-validity), whose dates are
// fixed so that the goldens' fixed clock (2027-01-01) sees them as expired
// or not yet valid:
//
//	expired-ca.pem      CA "tollgate expired test CA", 2020-01-01 – 2021-01-01
//	future-ca.pem       CA "tollgate future test CA", 2030-01-01 – 2130-01-01
//	validity-bundle.pem ca.pem, expired-ca.pem and future-ca.pem, in that order
//	expired-client.pem  leaf "egress-gateway (expired)", 2020-01-01 – 2021-01-01,
//	                    issued by the expired CA
//	expired-client.key  its key
//	crl-ca.pem          CA "tollgate CRL test CA", 2026-01-01 – 2126-01-01
//	expired-crl.pem     that CA's CRL, thisUpdate 2025-01-01, nextUpdate
//	                    2025-02-01 (revokes nothing)
//
// Run from the repository root:
//
//	go run translate/testdata/in/certs/gen-validity.go
//
// EC P-256 keys; every CA key is thrown away. Never trust these anywhere.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"time"
)

const dir = "translate/testdata/in/certs"

func date(y int) time.Time { return time.Date(y, 1, 1, 0, 0, 0, 0, time.UTC) }

func key() *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	check(err)
	return k
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	check(err)
	return n
}

type issued struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	der  []byte
}

// ca makes a self-signed CA.
func ca(cn string, from, to time.Time) issued {
	k := key()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             from,
		NotAfter:              to,
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	check(err)
	c, err := x509.ParseCertificate(der)
	check(err)
	return issued{c, k, der}
}

func write(name string, blocks ...*pem.Block) {
	var out []byte
	for _, b := range blocks {
		out = append(out, pem.EncodeToMemory(b)...)
	}
	check(os.WriteFile(filepath.Join(dir, name), out, 0o644))
}

func certBlock(der []byte) *pem.Block { return &pem.Block{Type: "CERTIFICATE", Bytes: der} }

func main() {
	expired := ca("tollgate expired test CA", date(2020), date(2021))
	future := ca("tollgate future test CA", date(2030), date(2130))
	write("expired-ca.pem", certBlock(expired.der))
	write("future-ca.pem", certBlock(future.der))
	base, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	check(err)
	b, _ := pem.Decode(base)
	write("validity-bundle.pem", b, certBlock(expired.der), certBlock(future.der))

	ck := key()
	leaf := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "egress-gateway (expired)"},
		NotBefore:    date(2020),
		NotAfter:     date(2021),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, leaf, expired.cert, &ck.PublicKey, expired.key)
	check(err)
	write("expired-client.pem", certBlock(der))
	kder, err := x509.MarshalECPrivateKey(ck)
	check(err)
	write("expired-client.key", &pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})

	crlCA := ca("tollgate CRL test CA", date(2026), date(2126))
	write("crl-ca.pem", certBlock(crlCA.der))
	crl, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:     big.NewInt(1000),
		ThisUpdate: date(2025),
		NextUpdate: date(2025).AddDate(0, 1, 0),
	}, crlCA.cert, crlCA.key)
	check(err)
	write("expired-crl.pem", &pem.Block{Type: "X509 CRL", Bytes: crl})
}

func check(err error) {
	if err != nil {
		panic(err)
	}
}
