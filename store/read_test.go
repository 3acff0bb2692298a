package store_test

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/policies"
	"github.com/tollgate-dev/tollgate/store"
)

func mkfifo(t *testing.T, path string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, syscall.Mkfifo(path, 0o600))
}

// A FIFO named like a policy file would block the reader forever (nobody
// writes to it); it is skipped with a warning, and everything else loads.
func TestLoadSkipsAFIFOInThePolicyDirectoryWithAWarning(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "base.yaml"), gateway+"---\n"+backend("openai")+"---\n"+route("r", "openai"))
	fifo := filepath.Join(dir, "pipe.yaml")
	mkfifo(t, fifo)
	require.NoError(t, os.Symlink(fifo, filepath.Join(dir, "link-to-pipe.yaml")))
	src := store.NewFileSource(dir, policies.NewScheme(), nil)
	objs, errs, err := src.Load()
	require.NoError(t, err)
	require.Empty(t, errs)
	require.Len(t, objs, 3)
	require.Equal(t, []string{
		filepath.Join(dir, "link-to-pipe.yaml") + ": skipped: it is a named pipe (FIFO), not a regular file",
		fifo + ": skipped: it is a named pipe (FIFO), not a regular file",
	}, src.Warnings())
}

// A secret path that is a FIFO or a device is a violation at its field,
// not a hang (FIFO) or an exhausted memory (/dev/zero).
func TestSecretPathThatIsNotARegularFileIsAViolation(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(t.TempDir(), "openai.key")
	mkfifo(t, fifo)
	write(t, filepath.Join(dir, "base.yaml"), gateway+"---\n"+backend("openai")+"---\n"+backend("gemini")+"---\n"+
		route("r", "openai")+"---\n"+route("g", "gemini")+"---\n"+injector("openai", "openai", fifo)+"---\n"+
		strings.Replace(injector("gemini", "gemini", "/dev/zero"), "apiKey: {", "apiKey: {preset: gemini, ", 1))
	st, err := store.New(store.Options{})
	require.NoError(t, err)
	err = store.NewFileSource(dir, policies.NewScheme(), nil).Sync(st)
	vs, ok := model.AsViolations(err)
	require.True(t, ok, "%v", err)
	var msgs []string
	for _, v := range vs {
		msgs = append(msgs, v.Object+": "+v.Field+": "+v.Msg)
	}
	require.Equal(t, []string{
		"CredentialInjector/openai: spec.apiKey.secret.file: cannot read " + fifo + ": a named pipe (FIFO), not a regular file",
		"CredentialInjector/gemini: spec.apiKey.secret.file: cannot read /dev/zero: a device, not a regular file",
	}, msgs)
}

func TestPolicyFileOverTheSizeLimitIsRefusedUnread(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big.yaml")
	f, err := os.Create(big)
	require.NoError(t, err)
	require.NoError(t, f.Truncate(50<<20)) // sparse: 50 MB on paper
	require.NoError(t, f.Close())
	_, errs, err := store.NewFileSource(dir, policies.NewScheme(), nil).Load()
	require.NoError(t, err)
	require.Equal(t, big+": is larger than 4 MiB, the most a policy file may hold: split it into several files", errs.Error())
}
