package store_test

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// noQuietPeriod is a debounce no test waits for: a change applied under it
// was applied because its save was known to be complete.
const noQuietPeriod = time.Hour

// TestCompleteSavesAreServedWithoutQuietPeriod saves in every complete way
// with a debounce of an hour: renamed into place, written in place and
// closed, a symbolic link swapped; each is applied. A file still open for
// writing is not, until it is closed; a hidden editor file kept open does
// not hold the others.
func TestCompleteSavesAreServedWithoutQuietPeriod(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("only inotify tells when a write is complete")
	}
	dir := t.TempDir()
	write(t, filepath.Join(dir, "gateway.yaml"), gateway+"---\n"+backend("openai"))
	write(t, filepath.Join(dir, "routes.yaml"), route("a", "openai"))
	w := watchWith(t, dir, noQuietPeriod)

	// An editor's swap file, open for writing all along.
	swap, err := os.Create(filepath.Join(dir, ".routes.yaml.swp"))
	require.NoError(t, err)
	defer swap.Close()
	_, err = swap.WriteString("unsaved")
	require.NoError(t, err)

	// Renamed into place.
	tmp := filepath.Join(dir, ".routes.yaml.tmp")
	write(t, tmp, route("a", "openai")+"---\n"+route("b", "openai"))
	require.NoError(t, os.Rename(tmp, filepath.Join(dir, "routes.yaml")))
	w.until(t, applied)
	require.Equal(t, []string{"a", "b"}, w.routes())

	// Written in place and closed (os.WriteFile: open, truncate, write,
	// close).
	require.NoError(t, os.WriteFile(filepath.Join(dir, "routes.yaml"), []byte(route("c", "openai")), 0o644))
	w.until(t, applied)
	require.Equal(t, []string{"c"}, w.routes())

	// Open for writing: not served while open, even when what it holds so
	// far would be valid.
	f, err := os.OpenFile(filepath.Join(dir, "more.yaml"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	require.NoError(t, err)
	_, err = f.WriteString(route("d", "openai"))
	require.NoError(t, err)
	select {
	case err := <-w.results:
		t.Fatalf("a file still open for writing was loaded (%v)", err)
	case <-time.After(300 * time.Millisecond):
	}
	_, err = f.WriteString("---\n" + route("e", "openai"))
	require.NoError(t, err)
	require.NoError(t, f.Close())
	w.until(t, applied)
	require.Equal(t, []string{"c", "d", "e"}, w.routes())

	// Removed.
	require.NoError(t, os.Remove(filepath.Join(dir, "more.yaml")))
	w.until(t, applied)
	require.Equal(t, []string{"c"}, w.routes())
}

// TestSwappedSecretIsServedWithoutQuietPeriod swaps a key file the way
// secret managers do (a new version in a hidden directory, then a symbolic
// link renamed over the old one): complete, so applied at once.
func TestSwappedSecretIsServedWithoutQuietPeriod(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("only inotify tells when a write is complete")
	}
	dir, secrets := t.TempDir(), t.TempDir()
	write(t, filepath.Join(secrets, "..v1", "openai.key"), "sk-test-one")
	require.NoError(t, os.Symlink("..v1", filepath.Join(secrets, "..data")))
	require.NoError(t, os.Symlink(filepath.Join("..data", "openai.key"), filepath.Join(secrets, "openai.key")))
	write(t, filepath.Join(dir, "gateway.yaml"), gateway+"---\n"+backend("openai")+"---\n"+route("a", "openai")+"---\n"+
		"apiVersion: tollgate.dev/v1alpha1\nkind: CredentialInjector\nmetadata: {name: key}\n"+
		"spec:\n  targetRefs: [{kind: Backend, name: openai}]\n  apiKey: {secret: {file: "+filepath.Join(secrets, "openai.key")+"}}\n")
	w := watchWith(t, dir, noQuietPeriod)
	key := func() string {
		for _, b := range w.st.Config().Backends {
			if b.Credential != nil {
				return string(b.Credential.Secret)
			}
		}
		return ""
	}
	require.Equal(t, "sk-test-one", key())

	write(t, filepath.Join(secrets, "..v2", "openai.key"), "sk-test-two")
	require.NoError(t, os.Symlink("..v2", filepath.Join(secrets, "..data_tmp")))
	require.NoError(t, os.Rename(filepath.Join(secrets, "..data_tmp"), filepath.Join(secrets, "..data")))
	require.Eventually(t, func() bool {
		select {
		case <-w.results:
		default:
		}
		return key() == "sk-test-two"
	}, 10*time.Second, 10*time.Millisecond)
}
