// Package deploy holds tollgate's release artefacts, not Go code: the
// systemd units (systemd/), the packaged default configuration
// (config.yaml), the nfpm configuration of the .deb and .rpm (nfpm.yaml) and
// their maintainer scripts (scripts/). Its tests check them: the units with
// systemd-analyze verify, the scripts in a sandbox, and a package built as
// make dist builds it, with dpkg-deb. `make dist` builds the artefacts and
// `make dist-check` runs the tests against its amd64 .deb.
package deploy
