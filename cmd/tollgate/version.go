package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version, commit and date are stamped by `make dist` (and `make build`
// users who want them) with
//
//	-ldflags "-X main.version=v1.2.3 -X main.commit=<sha> -X main.date=<RFC 3339>"
//
// Left empty, they come from the binary's build information instead (see
// buildFrom): enough for `go install …@version` and a plain `go build`
// in a checkout.
var (
	version string
	commit  string
	date    string
)

// buildInfo is what `tollgate version` prints.
type buildInfo struct {
	Version string // v1.2.3, a git describe, or "dev"
	Commit  string // full revision, or "" when unknown
	// Date is the build date stamped by make dist (SOURCE_DATE_EPOCH, by
	// default the last commit's time) or, from the build information,
	// the commit's time; "" when unknown.
	Date string
	// Modified reports a build from a work tree with uncommitted changes
	// (only known from the build information; make dist's version says
	// -dirty instead).
	Modified  bool
	GoVersion string
	Platform  string
}

// currentBuild is this binary's buildInfo.
func currentBuild() buildInfo {
	bi, _ := debug.ReadBuildInfo() // nil when the binary has none
	return buildFrom(version, commit, date, bi)
}

// buildFrom prefers the stamped values and falls back, one by one, to the
// build information Go records: the main module's version (set by `go
// install module@version`, or derived from VCS tags by `go build` in a
// checkout; "(devel)" otherwise) and the vcs.* settings (absent with
// -buildvcs=false, `go run` and `go test`).
func buildFrom(version, commit, date string, bi *debug.BuildInfo) buildInfo {
	b := buildInfo{Version: version, Commit: commit, Date: date, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi != nil {
		if bi.GoVersion != "" {
			b.GoVersion = bi.GoVersion
		}
		if b.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			b.Version = bi.Main.Version
		}
		stamped := commit != ""
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if b.Commit == "" {
					b.Commit = s.Value
				}
			case "vcs.time":
				if b.Date == "" {
					b.Date = s.Value
				}
			case "vcs.modified":
				// Only meaningful for the revision it came with.
				b.Modified = !stamped && s.Value == "true"
			}
		}
	}
	if b.Version == "" {
		b.Version = "dev"
	}
	return b
}

// short is the version and abbreviated commit, for log lines.
func (b buildInfo) short() string {
	s := b.Version
	if c := b.Commit; c != "" {
		if len(c) > 12 {
			c = c[:12]
		}
		if b.Modified {
			c += ", modified"
		}
		s += " (" + c + ")"
	}
	return s
}

// write prints the version, then one "key: value" line per known field.
func (b buildInfo) write(w io.Writer) error {
	orUnknown := func(s string) string {
		if s == "" {
			return "unknown"
		}
		return s
	}
	c := orUnknown(b.Commit)
	if b.Modified {
		c += " (modified)"
	}
	_, err := fmt.Fprintf(w, "tollgate %s\ncommit: %s\ndate: %s\ngo: %s\nplatform: %s\n",
		b.Version, c, orUnknown(b.Date), b.GoVersion, b.Platform)
	return err
}

// versionString is the version logged at start-up.
func versionString() string { return currentBuild().short() }

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print tollgate's version, commit and build date",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return currentBuild().write(cmd.OutOrStdout())
		},
	}
}
