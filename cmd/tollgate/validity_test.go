package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// tollgate validate serves a policy whose certificates are out of date, and
// prints its CertificatesValid condition as a note.
func TestValidateNotesExpiredCertificates(t *testing.T) {
	dir := t.TempDir()
	in := "../../translate/testdata/in"
	copyValidityFixture(t, filepath.Join(in, "hardening-cert-validity.yaml"), filepath.Join(dir, "policies.yaml"))
	for _, f := range []string{"validity-bundle.pem", "expired-client.pem", "expired-client.key"} {
		copyValidityFixture(t, filepath.Join(in, "certs", f), filepath.Join(dir, "certs", f))
	}
	code, out, errOut := cli(t, "validate", dir)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "note: BackendTLSPolicy/partner-tls: CertificatesValid=False CertificateExpired: ")
	require.Contains(t, out, `CA certificate 2 "CN=tollgate expired test CA" expired on 2021-01-01T00:00:00Z`)
	require.Contains(t, out, `the client certificate "CN=egress-gateway (expired)" expired on 2021-01-01T00:00:00Z`)
	require.NotContains(t, out, "PRIVATE KEY")
}

func copyValidityFixture(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(filepath.Dir(to), 0o755))
	require.NoError(t, os.WriteFile(to, data, 0o600))
}
