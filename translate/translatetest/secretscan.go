package translatetest

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// SecretForm is one way a secret can be written in tollgate's outputs.
type SecretForm struct {
	// Name says which encoding, for failure messages.
	Name string
	// Text is what to search for.
	Text string
}

// minFragment is the shortest line of a multi-line secret (a PEM body)
// searched for on its own: shorter ones would match by chance.
const minFragment = 40

// SecretForms lists every form secret can take in what tollgate writes:
// as is; each long line of a multi-line secret (a PEM key's body); base64
// in the standard and URL alphabets, padded and raw, also where the secret
// is part of a longer byte string (protojson and slog's JSON handler write
// []byte and proto bytes fields that way); JSON- and Go-quoted (protojson
// and slog's JSON handler, slog's text handler and %q); and the decimal
// byte list fmt prints for a []byte.
//
// A secret that ends in a newline is also searched for without it, since
// key files usually end in one that the policy trims.
func SecretForms(secret []byte) []SecretForm {
	var out []SecretForm
	seen := map[string]bool{}
	add := func(name, text string) {
		if len(text) < 8 || seen[text] {
			return
		}
		seen[text] = true
		out = append(out, SecretForm{Name: name, Text: text})
	}
	values := [][]byte{secret}
	if trimmed := strings.TrimSpace(string(secret)); trimmed != string(secret) {
		values = append(values, []byte(trimmed))
	}
	for _, v := range values {
		s := string(v)
		add("plain", s)
		if strings.Contains(s, "\n") {
			for _, line := range strings.Split(s, "\n") {
				if line = strings.TrimSpace(line); len(line) >= minFragment {
					add("plain line", line)
				}
			}
		}
		for _, enc := range []struct {
			name string
			enc  *base64.Encoding
		}{
			{"base64", base64.StdEncoding},
			{"raw base64", base64.RawStdEncoding},
			{"URL base64", base64.URLEncoding},
			{"raw URL base64", base64.RawURLEncoding},
		} {
			add(enc.name, enc.enc.EncodeToString(v))
			// Inside a longer byte string the secret starts at any offset
			// modulo 3; its encoding then holds a stable middle part.
			for pad := 0; pad < 3; pad++ {
				add(enc.name+" (embedded)", embeddedBase64(enc.enc, v, pad))
			}
		}
		if js, err := json.Marshal(s); err == nil {
			add("JSON string", strings.Trim(string(js), `"`))
		}
		add("Go quoted", strings.Trim(strconv.Quote(s), `"`))
		add("byte list", strings.Trim(fmt.Sprint(v), "[]"))
	}
	return out
}

// embeddedBase64 is the part of the base64 encoding of pad bytes, then
// secret, then more bytes, that depends on secret alone.
func embeddedBase64(enc *base64.Encoding, secret []byte, pad int) string {
	if len(secret) < 6 {
		return ""
	}
	buf := append(make([]byte, pad), secret...)
	// Whole 3-byte groups made of secret bytes only.
	start := (pad + 2) / 3 * 3
	end := len(buf) / 3 * 3
	if end-start < 3 {
		return ""
	}
	return enc.EncodeToString(buf[start:end]) // whole groups: no padding
}

// FindSecret returns the first form of secret that text holds.
func FindSecret(text string, secret []byte) (SecretForm, bool) {
	for _, f := range SecretForms(secret) {
		if strings.Contains(text, f.Text) {
			return f, true
		}
	}
	return SecretForm{}, false
}
