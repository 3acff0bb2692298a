package main

import (
	"runtime/debug"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func vcsInfo(mainVersion string, settings ...string) *debug.BuildInfo {
	bi := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/tollgate-dev/tollgate", Version: mainVersion}}
	for i := 0; i+1 < len(settings); i += 2 {
		bi.Settings = append(bi.Settings, debug.BuildSetting{Key: settings[i], Value: settings[i+1]})
	}
	return bi
}

func TestVersionStamped(t *testing.T) {
	// make dist's -ldflags win over the build information.
	b := buildFrom("v1.2.3-4-gabcdef0-dirty", "abcdef0123456789abcdef0123456789abcdef01", "2026-01-02T03:04:05Z",
		vcsInfo("v0.0.0-20260101000000-111111111111+dirty", "vcs.revision", "1111111111111111111111111111111111111111", "vcs.time", "2026-01-01T00:00:00Z", "vcs.modified", "true"))
	require.Equal(t, "v1.2.3-4-gabcdef0-dirty", b.Version)
	require.Equal(t, "abcdef0123456789abcdef0123456789abcdef01", b.Commit)
	require.Equal(t, "2026-01-02T03:04:05Z", b.Date)
	require.False(t, b.Modified, "vcs.modified belongs to the build information's revision, not the stamped one")
	require.Equal(t, "v1.2.3-4-gabcdef0-dirty (abcdef012345)", b.short())
	var out strings.Builder
	require.NoError(t, b.write(&out))
	require.Equal(t, "tollgate v1.2.3-4-gabcdef0-dirty\ncommit: abcdef0123456789abcdef0123456789abcdef01\ndate: 2026-01-02T03:04:05Z\ngo: go1.26.8\nplatform: "+b.Platform+"\n", out.String())
}

func TestVersionFromBuildInfo(t *testing.T) {
	// go build in a checkout: the module version derived from VCS, vcs.*.
	b := buildFrom("", "", "", vcsInfo("v0.0.0-20260101000000-111111111111+dirty",
		"-trimpath", "true", "vcs", "git", "vcs.revision", "1111111111111111111111111111111111111111", "vcs.time", "2026-01-01T00:00:00Z", "vcs.modified", "true"))
	require.Equal(t, buildInfo{Version: "v0.0.0-20260101000000-111111111111+dirty", Commit: "1111111111111111111111111111111111111111",
		Date: "2026-01-01T00:00:00Z", Modified: true, GoVersion: "go1.26.8", Platform: b.Platform}, b)
	require.Equal(t, "v0.0.0-20260101000000-111111111111+dirty (111111111111, modified)", b.short())
	var out strings.Builder
	require.NoError(t, b.write(&out))
	require.Contains(t, out.String(), "\ncommit: 1111111111111111111111111111111111111111 (modified)\ndate: 2026-01-01T00:00:00Z\n")

	// go install module@v1.4.0: a module version, no VCS.
	b = buildFrom("", "", "", vcsInfo("v1.4.0"))
	require.Equal(t, "v1.4.0", b.Version)
	require.Equal(t, "v1.4.0", b.short())

	// go run, go test, -buildvcs=false: nothing known.
	b = buildFrom("", "", "", vcsInfo("(devel)"))
	require.Equal(t, "dev", b.Version)
	out.Reset()
	require.NoError(t, b.write(&out))
	require.True(t, strings.HasPrefix(out.String(), "tollgate dev\ncommit: unknown\ndate: unknown\ngo: go1.26.8\n"), out.String())

	// No build information at all.
	b = buildFrom("", "", "", nil)
	require.Equal(t, "dev", b.Version)
	require.NotEmpty(t, b.GoVersion)
}

func TestVersionCommand(t *testing.T) {
	code, out, _ := cli(t, "version")
	require.Equal(t, 0, code)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	require.Len(t, lines, 5, out)
	for i, prefix := range []string{"tollgate ", "commit: ", "date: ", "go: go", "platform: "} {
		require.True(t, strings.HasPrefix(lines[i], prefix), "line %d: %q", i, lines[i])
	}
}
