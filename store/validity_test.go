package store_test

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
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tollgate-dev/tollgate/policies"
	"github.com/tollgate-dev/tollgate/store"
)

func year(y int) time.Time { return time.Date(y, 1, 1, 0, 0, 0, 0, time.UTC) }

// writeDatedPKI writes a CA valid 2028–2032 and its CRL, next updated in
// 2030, to dir.
func writeDatedPKI(t *testing.T, dir string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "dated test CA"},
		NotBefore: year(2028), NotAfter: year(2032),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	require.NoError(t, err)
	ca, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	crl, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(1), ThisUpdate: year(2028), NextUpdate: year(2030)}, ca, k)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "ca.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "crl.pem"), pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: crl}), 0o644))
}

// The store judges certificates and CRLs by its injected clock: an expired
// CRL refuses the change, a CA outside its validity period is served with a
// CertificatesValid=False condition on /status/policies.
func TestStoreJudgesCertificateValidityByItsClock(t *testing.T) {
	dir := t.TempDir()
	writeDatedPKI(t, dir)
	file := filepath.Join(dir, "policies.yaml")
	data := []byte(gateway + "---\n" +
		"apiVersion: tollgate.dev/v1alpha1\nkind: Backend\nmetadata: {name: partner}\nspec: {hostname: api.partner.example}\n---\n" +
		route("r", "partner") + "---\n" +
		"apiVersion: tollgate.dev/v1alpha1\nkind: BackendTLSPolicy\nmetadata: {name: partner-tls}\n" +
		"spec:\n  targetRefs: [{kind: Backend, name: partner}]\n  caCertificates: {file: ca.pem}\n  crl: {file: crl.pem}\n")
	objs, errs := policies.NewScheme().Decode(file, data)
	require.Empty(t, errs)

	for _, tc := range []struct {
		name   string
		now    time.Time
		err    string // substring of the refusal; "" means accepted
		reason string // of the CertificatesValid condition; "" means none
	}{
		{name: "not yet valid CA", now: year(2027), reason: "CertificateNotYetValid"},
		{name: "all valid", now: year(2029)},
		{name: "expired CRL", now: year(2031), err: file + ":25: BackendTLSPolicy/partner-tls: spec.crl.file: crl.pem: the CRL issued by \"CN=dated test CA\" expired on 2030-01-01T00:00:00Z (its nextUpdate)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := store.New(store.Options{Now: func() time.Time { return tc.now }})
			require.NoError(t, err)
			cfg, err := st.Replace("test", objs, nil)
			status := st.Status()
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				require.False(t, status.Applied)
				require.NotEmpty(t, status.Violations)
				return
			}
			require.NoError(t, err)
			var reasons []string
			for _, c := range status.Conditions {
				if c.Type == "CertificatesValid" {
					require.Equal(t, "BackendTLSPolicy/partner-tls", c.Object)
					require.False(t, c.Status)
					require.Contains(t, c.Message, `"CN=dated test CA"`)
					reasons = append(reasons, c.Reason)
				}
			}
			if tc.reason == "" {
				require.Empty(t, reasons)
			} else {
				require.Equal(t, []string{tc.reason}, reasons)
			}
			require.NotNil(t, cfg.Backends[0].TLSPolicy, "served despite the condition")
		})
	}
}
