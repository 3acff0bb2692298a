package deploy_test

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The checks that need a tool (systemd-analyze, dpkg-deb, the nfpm module)
// are skipped without it, or fail under TOLLGATE_REQUIRE_INTEGRATION=1 (make
// test) or CI=true, as the other integration tests do.
//
// TOLLGATE_DIST_BIN and TOLLGATE_DIST_DEB (make dist-check) point the tests
// at the artefacts of make dist, with TOLLGATE_DIST_VERSION, _COMMIT and
// _DATE their stamp; without them the tests build a binary and a .deb of
// their own (go build, and nfpm through make dist-packages).

func required() bool {
	return os.Getenv("TOLLGATE_REQUIRE_INTEGRATION") == "1" || os.Getenv("CI") == "true"
}

func missing(t *testing.T, msg string) {
	t.Helper()
	if required() {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

func tool(t *testing.T, name, debianPackage string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		missing(t, fmt.Sprintf("%s not found on PATH: install Debian's %s (.ci/run does)", name, debianPackage))
	}
	return p
}

// repoRoot is the repository, the parent of the package's directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(wd)
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// stamp is what -ldflags -X stamps into a binary.
type stamp struct{ Version, Commit, Date string }

// testStamp is the stamp of the binary the tests build themselves.
var testStamp = stamp{Version: "v9.8.7-test", Commit: "0123456789abcdef0123456789abcdef01234567", Date: "2001-02-03T04:05:06Z"}

const testEpoch = 981173106 // testStamp.Date

var (
	workDir   string // removed after the tests
	buildOnce sync.Once
	binPath   string
	binErr    error
)

func TestMain(m *testing.M) {
	var err error
	workDir, err = os.MkdirTemp("", "tollgate-deploy-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(workDir)
	os.Exit(code)
}

// childEnv is the environment without make's variables (make test runs the
// tests; a make they run must not join its job server) and without the
// TOLLGATE_ settings of serve, plus extra.
func childEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case k == "MAKEFLAGS" || k == "MFLAGS" || k == "MAKELEVEL" || k == "MAKEOVERRIDES":
			continue
		case strings.HasPrefix(k, "TOLLGATE_") && !strings.HasPrefix(k, "TOLLGATE_REQUIRE") && !strings.HasPrefix(k, "TOLLGATE_DIST"):
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// distStamp is the stamp the binary under test carries.
func distStamp() stamp {
	if os.Getenv("TOLLGATE_DIST_BIN") != "" {
		return stamp{os.Getenv("TOLLGATE_DIST_VERSION"), os.Getenv("TOLLGATE_DIST_COMMIT"), os.Getenv("TOLLGATE_DIST_DATE")}
	}
	return testStamp
}

// tollgate is the binary under test: TOLLGATE_DIST_BIN, or one built once
// with testStamp. Plain go build flags (not make dist's -trimpath and
// CGO_ENABLED=0) share the build cache with the crash test's build; make
// dist-check runs these tests on the real release binary.
func tollgate(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("TOLLGATE_DIST_BIN"); p != "" {
		return p
	}
	buildOnce.Do(func() {
		goTool, err := exec.LookPath("go")
		if err != nil {
			binErr = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		out := filepath.Join(workDir, "bin", "tollgate")
		ldflags := fmt.Sprintf("-X main.version=%s -X main.commit=%s -X main.date=%s", testStamp.Version, testStamp.Commit, testStamp.Date)
		cmd := exec.CommandContext(ctx, goTool, "build", "-ldflags", ldflags, "-o", out, "./cmd/tollgate")
		cmd.Dir = repoRoot(t)
		cmd.Env = childEnv()
		if b, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, b)
			return
		}
		binPath = out
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// TestVersionStamp: `tollgate version` prints the stamp of the build.
func TestVersionStamp(t *testing.T) {
	bin := tollgate(t)
	want := distStamp()
	if want.Version == "" || want.Commit == "" || want.Date == "" {
		t.Fatalf("TOLLGATE_DIST_BIN needs TOLLGATE_DIST_VERSION, TOLLGATE_DIST_COMMIT and TOLLGATE_DIST_DATE (make dist-check sets them)")
	}
	checkVersion(t, bin, want)
	if os.Getenv("TOLLGATE_DIST_BIN") == "" {
		return
	}
	// make dist's binaries are static: no interpreter, no shared library.
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s has an ELF interpreter: not a static binary (CGO_ENABLED=0)", bin)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("%s needs shared libraries %v", bin, libs)
	}
}

func checkVersion(t *testing.T, bin string, want stamp) {
	t.Helper()
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("%s version: %v\n%s", bin, err, out)
	}
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	wantLines := []string{"tollgate " + want.Version, "commit: " + want.Commit, "date: " + want.Date}
	if len(lines) < 5 || strings.Join(lines[:3], "\n") != strings.Join(wantLines, "\n") ||
		!strings.HasPrefix(lines[3], "go: go") || lines[4] != "platform: linux/"+runtime.GOARCH {
		t.Fatalf("%s version printed\n%s\nwant it to start with\n%s", bin, out, strings.Join(wantLines, "\n"))
	}
	if _, err := time.Parse(time.RFC3339, want.Date); err != nil {
		t.Errorf("date %q is not RFC 3339: %v", want.Date, err)
	}
}

// unit parses a unit file into its section.key → values (in order).
func unit(t *testing.T, path string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	section := ""
	for _, line := range strings.Split(read(t, path), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("%s: %q is not KEY=VALUE", path, line)
			}
			out[section+"."+k] = append(out[section+"."+k], v)
		}
	}
	return out
}

func wantKeys(t *testing.T, name string, u map[string][]string, want map[string]string) {
	t.Helper()
	for k, v := range want {
		got, ok := u["Service."+k]
		if !ok {
			got, ok = u[k]
		}
		if !ok || got[len(got)-1] != v {
			t.Errorf("%s: %s=%q, want %q", name, k, got, v)
		}
	}
}

// TestUnitSettings pins the settings the README promises.
func TestUnitSettings(t *testing.T) {
	hardening := map[string]string{
		"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes", "PrivateDevices": "yes",
		"ProtectKernelTunables": "yes", "ProtectKernelModules": "yes", "ProtectKernelLogs": "yes", "ProtectControlGroups": "yes",
		"ProtectClock": "yes", "ProtectHostname": "yes", "RestrictNamespaces": "yes", "RestrictRealtime": "yes",
		"RestrictSUIDSGID": "yes", "LockPersonality": "yes", "SystemCallArchitectures": "native",
		"CapabilityBoundingSet": "", "AmbientCapabilities": "", "UMask": "0077", "LimitNOFILE": "1048576",
	}
	tg := unit(t, "systemd/tollgate.service")
	wantKeys(t, "tollgate.service", tg, hardening)
	wantKeys(t, "tollgate.service", tg, map[string]string{
		"ExecStart": "/usr/bin/tollgate serve --config /etc/tollgate/config.yaml", "ExecReload": "/bin/kill -HUP $MAINPID",
		"User": "tollgate", "Group": "tollgate", "Restart": "on-failure", "StateDirectory": "tollgate", "ConfigurationDirectory": "tollgate",
		"MemoryDenyWriteExecute": "yes", "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6", "Environment": "TOLLGATE_LOG_FORMAT=text",
		"Install.WantedBy": "multi-user.target",
	})
	if got := tg["Service.SystemCallFilter"]; len(got) == 0 || got[0] != "@system-service" {
		t.Errorf("tollgate.service: SystemCallFilter=%q, want @system-service first", got)
	}
	env := unit(t, "systemd/envoy@.service")
	wantKeys(t, "envoy@.service", env, hardening)
	wantKeys(t, "envoy@.service", env, map[string]string{
		"User": "envoy", "Group": "envoy", "Restart": "always", "RuntimeDirectory": "envoy-%i",
		"EnvironmentFile": "-/etc/tollgate/envoy-%i.env", "ExecStart": "/usr/bin/env ${ENVOY_BIN} -c %t/envoy-%i/bootstrap.yaml $ENVOY_FLAGS",
	})
}

// TestUnitsVerify runs systemd-analyze verify on both units (the template
// and an instance of it), with /usr/bin/tollgate pointing at the binary
// under test (verify checks that ExecStart's programs exist), and reports
// their systemd-analyze security exposure.
func TestUnitsVerify(t *testing.T) {
	analyze := tool(t, "systemd-analyze", "systemd")
	bin := tollgate(t)
	dir := t.TempDir()
	var files []string
	for name, src := range map[string]string{
		"tollgate.service": "systemd/tollgate.service", "envoy@.service": "systemd/envoy@.service", "envoy@egress.service": "systemd/envoy@.service",
	} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(strings.ReplaceAll(read(t, src), "/usr/bin/tollgate", bin)), 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, p)
	}
	out, err := exec.Command(analyze, append([]string{"verify"}, files...)...).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}

	// Exposure: 0 is best, 10 worst; the thresholds guard against a
	// hardening setting lost in an edit.
	exposure := regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`)
	for name, limit := range map[string]float64{"tollgate.service": 1.5, "envoy@egress.service": 2.0} {
		out, err := exec.Command(analyze, "security", "--offline=yes", "--no-pager", filepath.Join(dir, name)).CombinedOutput()
		m := exposure.FindSubmatch(out)
		if err != nil || m == nil {
			t.Fatalf("systemd-analyze security %s: %v\n%s", name, err, out)
		}
		level, _ := strconv.ParseFloat(string(m[1]), 64)
		t.Logf("systemd-analyze security: %s exposure %.1f", name, level)
		if level > limit {
			t.Errorf("%s: exposure %.1f, more than %.1f:\n%s", name, level, limit, out)
		}
	}
}

// TestEnvoyBootstrapCommand runs envoy@.service's ExecStartPre as systemd
// would for envoy@egress-1 and envoy@team-b:egress on host vm-7: it renders
// the bootstrap into the runtime directory, with the extra flags of the
// environment file.
func TestEnvoyBootstrapCommand(t *testing.T) {
	for instance, gateway := range map[string]string{"egress-1": "egress-1", "team-b:egress": "team-b/egress"} {
		t.Run(instance, func(t *testing.T) { testEnvoyBootstrap(t, instance, gateway) })
	}
}

func testEnvoyBootstrap(t *testing.T, instance, gateway string) {
	bin := tollgate(t)
	pre := unit(t, "systemd/envoy@.service")["Service.ExecStartPre"]
	if len(pre) != 1 {
		t.Fatalf("ExecStartPre=%q: want one", pre)
	}
	// /bin/sh -c '<script>' bootstrap %i %H-%i: systemd unquotes the
	// script and turns $$ into $.
	line := pre[0]
	open, closing := strings.Index(line, "'"), strings.LastIndex(line, "'")
	if !strings.HasPrefix(line, "/bin/sh -c '") || closing <= open {
		t.Fatalf("ExecStartPre=%s: want /bin/sh -c '...' ARGS", line)
	}
	script := strings.ReplaceAll(strings.ReplaceAll(line[open+1:closing], "$$", "$"), "/usr/bin/tollgate", bin)
	args := strings.Fields(strings.NewReplacer("%H", "vm-7", "%i", instance).Replace(line[closing+1:]))
	runDir := t.TempDir()
	cmd := exec.Command("/bin/sh", append([]string{"-c", script}, args...)...)
	cmd.Env = childEnv("RUNTIME_DIRECTORY="+runDir, "TOLLGATE_XDS_ADDR=10.0.0.1:18000", "TOLLGATE_BOOTSTRAP_FLAGS=--admin-port 9902 --delta")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ExecStartPre: %v\n%s", err, out)
	}
	got := read(t, filepath.Join(runDir, "bootstrap.yaml"))
	for _, want := range []string{`cluster: "` + gateway + `"`, `id: "vm-7-` + instance + `"`, `address: "10.0.0.1"`, "port_value: 9902", "DELTA_GRPC"} {
		if !strings.Contains(got, want) {
			t.Errorf("bootstrap lacks %s:\n%s", want, got)
		}
	}
}

// serveFlags are the flags of `tollgate serve --help`.
func serveFlags(t *testing.T, bin string) []string {
	t.Helper()
	out, err := exec.Command(bin, "serve", "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("serve --help: %v\n%s", err, out)
	}
	var flags []string
	for _, m := range regexp.MustCompile(`(?m)^\s+(?:-\w, )?--([a-z0-9-]+)`).FindAllStringSubmatch(string(out), -1) {
		if m[1] != "help" && m[1] != "config" {
			flags = append(flags, m[1])
		}
	}
	if len(flags) < 20 {
		t.Fatalf("found only %d flags in serve --help:\n%s", len(flags), out)
	}
	return flags
}

// TestConfigDocumentsEverySetting: the packaged config file has a key,
// set or commented out, for every serve flag and list setting.
func TestConfigDocumentsEverySetting(t *testing.T) {
	cfg := read(t, "config.yaml")
	for _, key := range append(serveFlags(t, tollgate(t)), "xds-identities", "api-identities") {
		if !regexp.MustCompile(`(?m)^#?` + regexp.QuoteMeta(key) + `:`).MatchString(cfg) {
			t.Errorf("config.yaml does not document %s (want a line %s: or #%s:)", key, key, key)
		}
	}
}

// logLine is a line of serve's JSON log.
type logLine map[string]any

// serveProcess runs `tollgate serve --config CONFIG` with env, returning the
// command and its JSON log lines as they come.
func serveProcess(t *testing.T, config string, env ...string) (*exec.Cmd, <-chan logLine) {
	t.Helper()
	cmd := exec.Command(tollgate(t), "serve", "--config", config)
	cmd.Env = childEnv(env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	lines := make(chan logLine, 100)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			t.Log(sc.Text())
			var l logLine
			if json.Unmarshal(sc.Bytes(), &l) == nil {
				lines <- l
			}
		}
	}()
	return cmd, lines
}

// waitLog waits for a log line with message msg.
func waitLog(t *testing.T, lines <-chan logLine, msg string) logLine {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("tollgate exited before logging %q", msg)
			}
			if l["msg"] == msg {
				return l
			}
		case <-deadline:
			t.Fatalf("no %q in tollgate's log within 60s", msg)
		}
	}
}

// TestDefaultConfigStarts: a fresh install starts. The packaged config
// file, with its policy directory still empty, starts tollgate because it
// turns the API store on (without it, tollgate refuses a directory without
// objects); SIGHUP (systemctl reload) reloads the directory; SIGTERM stops
// it cleanly. Paths and ports are moved into the test's directory through
// TOLLGATE_* variables, which win over the file.
func TestDefaultConfigStarts(t *testing.T) {
	dir := t.TempDir()
	policies, state := filepath.Join(dir, "policies"), filepath.Join(dir, "state")
	for _, d := range []string{policies, state} {
		if err := os.Mkdir(d, 0o750); err != nil {
			t.Fatal(err)
		}
	}
	env := []string{"TOLLGATE_POLICIES=" + policies, "TOLLGATE_STATE_DIR=" + state, "TOLLGATE_XDS_ADDR=127.0.0.1:0",
		"TOLLGATE_ADMIN_ADDR=127.0.0.1:0", "TOLLGATE_LOG_FORMAT=json"}
	cmd, lines := serveProcess(t, filepath.Join(repoRoot(t), "deploy", "config.yaml"), env...)
	serving := waitLog(t, lines, "tollgate serving")
	if serving["api_store"] == "" || serving["api_store"] == nil || serving["gateways"] != float64(0) {
		t.Fatalf("tollgate serving: %v; want an API store and no gateway", serving)
	}
	if _, err := os.Stat(filepath.Join(state, "tollgate.db")); err != nil {
		t.Fatalf("no API store in the state directory: %v", err)
	}
	resp, err := http.Get("http://" + serving["admin"].(string) + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "ok\n" {
		t.Fatalf("/healthz: %q", body)
	}

	// systemctl reload: ExecReload=/bin/kill -HUP $MAINPID.
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(t, lines, "reloading the policy directory")
	waitLog(t, lines, "policies reloaded")

	// systemctl stop: SIGTERM, exit status 0.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitLog(t, lines, "tollgate stopped")
	for range lines {
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("tollgate after SIGTERM: %v", err)
	}
}

// TestConfigWithoutStateDirRefusesEmptyPolicies is why the packaged config
// sets state-dir: without an API store, an empty directory is refused.
func TestConfigWithoutStateDirRefusesEmptyPolicies(t *testing.T) {
	dir := t.TempDir()
	cfg := regexp.MustCompile(`(?m)^state-dir:.*$`).ReplaceAllString(read(t, "config.yaml"), "")
	config := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(config, []byte(cfg), 0o640); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(tollgate(t), "serve", "--config", config)
	cmd.Env = childEnv("TOLLGATE_POLICIES="+t.TempDir(), "TOLLGATE_XDS_ADDR=127.0.0.1:0", "TOLLGATE_ADMIN_ADDR=127.0.0.1:0")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "holds no policy objects") {
		t.Fatalf("serve without state-dir on an empty directory: %v\n%s", err, out)
	}
}

// scriptEnv is a sandbox for the maintainer scripts: getent, groupadd,
// useradd and systemctl are stubs that log their arguments, the user
// database is a file, and the scripts' /run/systemd/system and
// /etc/systemd/system are directories of the sandbox.
type scriptEnv struct {
	t                     *testing.T
	dir, log, db, scripts string
	runDir, etcDir        string
	enabled               bool // what systemctl is-enabled answers
}

func newScriptEnv(t *testing.T, systemdRunning bool) *scriptEnv {
	dir := t.TempDir()
	e := &scriptEnv{t: t, dir: dir, log: filepath.Join(dir, "calls"), db: filepath.Join(dir, "db"),
		scripts: filepath.Join(dir, "scripts"), runDir: filepath.Join(dir, "run-systemd"), etcDir: filepath.Join(dir, "etc-systemd"), enabled: true}
	stubs := map[string]string{
		"getent":    `grep -qx "$1:$2" "$STUB_DB"`,
		"groupadd":  `echo "groupadd $*" >>"$STUB_LOG"; for a; do last=$a; done; echo "group:$last" >>"$STUB_DB"`,
		"useradd":   `echo "useradd $*" >>"$STUB_LOG"; for a; do last=$a; done; echo "passwd:$last" >>"$STUB_DB"`,
		"systemctl": `echo "systemctl $*" >>"$STUB_LOG"; if [ "$2" = is-enabled ] || [ "$1" = is-enabled ]; then exit "$STUB_ENABLED"; fi`,
	}
	bin := filepath.Join(dir, "bin")
	for _, d := range []string{bin, e.scripts, e.etcDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, body := range stubs {
		if err := os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(e.db, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if systemdRunning {
		if err := os.MkdirAll(e.runDir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range []string{"preinstall", "postinstall", "preremove", "postremove"} {
		body := strings.NewReplacer("/run/systemd/system", e.runDir, "/etc/systemd/system", e.etcDir).Replace(read(t, "scripts/"+s+".sh"))
		if err := os.WriteFile(filepath.Join(e.scripts, s), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// run runs script with args and returns the commands it ran.
func (e *scriptEnv) run(script string, args ...string) []string {
	e.t.Helper()
	if err := os.WriteFile(e.log, nil, 0o644); err != nil {
		e.t.Fatal(err)
	}
	cmd := exec.Command("/bin/sh", append([]string{filepath.Join(e.scripts, script)}, args...)...)
	enabled := "0"
	if !e.enabled {
		enabled = "1"
	}
	cmd.Env = []string{"PATH=" + filepath.Join(e.dir, "bin") + ":/usr/bin:/bin", "STUB_LOG=" + e.log, "STUB_DB=" + e.db, "STUB_ENABLED=" + enabled}
	if out, err := cmd.CombinedOutput(); err != nil {
		e.t.Fatalf("%s %v: %v\n%s", script, args, err, out)
	}
	calls := strings.Split(strings.TrimSpace(read(e.t, e.log)), "\n")
	if calls[0] == "" {
		return nil
	}
	return calls
}

func (e *scriptEnv) want(script string, args []string, want ...string) {
	e.t.Helper()
	got := e.run(script, args...)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		e.t.Errorf("%s %q ran\n  %s\nwant\n  %s", script, args, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

var addUsers = []string{
	"groupadd --system tollgate",
	"useradd --system --no-create-home --home-dir /var/lib/tollgate --shell /usr/sbin/nologin --gid tollgate --comment tollgate control plane tollgate",
	"groupadd --system envoy",
	"useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin --gid envoy --comment Envoy gateways (envoy@.service) envoy",
}

// TestMaintainerScriptsDeb walks the scripts through dpkg's calls: install,
// upgrade, remove, purge, and a reinstall; users are made once.
func TestMaintainerScriptsDeb(t *testing.T) {
	e := newScriptEnv(t, true)
	e.want("preinstall", []string{"install"}, addUsers...)
	e.want("postinstall", []string{"configure", ""}, "systemctl daemon-reload", "systemctl enable --now tollgate.service")

	// Upgrade: the users exist; an enabled service is restarted.
	e.want("preremove", []string{"upgrade", "1.1.0-1"})
	e.want("preinstall", []string{"upgrade", "1.0.0-1"})
	e.want("postremove", []string{"upgrade", "1.1.0-1"})
	e.want("postinstall", []string{"configure", "1.0.0-1"}, "systemctl daemon-reload", "systemctl --quiet is-enabled tollgate.service", "systemctl restart tollgate.service")
	e.enabled = false
	e.want("postinstall", []string{"configure", "1.0.0-1"}, "systemctl daemon-reload", "systemctl --quiet is-enabled tollgate.service")
	e.enabled = true

	// Remove, then purge: stopped, then its links go.
	link := filepath.Join(e.etcDir, "multi-user.target.wants")
	if err := os.MkdirAll(link, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"tollgate.service", "envoy@egress.service", "envoy@edge.service"} {
		if err := os.Symlink("/lib/systemd/system/"+name, filepath.Join(link, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(link, "other.service"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	e.want("preremove", []string{"remove"}, "systemctl stop tollgate.service")
	e.want("postremove", []string{"remove"}, "systemctl daemon-reload")
	if _, err := os.Lstat(filepath.Join(link, "tollgate.service")); err != nil {
		t.Fatal("remove (not purge) dropped the enablement link")
	}
	e.want("postremove", []string{"purge"}, "systemctl daemon-reload")
	entries, _ := os.ReadDir(link)
	if len(entries) != 1 || entries[0].Name() != "other.service" {
		t.Fatalf("after purge %s holds %v, want only other.service", link, entries)
	}

	// Without a running systemd (an image build): enabled, not started.
	e = newScriptEnv(t, false)
	e.want("preinstall", []string{"install"}, addUsers...)
	e.want("preinstall", []string{"install"})
	e.want("postinstall", []string{"configure", ""}, "systemctl enable tollgate.service")
	e.want("postinstall", []string{"configure", "1.0.0-1"})
	e.want("preremove", []string{"remove"})
	e.want("postremove", []string{"purge"})
	e.want("postinstall", []string{"abort-upgrade", "1.1.0-1"})
}

// TestMaintainerScriptsRPM walks them through rpm's calls, whose argument
// is the number of versions installed after the transaction.
func TestMaintainerScriptsRPM(t *testing.T) {
	e := newScriptEnv(t, true)
	e.want("preinstall", []string{"1"}, addUsers...)
	e.want("postinstall", []string{"1"}, "systemctl daemon-reload", "systemctl enable --now tollgate.service")

	// Upgrade: new %pre and %post, then the old %preun and %postun.
	e.want("preinstall", []string{"2"})
	e.want("postinstall", []string{"2"}, "systemctl daemon-reload")
	e.want("preremove", []string{"1"})
	e.want("postremove", []string{"1"}, "systemctl daemon-reload", "systemctl try-restart tollgate.service")

	// Erase.
	e.want("preremove", []string{"0"}, "systemctl --no-reload disable --now tollgate.service")
	e.want("postremove", []string{"0"}, "systemctl daemon-reload")

	e = newScriptEnv(t, false)
	e.want("postinstall", []string{"1"}, "systemctl enable tollgate.service")
	e.want("preremove", []string{"0"}, "systemctl --no-reload disable tollgate.service")
	e.want("postremove", []string{"0"})
}

// TestPkgVersion: the package version of a git describe sorts as builds do.
func TestPkgVersion(t *testing.T) {
	for in, want := range map[string]string{
		"v1.2.3": "1.2.3", "v1.2.3-rc.1": "1.2.3-rc.1", "v1.2.3-4-gabcdef0": "1.2.3+4.gabcdef0",
		"v1.2.3-4-gabcdef0-dirty": "1.2.3+4.gabcdef0.dirty", "v1.2.3-dirty": "1.2.3+dirty",
		"abcdef0": "0.0.0+git20010203040506.abcdef0", "abcdef0-dirty": "0.0.0+git20010203040506.abcdef0.dirty",
	} {
		out, err := exec.Command("/bin/sh", "pkgversion.sh", in, strconv.Itoa(testEpoch)).CombinedOutput()
		if got := strings.TrimSpace(string(out)); err != nil || got != want {
			t.Errorf("pkgversion.sh %s = %q (%v), want %s", in, got, err, want)
		}
	}
	if dpkg, err := exec.LookPath("dpkg"); err == nil {
		// dpkg --compare-versions on the deb versions nfpm makes of them.
		order := []string{"0.0.0~git20010203040506.abcdef0-1", "1.2.3~rc.1-1", "1.2.3-1", "1.2.3+4.gabcdef0-1", "1.2.3+4.gabcdef0.dirty-1", "1.2.3+10.g0000000-1", "1.2.4~rc.1-1"}
		for i := 1; i < len(order); i++ {
			if err := exec.Command(dpkg, "--compare-versions", order[i-1], "lt", order[i]).Run(); err != nil {
				t.Errorf("dpkg: %s is not before %s", order[i-1], order[i])
			}
		}
	}
}

// deb is the package under test: TOLLGATE_DIST_DEB, or one made for the
// test binary by make dist-packages (nfpm through go run: the module
// proxy, or the module cache).
func deb(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("TOLLGATE_DIST_DEB"); p != "" {
		return p
	}
	if runtime.GOARCH != "amd64" && runtime.GOARCH != "arm64" {
		t.Skipf("make dist packages amd64 and arm64, not %s", runtime.GOARCH)
	}
	makeTool := tool(t, "make", "make")
	dist := filepath.Join(workDir, "dist")
	if err := os.MkdirAll(filepath.Join(dist, "linux-"+runtime.GOARCH), 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(tollgate(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dist, "linux-"+runtime.GOARCH, "tollgate"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, makeTool, "--no-print-directory", "dist-packages", "PACKAGERS=deb", "ARCH="+runtime.GOARCH, "DIST="+dist,
		"VERSION="+testStamp.Version, "COMMIT="+testStamp.Commit, "DATE="+testStamp.Date, "SOURCE_DATE_EPOCH="+strconv.Itoa(testEpoch))
	cmd.Dir = repoRoot(t)
	cmd.Env = childEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		if bytes.Contains(out, []byte("proxy.golang.org")) || bytes.Contains(out, []byte("dial tcp")) {
			missing(t, fmt.Sprintf("nfpm could not be fetched:\n%s", out))
		}
		t.Fatalf("make dist-packages: %v\n%s", err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(dist, "tollgate_*.deb"))
	if len(debs) != 1 {
		t.Fatalf("make dist-packages made %v\n%s", debs, out)
	}
	return debs[0]
}

// TestDebPackage checks the .deb: its fields, every file with its mode,
// owner and time, the conffile, the maintainer scripts (those tested
// above), and the installed binary's version.
func TestDebPackage(t *testing.T) {
	dpkgDeb := tool(t, "dpkg-deb", "dpkg")
	pkg := deb(t)
	own := os.Getenv("TOLLGATE_DIST_DEB") == ""

	fields := map[string]string{}
	out, err := exec.Command(dpkgDeb, "-f", pkg).Output()
	if err != nil {
		t.Fatalf("dpkg-deb -f: %v", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(line, ": "); ok && !strings.HasPrefix(k, " ") {
			fields[k] = v
		}
	}
	wantArch := "amd64"
	if own {
		wantArch = runtime.GOARCH
	}
	if fields["Package"] != "tollgate" || fields["Architecture"] != wantArch || fields["Version"] == "" || fields["Homepage"] == "" {
		t.Errorf("dpkg-deb -f: %v", fields)
	}
	if own && fields["Version"] != "9.8.7~test-1" {
		t.Errorf("Version %q, want 9.8.7~test-1 (v9.8.7-test)", fields["Version"])
	}

	// Contents: path → mode and owner; any other entry is a parent
	// directory (root, 0755).
	want := map[string]string{
		"./usr/bin/tollgate":                                  "-rwxr-xr-x root/root",
		"./lib/systemd/system/tollgate.service":               "-rw-r--r-- root/root",
		"./lib/systemd/system/envoy@.service":                 "-rw-r--r-- root/root",
		"./etc/tollgate/":                                     "drwxr-x--- root/tollgate",
		"./etc/tollgate/config.yaml":                          "-rw-r----- root/tollgate",
		"./etc/tollgate/policies/":                            "drwxr-x--- root/tollgate",
		"./var/lib/tollgate/":                                 "drwxr-x--- tollgate/tollgate",
		"./usr/share/doc/tollgate/README.md":                  "-rw-r--r-- root/root",
		"./usr/share/doc/tollgate/examples/envoy-GATEWAY.env": "-rw-r--r-- root/root",
	}
	list := exec.Command(dpkgDeb, "-c", pkg)
	list.Env = append(childEnv(), "TZ=UTC")
	out, err = list.Output()
	if err != nil {
		t.Fatalf("dpkg-deb -c: %v", err)
	}
	wantTime := time.Unix(testEpoch, 0).UTC().Format("2006-01-02 15:04")
	seen := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) != 6 {
			t.Fatalf("dpkg-deb -c line %q", line)
		}
		perm, path := f[0]+" "+f[1], f[5]
		seen[path] = true
		w, ok := want[path]
		if !ok {
			w = "drwxr-xr-x root/root"
		}
		if perm != w {
			t.Errorf("%s: %s, want %s", path, perm, w)
		}
		if own && f[3]+" "+f[4] != wantTime {
			t.Errorf("%s: time %s %s, want SOURCE_DATE_EPOCH's %s", path, f[3], f[4], wantTime)
		}
	}
	for path := range want {
		if !seen[path] {
			t.Errorf("the package lacks %s", path)
		}
	}

	// The control files: the conffile, and the scripts as in deploy/scripts.
	ctrl := filepath.Join(t.TempDir(), "DEBIAN")
	if out, err := exec.Command(dpkgDeb, "-e", pkg, ctrl).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -e: %v\n%s", err, out)
	}
	if got := strings.TrimSpace(read(t, filepath.Join(ctrl, "conffiles"))); got != "/etc/tollgate/config.yaml" {
		t.Errorf("conffiles: %q, want /etc/tollgate/config.yaml", got)
	}
	for deb, src := range map[string]string{"preinst": "preinstall", "postinst": "postinstall", "prerm": "preremove", "postrm": "postremove"} {
		if got := read(t, filepath.Join(ctrl, deb)); got != read(t, "scripts/"+src+".sh") {
			t.Errorf("%s differs from scripts/%s.sh:\n%s", deb, src, got)
		}
		if fi, err := os.Stat(filepath.Join(ctrl, deb)); err != nil || fi.Mode().Perm()&0o111 == 0 {
			t.Errorf("%s is not executable: %v", deb, err)
		}
	}
	for _, s := range []string{"useradd --system --no-create-home", "/usr/sbin/nologin"} {
		if !strings.Contains(read(t, filepath.Join(ctrl, "preinst")), s) {
			t.Errorf("preinst lacks %q", s)
		}
	}
	if !strings.Contains(read(t, filepath.Join(ctrl, "postinst")), "systemctl enable --now tollgate.service") {
		t.Error("postinst does not enable and start tollgate.service")
	}

	// The files themselves, and the packaged binary's version.
	root := t.TempDir()
	if out, err := exec.Command(dpkgDeb, "-x", pkg, root).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -x: %v\n%s", err, out)
	}
	for dst, src := range map[string]string{
		"etc/tollgate/config.yaml": "config.yaml", "lib/systemd/system/tollgate.service": "systemd/tollgate.service",
		"lib/systemd/system/envoy@.service": "systemd/envoy@.service", "usr/share/doc/tollgate/README.md": "README.md",
	} {
		if read(t, filepath.Join(root, dst)) != read(t, src) {
			t.Errorf("/%s differs from deploy/%s", dst, src)
		}
	}
	checkVersion(t, filepath.Join(root, "usr/bin/tollgate"), distStamp())
	if p := os.Getenv("TOLLGATE_DIST_BIN"); p != "" && read(t, p) != read(t, filepath.Join(root, "usr/bin/tollgate")) {
		t.Errorf("/usr/bin/tollgate is not %s", p)
	}
}
