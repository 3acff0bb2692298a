package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/common/expfmt"
	prommodel "github.com/prometheus/common/model"
	yaml "go.yaml.in/yaml/v3"

	"github.com/tollgate-dev/tollgate/store"
)

// target is a control plane under measurement, in a process of its own.
type target interface {
	// xdsAddr is where the Envoys connect.
	xdsAddr() string
	// edit makes edit k (1, 2, …); it returns once the change is handed
	// over (the file renamed or written, the PUTs answered, the floor told).
	edit(ctx context.Context, k int) error
	// metrics scrapes the process's /metrics.
	metrics(ctx context.Context) (processMetrics, error)
	// stop ends the process and waits for it.
	stop() error
}

// processMetrics are what a control plane's /metrics says of its process.
type processMetrics struct {
	RSSBytes   float64 // process_resident_memory_bytes
	HeapBytes  float64 // go_memstats_heap_inuse_bytes
	CPUSeconds float64 // process_cpu_seconds_total
	Goroutines float64 // go_goroutines
}

// scrape reads the process metrics from a Prometheus text endpoint.
func scrape(ctx context.Context, url string) (processMetrics, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return processMetrics{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return processMetrics{}, fmt.Errorf("scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return processMetrics{}, fmt.Errorf("scrape %s: %s", url, resp.Status)
	}
	parser := expfmt.NewTextParser(prommodel.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return processMetrics{}, fmt.Errorf("scrape %s: %w", url, err)
	}
	value := func(name string) (float64, error) {
		f, ok := families[name]
		if !ok || len(f.GetMetric()) == 0 {
			return 0, fmt.Errorf("scrape %s: no %s", url, name)
		}
		m := f.GetMetric()[0]
		switch {
		case m.GetGauge() != nil:
			return m.GetGauge().GetValue(), nil
		case m.GetCounter() != nil:
			return m.GetCounter().GetValue(), nil
		}
		return 0, fmt.Errorf("scrape %s: %s is neither a gauge nor a counter", url, name)
	}
	var pm processMetrics
	var errs []error
	for name, dst := range map[string]*float64{
		"process_resident_memory_bytes": &pm.RSSBytes,
		"go_memstats_heap_inuse_bytes":  &pm.HeapBytes,
		"process_cpu_seconds_total":     &pm.CPUSeconds,
		"go_goroutines":                 &pm.Goroutines,
	} {
		v, err := value(name)
		errs = append(errs, err)
		*dst = v
	}
	return pm, errors.Join(errs...)
}

// freeAddr returns a loopback address with a port free at the time of
// the call, for a child process to listen on.
func freeAddr() (string, error) { return freeAddrOn("127.0.0.1") }

// freeAddrOn is freeAddr on host: loopback, or the address an agent's
// Envoys reach it at.
func freeAddrOn(host string) (string, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// process is a child process with its log in a file.
type process struct {
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{}
	err     error // after exited
}

func startProcess(cmd *exec.Cmd, logPath string) (*process, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd.Stderr = logf
	if cmd.Stdout == nil {
		cmd.Stdout = logf
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	p := &process{cmd: cmd, logPath: logPath, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.exited)
	}()
	return p, nil
}

// stop asks the process to end with SIGTERM, then kills it after 10s.
func (p *process) stop() error {
	select {
	case <-p.exited:
		return p.exitError()
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("%s did not stop within 10s of SIGTERM; killed (log: %s)", filepath.Base(p.cmd.Path), p.logPath)
	}
	return nil
}

func (p *process) exitError() error {
	return fmt.Errorf("%s exited early: %v; its log, %s, ends with:\n%s", filepath.Base(p.cmd.Path), p.err, p.logPath, tail(p.logPath, 20))
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// tollgateTarget is the real tollgate binary serving the scenario's files
// (and, for API edits, its edited routes from a bbolt API store).
type tollgateTarget struct {
	o         options
	policies  string
	xds       string
	admin     string
	token     string
	proc      *process
	apiClient *http.Client
}

func startTollgate(ctx context.Context, o options, work string) (*tollgateTarget, error) {
	t := &tollgateTarget{o: o, policies: filepath.Join(work, "policies"), apiClient: &http.Client{Timeout: 30 * time.Second}}
	var err error
	if t.xds, err = freeAddrOn(o.xdsHost); err != nil {
		return nil, err
	}
	if t.admin, err = freeAddr(); err != nil {
		return nil, err
	}
	args := []string{"serve", "--policies", t.policies, "--xds-addr", t.xds, "--admin-addr", t.admin, "--log-format", "json", "--log-level", o.logLevel}
	if o.edit == editAPI {
		tokens, err := t.writeToken(work)
		if err != nil {
			return nil, err
		}
		args = append(args, "--state-dir", filepath.Join(work, "state"), "--api-tokens", tokens)
	}
	cmd := exec.Command(o.tollgate, args...)
	if t.proc, err = startProcess(cmd, filepath.Join(work, "tollgate.log")); err != nil {
		return nil, err
	}
	if err := t.waitHealthy(ctx); err != nil {
		_ = t.proc.stop()
		return nil, err
	}
	if o.edit == editAPI {
		// The edited routes live in the API store; a fresh state
		// directory holds none yet.
		if err := t.putEditRoutes(ctx, 0); err != nil {
			_ = t.proc.stop()
			return nil, err
		}
	}
	return t, nil
}

// writeToken makes a bearer token that writes every namespace and the
// tokens file that grants it.
func (t *tollgateTarget) writeToken(work string) (string, error) {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	t.token = hex.EncodeToString(raw)
	sum := sha256.Sum256([]byte(t.token))
	path := filepath.Join(work, "api-tokens.yaml")
	body, err := yaml.Marshal(store.TokenFile{Tokens: []store.TokenEntry{{Name: "tollgate-load", SHA256: hex.EncodeToString(sum[:]), Namespaces: []string{"*"}}}})
	if err != nil {
		return "", err
	}
	return path, os.WriteFile(path, body, 0o600)
}

func (t *tollgateTarget) waitHealthy(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, t.o.timeout)
	defer cancel()
	url := "http://" + t.admin + "/healthz"
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-t.proc.exited:
			return t.proc.exitError()
		case <-ctx.Done():
			return fmt.Errorf("tollgate not healthy at %s after %v (log: %s):\n%s", url, t.o.timeout, t.proc.logPath, tail(t.proc.logPath, 20))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (t *tollgateTarget) xdsAddr() string { return t.xds }

func (t *tollgateTarget) edit(ctx context.Context, k int) error {
	path := filepath.Join(t.policies, editFile)
	switch t.o.edit {
	case editRename:
		tmp := filepath.Join(t.policies, "."+editFile+".tmp")
		if err := os.WriteFile(tmp, editYAML(t.o.gateways, t.o.editGateways, k), 0o644); err != nil {
			return err
		}
		return os.Rename(tmp, path)
	case editInPlace:
		return os.WriteFile(path, editYAML(t.o.gateways, t.o.editGateways, k), 0o644)
	default:
		return t.putEditRoutes(ctx, k)
	}
}

// putEditRoutes writes the edited route of every gateway edit k changes
// (all of them for the initial state, k = 0) through the API, one PUT
// each.
func (t *tollgateTarget) putEditRoutes(ctx context.Context, k int) error {
	n := t.o.editGateways
	if k == 0 {
		n = t.o.gateways
	}
	for g := range n {
		url := "http://" + t.admin + store.ObjectPath(editRouteRef(g))
		req, err := http.NewRequestWithContext(ctx, http.MethodPut, url, bytes.NewReader(editRouteYAML(g, k)))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/yaml")
		req.Header.Set("Authorization", "Bearer "+t.token)
		resp, err := t.apiClient.Do(req)
		if err != nil {
			return fmt.Errorf("PUT %s: %w", url, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("PUT %s: %s: %s", url, resp.Status, body)
		}
	}
	return nil
}

func (t *tollgateTarget) metrics(ctx context.Context) (processMetrics, error) {
	return scrape(ctx, "http://"+t.admin+"/metrics")
}

func (t *tollgateTarget) stop() error { return t.proc.stop() }

// floorTarget is `tollgate-load floor`: a bare go-control-plane server in
// a process of its own, told each edit on its standard input.
type floorTarget struct {
	xds, metricsAddr string
	stdin            io.WriteCloser
	proc             *process
}

func startFloor(ctx context.Context, o options, work string) (*floorTarget, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	xdsAddr, err := freeAddrOn(o.xdsHost)
	if err != nil {
		return nil, err
	}
	metricsAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, "floor", "--policies", filepath.Join(work, "policies"),
		"--gateways", strconv.Itoa(o.gateways), "--edit-gateways", strconv.Itoa(o.editGateways), "--edits", strconv.Itoa(o.edits),
		"--xds-addr", xdsAddr, "--metrics-addr", metricsAddr)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	proc, err := startProcess(cmd, filepath.Join(work, "floor.log"))
	if err != nil {
		return nil, err
	}
	f := &floorTarget{xds: xdsAddr, metricsAddr: metricsAddr, stdin: stdin, proc: proc}
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err == nil && strings.TrimSpace(line) != floorReady {
			err = fmt.Errorf("floor said %q, not %q", line, floorReady)
		}
		ready <- err
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case err = <-ready:
	case <-ctx.Done():
		err = ctx.Err()
	case <-time.After(o.timeout):
		err = fmt.Errorf("floor not ready after %v", o.timeout)
	}
	if err != nil {
		_ = proc.stop()
		return nil, fmt.Errorf("%w (log: %s):\n%s", err, proc.logPath, tail(proc.logPath, 20))
	}
	return f, nil
}

func (f *floorTarget) xdsAddr() string { return f.xds }

func (f *floorTarget) edit(_ context.Context, k int) error {
	_, err := fmt.Fprintf(f.stdin, "%d\n", k)
	return err
}

func (f *floorTarget) metrics(ctx context.Context) (processMetrics, error) {
	return scrape(ctx, "http://"+f.metricsAddr+"/metrics")
}

func (f *floorTarget) stop() error {
	f.stdin.Close() // the floor ends at the end of its input
	select {
	case <-f.proc.exited:
		return nil
	case <-time.After(10 * time.Second):
	}
	return f.proc.stop()
}
