package translatetest

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestFindSecretSeesEveryEncoding checks the scanner itself: a scan that
// cannot see a secret proves nothing when it finds none.
func TestFindSecretSeesEveryEncoding(t *testing.T) {
	secret := []byte("sk-FAKE-scanner-0123456789\n")
	var outputs []string
	for pad := 0; pad < 4; pad++ {
		b := append(append([]byte("prefix"[:pad]), secret...), "tail"...)
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
			outputs = append(outputs, enc.EncodeToString(b))
		}
		js, err := json.Marshal(map[string][]byte{"inline_bytes": b})
		require.NoError(t, err)
		outputs = append(outputs, string(js))
	}
	var text, js strings.Builder
	slog.New(slog.NewTextHandler(&text, nil)).Info("m", "bytes", secret)
	slog.New(slog.NewJSONHandler(&js, nil)).Info("m", "bytes", secret)
	outputs = append(outputs, text.String(), js.String(), fmt.Sprintf("%q", secret), fmt.Sprint(secret))
	pem := []byte("-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgFAKEFAKEFAKEFAKE\n-----END PRIVATE KEY-----\n")
	for _, out := range outputs {
		_, ok := FindSecret(out, secret)
		require.True(t, ok, "missed the secret in %s", out)
	}
	_, ok := FindSecret("the line MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgFAKEFAKEFAKEFAKE alone", pem)
	require.True(t, ok, "missed a PEM body line")
	f, ok := FindSecret("a log line with nothing secret in it, sk-FAKE-other", secret)
	require.False(t, ok, "false positive: %+v", f)
}
