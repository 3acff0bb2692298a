package store_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tollgate-dev/tollgate/model"
)

func injector(name, backend, secretFile string) string {
	return "apiVersion: tollgate.dev/v1alpha1\nkind: CredentialInjector\nmetadata: {name: " + name + "}\n" +
		"spec:\n  targetRefs: [{kind: Backend, name: " + backend + "}]\n  apiKey: {secret: {file: " + secretFile + "}}\n"
}

func credentialOf(t *testing.T, cfg *model.Config, backend string) string {
	t.Helper()
	for _, b := range cfg.Backends {
		if b.Ref.Name == backend && b.Credential != nil {
			return string(b.Credential.Secret)
		}
	}
	return ""
}

// A key file outside the policy directory is watched too: replacing it
// (atomically, as secret managers do) reloads the config with the new
// value, and a missing file is a violation that keeps the last good one.
func TestWatchFollowsSecretFilesOutsideThePolicyDirectory(t *testing.T) {
	dir, secrets := t.TempDir(), t.TempDir()
	key := filepath.Join(secrets, "openai.key")
	require.NoError(t, os.WriteFile(key, []byte("sk-FAKE-store-test-1\n"), 0o600))
	write(t, filepath.Join(dir, "base.yaml"), gateway+"---\n"+backend("openai")+"---\n"+route("r", "openai"))
	write(t, filepath.Join(dir, "cred.yaml"), injector("openai", "openai", key))
	w := watch(t, dir)
	require.Equal(t, "sk-FAKE-store-test-1", credentialOf(t, w.st.Config(), "openai"))
	require.Equal(t, []string{key}, w.st.MaterialFiles())

	tmp := filepath.Join(secrets, ".openai.key.tmp")
	require.NoError(t, os.WriteFile(tmp, []byte("sk-FAKE-store-test-2\n"), 0o600))
	require.NoError(t, os.Rename(tmp, key))
	w.until(t, func(err error) bool {
		return err == nil && credentialOf(t, w.st.Config(), "openai") == "sk-FAKE-store-test-2"
	})

	require.NoError(t, os.Remove(key))
	err := w.until(t, func(err error) bool { return err != nil })
	require.Contains(t, err.Error(), "spec.apiKey.secret.file: cannot read "+key+": no such file or directory")
	require.NotContains(t, err.Error(), "sk-FAKE-store-test")
	require.Equal(t, "sk-FAKE-store-test-2", credentialOf(t, w.st.Config(), "openai"), "last good config stays")
}

// Relative paths are relative to the policy file; an environment variable
// is read once per load.
func TestSecretSourcesRelativeAndEnv(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "team", "keys", "k"), "sk-FAKE-relative\n")
	write(t, filepath.Join(dir, "team", "policies.yaml"), gateway+"---\n"+backend("openai")+"---\n"+backend("gemini")+"---\n"+
		route("r", "openai")+"---\n"+route("g", "gemini")+"---\n"+injector("openai", "openai", "keys/k")+"---\n"+
		"apiVersion: tollgate.dev/v1alpha1\nkind: CredentialInjector\nmetadata: {name: gemini}\n"+
		"spec:\n  targetRefs: [{kind: Backend, name: gemini}]\n  apiKey: {preset: gemini, secret: {env: TOLLGATE_TEST_GEMINI_KEY}}\n")
	t.Setenv("TOLLGATE_TEST_GEMINI_KEY", "FAKE-gemini-from-env")
	w := watch(t, dir)
	cfg := w.st.Config()
	require.Equal(t, "sk-FAKE-relative", credentialOf(t, cfg, "openai"))
	require.Equal(t, "FAKE-gemini-from-env", credentialOf(t, cfg, "gemini"))
	for _, b := range cfg.Backends {
		if b.Ref.Name == "gemini" {
			require.Equal(t, "x-goog-api-key", b.Credential.Header)
		}
	}
}
