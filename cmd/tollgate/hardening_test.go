package main

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestValidateRefusesAFileArgument(t *testing.T) {
	code, out, errOut := cli(t, "validate", "../../examples/quickstart/policies.yaml")
	require.Equal(t, 1, code)
	require.Empty(t, out)
	require.Contains(t, errOut, "../../examples/quickstart/policies.yaml is a file, not a directory: give the directory that holds it")
}

func TestValidateRefusesAnEmptyDirectory(t *testing.T) {
	dir := t.TempDir()
	code, out, errOut := cli(t, "validate", dir)
	require.Equal(t, 1, code)
	require.Empty(t, out)
	require.Contains(t, errOut, dir+" holds no policy objects: add *.yaml files with at least a Gateway (or check the path)")
}

func TestServeRefusesToStartOnAnEmptyDirectory(t *testing.T) {
	code, _, errOut := cli(t, "serve", "--policies", t.TempDir(), "--xds-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "holds no policy objects")
}

// A FIFO in the policy directory used to hang validate forever.
func TestValidateWarnsAboutAFIFOAndFinishes(t *testing.T) {
	dir := t.TempDir()
	data, err := os.ReadFile("../../examples/quickstart/policies.yaml")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "policies.yaml"), data, 0o644))
	require.NoError(t, syscall.Mkfifo(filepath.Join(dir, "pipe.yaml"), 0o600))
	code, out, errOut := cli(t, "validate", dir)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, ": ok, 3 objects")
	require.Equal(t, "warning: "+filepath.Join(dir, "pipe.yaml")+": skipped: it is a named pipe (FIFO), not a regular file\n", errOut)
}
