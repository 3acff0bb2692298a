package model

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// What the YAML reader refuses without saying where gets a line (and a
// column where one exists).
func TestReaderErrorsNameTheLine(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"invalid UTF-8", "apiVersion: x\nkind: Backend\nmetadata: {name: \xff}\n",
			`policy.yaml:3: invalid YAML: byte 0xff at column 18 is not UTF-8: save the file as UTF-8`},
		{"NUL byte", "apiVersion: x\nkind: Backend\nmetadata: {name: a\x00}\n",
			`policy.yaml:3: invalid YAML: control character U+0000 at column 19: write it as an escape in a double-quoted string ("\x00") or remove it`},
		{"bell", "apiVersion: x\n\x07kind: Backend\n",
			`policy.yaml:2: invalid YAML: control character U+0007 at column 1: write it as an escape in a double-quoted string ("\x07") or remove it`},
		{"C1 control", "apiVersion: x\nkind: \u0090Backend\n",
			`policy.yaml:2: invalid YAML: control character U+0090 at column 7: write it as an escape in a double-quoted string ("\x90") or remove it`},
		{"UTF-16 BOM", "\xff\xfea\x00:\x00 \x00b\x00\n\x00",
			`policy.yaml:1: invalid YAML: the file is UTF-16 (it starts with a byte-order mark): save it as UTF-8`},
		{"UTF-32 BOM", "\x00\x00\xfe\xff",
			`policy.yaml:1: invalid YAML: the file is UTF-32 (it starts with a byte-order mark): save it as UTF-8`},
		{"unknown anchor", "apiVersion: x\nkind: &nopeX Backend\nmetadata: *nopeX\nspec: *nope\n",
			`policy.yaml:4: invalid YAML: unknown anchor 'nope' referenced`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, errs := decodeString(t, tc.yaml)
			require.Equal(t, []string{tc.want}, rendered(errs))
		})
	}
}

func TestReaderAcceptsTabsCRLFAndAUTF8BOM(t *testing.T) {
	objs, errs := decodeString(t, "\xef\xbb\xbfapiVersion: tollgate.dev/v1alpha1\r\nkind: Backend\r\nmetadata: {name: be}\r\nspec: {hostname: \"a\tb.internal\"}\r\n")
	require.Empty(t, objs)
	require.Equal(t, []string{`policy.yaml:4: Backend/be: spec.hostname: "a\tb.internal" must be a DNS name without scheme, port or wildcard`}, rendered(errs))
}
