package main

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
)

// The agent runs the targets on the control plane's machine for a driver
// (tollgate-load --agent) on another, which runs only the Envoys: the
// figures are then the control plane's, not shared with the clients'. Its
// API is small JSON over HTTP, every call but /v1/healthz with the token
// of --token-file as a bearer token:
//
//	POST   /v1/targets  agentStart → agentStarted: write the scenario, start tollgate or the floor
//	POST   /v1/edit     agentEdit → agentEdited: make edit k as the scenario says
//	GET    /v1/metrics  → processMetrics: the running target's /metrics
//	DELETE /v1/targets  stop the running target
//
// One target runs at a time; starting one stops the previous.

// agentStart asks an agent to start a target on a scenario.
type agentStart struct {
	Target         string  `json:"target"`
	Gateways       int     `json:"gateways"`
	Routes         int     `json:"routes"`
	Edits          int     `json:"edits"`
	EditGateways   int     `json:"editGateways"`
	Edit           string  `json:"edit"`
	LogLevel       string  `json:"logLevel"`
	TimeoutSeconds float64 `json:"timeoutSeconds"`
}

// agentStarted is where the target's Envoys connect, and the machine it
// runs on.
type agentStarted struct {
	XDS     string  `json:"xds"`
	Machine machine `json:"machine"`
}

type agentEdit struct {
	K int `json:"k"`
}

// agentEdited is how long handing the edit over took on the agent.
type agentEdited struct {
	HandoffMs float64 `json:"handoffMs"`
}

type agentError struct {
	Error string `json:"error"`
}

func newAgentCommand() *cobra.Command {
	var (
		listen, xdsHost, tokenFile, tollgate, workDir string
	)
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "run tollgate and the floor on this machine for a tollgate-load on another",
		Long: `agent runs on the control plane's machine and starts tollgate and the floor
there, one at a time, for a tollgate-load started with --agent on another
machine, which runs the simulated Envoys. It writes each scenario to its work
directory, makes the edits it is asked for (a file renamed or rewritten here,
or PUTs to tollgate's API on loopback) and reads the target's /metrics. The
targets' xDS servers listen on --xds-host, where the Envoys connect; their
admin and metrics ports stay on loopback.

Every call must carry the token of --token-file (any secret string, at
least 16 characters; give the driver the same file with --agent-token-file):
the agent starts processes on request, so run it on a test network only.`,
		Example:       `  tollgate-load agent --listen 10.0.0.5:7070 --token-file agent.token`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			token, err := readToken(tokenFile, "--token-file")
			if err != nil {
				return err
			}
			host, _, err := net.SplitHostPort(listen)
			if err != nil {
				return fmt.Errorf("--listen %q: %w (want host:port)", listen, err)
			}
			if xdsHost == "" {
				xdsHost = host
			}
			if ip := net.ParseIP(xdsHost); xdsHost == "" || (ip != nil && ip.IsUnspecified()) {
				return fmt.Errorf("--xds-host: give the address the Envoys reach this machine at (--listen %s does not name one)", listen)
			}
			o := options{tollgate: tollgate, targets: []string{targetTollgate}}
			if err := o.findTollgate(); err != nil {
				return err
			}
			if workDir == "" {
				tmp, err := os.MkdirTemp("", "tollgate-load-agent-")
				if err != nil {
					return err
				}
				defer os.RemoveAll(tmp)
				workDir = tmp
			}
			a := &agent{token: token, tollgate: o.tollgate, xdsHost: xdsHost, work: workDir,
				log: slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))}
			return a.serve(cmd.Context(), listen)
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", "", "address of the agent's API, host:port (required)")
	f.StringVar(&xdsHost, "xds-host", "", "address the targets' xDS servers listen on, which the Envoys connect to (default: the host of --listen)")
	f.StringVar(&tokenFile, "token-file", "", "file holding the token every call must carry (required)")
	f.StringVar(&tollgate, "tollgate", "", "the tollgate binary (default: tollgate next to this binary, else on PATH)")
	f.StringVar(&workDir, "work-dir", "", "directory for the scenarios, tollgate's state and the logs (default: a new temporary directory, removed at exit)")
	_ = cmd.MarkFlagRequired("listen")
	_ = cmd.MarkFlagRequired("token-file")
	return cmd
}

// readToken reads a token file: one secret of at least 16 characters.
func readToken(path, flag string) (string, error) {
	if path == "" {
		return "", fmt.Errorf("%s is required: a file holding a secret of at least 16 characters, the same for the agent and the driver", flag)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", flag, err)
	}
	token := strings.TrimSpace(string(b))
	if len(token) < 16 {
		return "", fmt.Errorf("%s %s holds %d characters: write a secret of at least 16 (e.g. openssl rand -hex 32 > %s)", flag, path, len(token), path)
	}
	return token, nil
}

func (o *options) readAgentToken() error {
	token, err := readToken(o.agentTokenFile, "--agent-token-file")
	if err != nil {
		return err
	}
	o.agentToken = token
	return nil
}

type agent struct {
	token, tollgate, xdsHost, work string
	log                            *slog.Logger

	mu      sync.Mutex // serialises the calls: one target, one edit at a time
	current target
	runs    int
}

func (a *agent) serve(ctx context.Context, listen string) error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.Handle("POST /v1/targets", a.authorized(a.start))
	mux.Handle("DELETE /v1/targets", a.authorized(a.stop))
	mux.Handle("POST /v1/edit", a.authorized(a.edit))
	mux.Handle("GET /v1/metrics", a.authorized(a.metrics))
	l, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	a.log.Info("tollgate-load agent listening", "addr", l.Addr().String(), "xdsHost", a.xdsHost, "tollgate", a.tollgate)
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutdown)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.stopCurrent()
	return nil
}

// authorized checks the bearer token, in constant time.
func (a *agent) authorized(h func(*http.Request) (any, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(a.token)) != 1 {
			writeJSON(w, http.StatusUnauthorized, agentError{"missing or wrong token: give the driver the agent's token file with --agent-token-file"})
			return
		}
		a.mu.Lock()
		out, err := h(r)
		a.mu.Unlock()
		if err != nil {
			writeJSON(w, http.StatusBadRequest, agentError{err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, out)
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// stopCurrent stops the running target, if any. The caller holds a.mu.
func (a *agent) stopCurrent() {
	if a.current == nil {
		return
	}
	if err := a.current.stop(); err != nil {
		a.log.Warn("stopping the target", "error", err)
	}
	a.current = nil
}

func (a *agent) start(r *http.Request) (any, error) {
	var req agentStart
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
		return nil, fmt.Errorf("start: %w", err)
	}
	o := options{gateways: req.Gateways, routes: req.Routes, edits: req.Edits, editGateways: req.EditGateways, edit: req.Edit, logLevel: req.LogLevel,
		timeout: time.Duration(req.TimeoutSeconds * float64(time.Second)), tollgate: a.tollgate, xdsHost: a.xdsHost}
	if err := o.validateScenario(); err != nil {
		return nil, err
	}
	if req.Target != targetTollgate && req.Target != targetFloor {
		return nil, fmt.Errorf("target %q: want tollgate or floor", req.Target)
	}
	a.stopCurrent()
	a.runs++
	work := filepath.Join(a.work, fmt.Sprintf("run-%03d-%s", a.runs, req.Target))
	if err := writeScenario(filepath.Join(work, "policies"), o); err != nil {
		return nil, err
	}
	var (
		t   target
		err error
	)
	// The target outlives this request: it stops on DELETE, the next
	// start, or the agent's end.
	if req.Target == targetTollgate {
		t, err = startTollgate(context.WithoutCancel(r.Context()), o, work)
	} else {
		t, err = startFloor(context.WithoutCancel(r.Context()), o, work)
	}
	if err != nil {
		return nil, err
	}
	a.current = t
	a.log.Info("target started", "target", req.Target, "xds", t.xdsAddr(), "work", work)
	return agentStarted{XDS: t.xdsAddr(), Machine: machineOf()}, nil
}

func (a *agent) stop(*http.Request) (any, error) {
	a.stopCurrent()
	return struct{}{}, nil
}

func (a *agent) edit(r *http.Request) (any, error) {
	if a.current == nil {
		return nil, errors.New("edit: no target is running: start one first")
	}
	var req agentEdit
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<10)).Decode(&req); err != nil {
		return nil, fmt.Errorf("edit: %w", err)
	}
	start := time.Now()
	if err := a.current.edit(r.Context(), req.K); err != nil {
		return nil, err
	}
	return agentEdited{HandoffMs: ms(time.Since(start))}, nil
}

func (a *agent) metrics(r *http.Request) (any, error) {
	if a.current == nil {
		return nil, errors.New("metrics: no target is running: start one first")
	}
	return a.current.metrics(r.Context())
}

// remoteTarget is a target an agent runs on another machine.
type remoteTarget struct {
	base, token string
	client      *http.Client
	xds         string
}

// startRemote asks the agent of o to start the target name.
func startRemote(ctx context.Context, o options, name string) (*remoteTarget, machine, error) {
	t := &remoteTarget{base: strings.TrimRight(o.agent, "/"), token: o.agentToken,
		client: &http.Client{Timeout: o.timeout + 30*time.Second}}
	var started agentStarted
	err := t.call(ctx, http.MethodPost, "/v1/targets", agentStart{Target: name, Gateways: o.gateways, Routes: o.routes,
		Edits: o.edits, EditGateways: o.editGateways, Edit: o.edit, LogLevel: o.logLevel, TimeoutSeconds: o.timeout.Seconds()}, &started)
	if err != nil {
		return nil, machine{}, err
	}
	t.xds = started.XDS
	return t, started.Machine, nil
}

func (t *remoteTarget) call(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, t.base+path, body)
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+t.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := t.client.Do(req)
	if err != nil {
		return fmt.Errorf("agent: %w (is tollgate-load agent running there?)", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("agent: %s %s: %w", method, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e agentError
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return fmt.Errorf("agent: %s %s: %s: %s", method, path, resp.Status, e.Error)
		}
		return fmt.Errorf("agent: %s %s: %s", method, path, resp.Status)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("agent: %s %s: %w", method, path, err)
	}
	return nil
}

func (t *remoteTarget) xdsAddr() string { return t.xds }

func (t *remoteTarget) edit(ctx context.Context, k int) error {
	return t.call(ctx, http.MethodPost, "/v1/edit", agentEdit{K: k}, &agentEdited{})
}

func (t *remoteTarget) metrics(ctx context.Context) (processMetrics, error) {
	var pm processMetrics
	return pm, t.call(ctx, http.MethodGet, "/v1/metrics", nil, &pm)
}

func (t *remoteTarget) stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return t.call(ctx, http.MethodDelete, "/v1/targets", nil, nil)
}
