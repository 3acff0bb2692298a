package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/viper"
	"github.com/stretchr/testify/require"
)

// cli runs tollgate with args and returns its exit code and output.
func cli(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestVersion(t *testing.T) {
	code, out, _ := cli(t, "version")
	require.Equal(t, 0, code)
	require.True(t, strings.HasPrefix(out, "tollgate "), out)
}

func TestValidateExample(t *testing.T) {
	code, out, errOut := cli(t, "validate", "../../examples/quickstart")
	require.Equal(t, 0, code, errOut)
	require.Equal(t, "../../examples/quickstart: ok, 3 objects (1 Backend, 1 Gateway, 1 HTTPRoute), 1 gateway(s)\n", out)
}

func TestValidateMissingDirectory(t *testing.T) {
	code, _, errOut := cli(t, "validate", filepath.Join(t.TempDir(), "nope"))
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "read policy directory")
}

func TestBootstrap(t *testing.T) {
	code, out, errOut := cli(t, "bootstrap", "--gateway", "egress", "--node-id", "vm-1", "--xds-addr", "10.0.0.1:18000")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, `cluster: "egress"`)
	require.Contains(t, out, `address: "10.0.0.1"`)

	code, _, errOut = cli(t, "bootstrap", "--node-id", "vm-1")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "--gateway is required")
}

func TestServeConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "tollgate.yaml")
	require.NoError(t, os.WriteFile(cfgFile, []byte("policies: /from/file\nxds-addr: 127.0.0.1:1111\nadmin-addr: 127.0.0.1:2222\n"), 0o644))
	t.Setenv("TOLLGATE_XDS_ADDR", "127.0.0.1:3333")

	v := viper.New()
	cmd := newServeCmdWith(v)
	require.NoError(t, cmd.ParseFlags([]string{"--config", cfgFile, "--admin-addr", "127.0.0.1:4444"}))
	cfg, err := loadServeConfig(v)
	require.NoError(t, err)
	require.Equal(t, "/from/file", cfg.Policies)                               // config file
	require.Equal(t, "127.0.0.1:3333", cfg.XDSAddr)                            // env beats file
	require.Equal(t, "127.0.0.1:4444", cfg.AdminAddr)                          // flag beats env and file
	require.Equal(t, "/etc/ssl/certs/ca-certificates.crt", cfg.SystemCABundle) // default
}

func TestServeRequiresPolicies(t *testing.T) {
	code, _, errOut := cli(t, "serve")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "--policies is required")
}

func TestServeRefusesInvalidPolicies(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "bad.yaml"), []byte("apiVersion: tollgate.dev/v1alpha1\nkind: Gateway\nmetadata: {name: g}\nspec: {listeners: [{name: h, port: 80, protocol: HTTP, tsl: true}]}\n"), 0o644))
	code, _, errOut := cli(t, "serve", "--policies", dir, "--xds-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "bad.yaml:4: Gateway/g: spec.listeners[0].tsl: unknown field \"tsl\"")
}

// TestValidateBrokenCorpus runs validate on a directory with one of each
// kind of mistake and expects every violation, with file and line, and exit
// code 1.
func TestValidateBrokenCorpus(t *testing.T) {
	want, err := os.ReadFile("testdata/broken/EXPECTED.txt")
	require.NoError(t, err)
	t.Chdir("testdata/broken")
	code, out, errOut := cli(t, "validate", ".")
	require.Equal(t, 1, code)
	require.Empty(t, out)
	lines := strings.Split(strings.TrimSpace(errOut), "\n")
	wantLines := strings.Split(strings.TrimSpace(string(want)), "\n")
	require.Equal(t, wantLines, lines[:len(lines)-1])
	require.Equal(t, "11 violation(s) in .", lines[len(lines)-1])
}

// TestExamples checks that every example is a complete policy set that
// validates and has a README (the API store example's objects for the API
// are checked by TestAPIStoreExample).
func TestExamples(t *testing.T) {
	dirs, err := filepath.Glob("../../examples/*")
	require.NoError(t, err)
	require.NotEmpty(t, dirs)
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			_, err := os.Stat(filepath.Join(dir, "README.md"))
			require.NoError(t, err, "every example needs a README.md")
			// An example with a policies/ folder keeps other files
			// (tollgate's config, objects for the API) beside it.
			if fi, err := os.Stat(filepath.Join(dir, "policies")); err == nil && fi.IsDir() {
				dir = filepath.Join(dir, "policies")
			}
			code, out, errOut := cli(t, "validate", dir)
			require.Equal(t, 0, code, errOut)
			require.Contains(t, out, "ok")
		})
	}
}
