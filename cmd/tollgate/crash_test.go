package main

// The crash-safety test: 1,000 objects are written through the admin API
// of a real tollgate process while that process is killed with SIGKILL at
// random points. After each restart every acknowledged write is there,
// nothing is half-applied, and Envoys that reconnect to a restarted
// tollgate see no version change for content that did not change.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/tollgate-dev/tollgate/xds/envoysim"
)

const (
	crashObjects   = 1000 // distinct objects written through the API
	crashWriters   = 4    // concurrent writers; writer w owns the objects i with i%4 == w
	crashGateway   = "egress"
	crashBackend   = "upstream" // the file Backend, behind the file route
	crashNamespace = "default"
	crashToken     = "tg_crash-test-token"
	crashAPIPrefix = "/apis/tollgate.dev/v1alpha1"
)

// crashPolicies are the file policies: one plaintext HTTP gateway, and a
// Backend with its route. No secrets, so plaintext xDS serves them.
const crashPolicies = `apiVersion: tollgate.dev/v1alpha1
kind: Gateway
metadata: {name: ` + crashGateway + `}
spec:
  listeners: [{name: http, port: 10080, protocol: HTTP}]
---
apiVersion: tollgate.dev/v1alpha1
kind: Backend
metadata: {name: ` + crashBackend + `}
spec:
  hostname: upstream.internal
  port: 8000
  addresses: [{ip: 10.0.0.7}]
---
apiVersion: tollgate.dev/v1alpha1
kind: HTTPRoute
metadata: {name: files}
spec:
  parentRefs: [{name: ` + crashGateway + `}]
  hostnames: [files.example.test]
  rules:
  - backendRefs: [{name: ` + crashBackend + `}]
`

// The objects are a mix, since every write validates and translates the
// whole configuration again: one in four is an HTTPRoute (a virtual host
// of the gateway's one route configuration), which routes to the Backend
// its writer created just before it (i-4); the others are Backends, a
// third of them behind a route (a cluster each).

// crashIsRoute reports whether object i is an HTTPRoute.
func crashIsRoute(i int) bool { return (i/crashWriters)%4 == 3 }

// crashKind is object i's kind.
func crashKind(i int) string {
	if crashIsRoute(i) {
		return "HTTPRoute"
	}
	return "Backend"
}

// crashName is the name of object i.
func crashName(i int) string { return fmt.Sprintf("crash-%04d", i) }

// crashHost is the hostname of object i: a route's virtual host, a
// backend's upstream.
func crashHost(i int) string { return crashName(i) + ".example.test" }

// crashCluster is the cluster of a backend.
func crashCluster(name string) string { return "backend/" + crashNamespace + "/" + name }

// crashSpec is version v of object i's spec. Each version changes the
// spec (a route's request timeout, a backend's port): a new generation.
func crashSpec(i, v int) map[string]any {
	if crashIsRoute(i) {
		return map[string]any{
			"parentRefs": []any{map[string]any{"name": crashGateway}},
			"hostnames":  []any{crashHost(i)},
			"rules": []any{map[string]any{
				"backendRefs": []any{map[string]any{"name": crashName(i - crashWriters)}},
				"timeouts":    map[string]any{"request": fmt.Sprintf("%ds", 10+v)},
			}},
		}
	}
	return map[string]any{
		"hostname":  crashHost(i),
		"port":      8000 + v,
		"addresses": []any{map[string]any{"ip": fmt.Sprintf("10.1.%d.%d", i/250, i%250+1)}},
	}
}

// crashBody is version v of object i as written: its label repeats the
// version, so that a stored object whose label and spec disagree is seen
// as half-applied.
func crashBody(i, v int) []byte {
	data, _ := json.Marshal(map[string]any{
		"apiVersion": "tollgate.dev/v1alpha1", "kind": crashKind(i),
		"metadata": map[string]any{"name": crashName(i), "namespace": crashNamespace,
			"labels": map[string]any{"crash-version": strconv.Itoa(v)}},
		"spec": crashSpec(i, v),
	})
	return data
}

// crashJSON is v as encoding/json decodes it into any, for comparisons
// with decoded responses.
func crashJSON(v any) any {
	data, _ := json.Marshal(v)
	var out any
	_ = json.Unmarshal(data, &out)
	return out
}

// crashAPIObject is an object as the API answers it.
type crashAPIObject struct {
	Kind     string `json:"kind"`
	Metadata struct {
		Name            string            `json:"name"`
		Namespace       string            `json:"namespace"`
		Labels          map[string]string `json:"labels"`
		UID             string            `json:"uid"`
		ResourceVersion string            `json:"resourceVersion"`
		Generation      int64             `json:"generation"`
	} `json:"metadata"`
	Spec   map[string]any `json:"spec"`
	Status struct {
		Source string `json:"source"`
	} `json:"status"`
}

// rv is the object's resourceVersion.
func (o crashAPIObject) rv() (uint64, error) {
	return strconv.ParseUint(o.Metadata.ResourceVersion, 10, 64)
}

// wholeVersion checks that o is object i, whole: a version of it whose
// label and spec agree and whose metadata the server manages is set. It
// returns that version.
func (o crashAPIObject) wholeVersion(i int) (int, error) {
	if o.Kind != crashKind(i) || o.Metadata.Name != crashName(i) || o.Metadata.Namespace != crashNamespace {
		return 0, fmt.Errorf("object %s %s is %s %s/%s", crashKind(i), crashName(i), o.Kind, o.Metadata.Namespace, o.Metadata.Name)
	}
	v, err := strconv.Atoi(o.Metadata.Labels["crash-version"])
	if err != nil || v < 1 {
		return 0, fmt.Errorf("object %s has no crash-version label (labels %v): not whole", crashName(i), o.Metadata.Labels)
	}
	if want := crashJSON(crashSpec(i, v)); !reflect.DeepEqual(want, crashJSON(o.Spec)) {
		return v, fmt.Errorf("object %s is labelled version %d but its spec is not version %d's (half-applied?):\n got %v\nwant %v", crashName(i), v, v, crashJSON(o.Spec), want)
	}
	if _, err := o.rv(); err != nil || o.Metadata.UID == "" || o.Status.Source != "api" {
		return v, fmt.Errorf("object %s lacks its server metadata: resourceVersion %q uid %q source %q", crashName(i), o.Metadata.ResourceVersion, o.Metadata.UID, o.Status.Source)
	}
	if o.Metadata.Generation != int64(v) {
		return v, fmt.Errorf("object %s at version %d has generation %d: each version is one spec change, so generation must be %d", crashName(i), v, o.Metadata.Generation, v)
	}
	return v, nil
}

// crashLog collects the output of every tollgate process the test runs.
type crashLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *crashLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *crashLog) mark(format string, args ...any) {
	_, _ = fmt.Fprintf(l, "==== crash test: "+format+"\n", args...)
}

func (l *crashLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// size is how much was written so far.
func (l *crashLog) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Len()
}

// since is what was written after size was n.
func (l *crashLog) since(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.buf.Bytes()[n:])
}

// tail is the last n lines.
func (l *crashLog) tail(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	lines := strings.Split(strings.TrimRight(l.buf.String(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// grep lists the lines holding any of subs.
func (l *crashLog) grep(subs ...string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(l.buf.Bytes()))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		for _, s := range subs {
			if strings.Contains(sc.Text(), s) {
				out = append(out, sc.Text())
				break
			}
		}
	}
	return out
}

// crashServer runs tollgate as a child process that the test kills with
// SIGKILL and starts again on the same state directory and ports.
type crashServer struct {
	bin   string
	args  []string
	admin string // http://127.0.0.1:PORT
	xds   string
	logs  *crashLog

	mu      sync.Mutex
	changed chan struct{} // closed and replaced when gen or up change
	gen     int           // incremented when a kill begins
	up      bool          // serving and healthy
	cmd     *exec.Cmd
	exited  chan struct{}
	client  *http.Client // this incarnation's: no connection outlives a kill
	// Figures.
	starts, kills, startupKills, busyRetries int
}

// crashFreePort returns a port nothing listens on right now.
func crashFreePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().String()
}

func (s *crashServer) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// launch starts one process.
func (s *crashServer) launch() (*exec.Cmd, chan struct{}, error) {
	cmd := exec.Command(s.bin, s.args...)
	cmd.Stdout, cmd.Stderr = s.logs, s.logs
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	s.starts++
	s.logs.mark("started pid %d", cmd.Process.Pid)
	return cmd, exited, nil
}

var errCrashExited = errors.New("tollgate exited")

// waitHealthy polls /healthz until it answers 200, the process exits or
// ctx ends.
func (s *crashServer) waitHealthy(ctx context.Context, exited chan struct{}) error {
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for {
		resp, err := hc.Get(s.admin + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-exited:
			return errCrashExited
		case <-ctx.Done():
			return fmt.Errorf("tollgate not healthy: %w", context.Cause(ctx))
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// start runs tollgate until it is healthy, and returns a client for it;
// markUp then lets the writers at it. With startupKill set, the first
// process is killed at a random moment of its start first (while it opens
// bbolt and loads the store). A process that exits by itself because a
// port is still busy after a kill is started again after a pause, a
// bounded number of times; any other exit is an error.
func (s *crashServer) start(ctx context.Context, rnd *rand.Rand, startupKill bool) (*http.Client, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for attempt := 0; ; attempt++ {
		if attempt == 20 {
			return nil, fmt.Errorf("tollgate did not start in %d attempts", attempt)
		}
		from := s.logs.size()
		cmd, exited, err := s.launch()
		if err != nil {
			return nil, err
		}
		if startupKill && attempt == 0 {
			d := time.Duration(rnd.Intn(150)) * time.Millisecond
			select {
			case <-time.After(d):
			case <-exited:
			}
			_ = cmd.Process.Kill()
			<-exited
			s.startupKills++
			s.logs.mark("SIGKILL during start-up, %v after exec", d)
			continue
		}
		err = s.waitHealthy(ctx, exited)
		if errors.Is(err, errCrashExited) {
			if out := s.logs.since(from); !strings.Contains(out, "address already in use") {
				return nil, fmt.Errorf("tollgate exited during start (%v):\n%s", cmd.ProcessState, out)
			}
			s.busyRetries++
			s.logs.mark("tollgate exited during start (%v); starting again", cmd.ProcessState)
			time.Sleep(time.Duration(50*(attempt+1)) * time.Millisecond)
			continue
		}
		if err != nil {
			_ = cmd.Process.Kill()
			<-exited
			return nil, err
		}
		client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: crashWriters * 2}}
		s.mu.Lock()
		s.cmd, s.exited, s.client = cmd, exited, client
		s.mu.Unlock()
		return client, nil
	}
}

// markUp lets the writers go on.
func (s *crashServer) markUp() {
	s.mu.Lock()
	s.up = true
	s.notifyLocked()
	s.mu.Unlock()
}

// kill SIGKILLs the running process and waits for it to be gone. Writers
// are told first (gen), so that every request the kill breaks was started
// at an earlier gen.
func (s *crashServer) kill() {
	s.mu.Lock()
	s.gen++
	s.up = false
	s.notifyLocked()
	cmd, exited, client := s.cmd, s.exited, s.client
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-exited
	client.CloseIdleConnections()
	s.kills++
	s.logs.mark("SIGKILL pid %d", cmd.Process.Pid)
}

// waitUp waits until tollgate serves, and returns its gen and client.
func (s *crashServer) waitUp(ctx context.Context) (int, *http.Client, error) {
	for {
		s.mu.Lock()
		gen, up, client, ch := s.gen, s.up, s.client, s.changed
		s.mu.Unlock()
		if up {
			return gen, client, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return 0, nil, fmt.Errorf("waiting for tollgate to serve again: %w", context.Cause(ctx))
		}
	}
}

// killed reports whether a kill began since gen, and else whether the
// process exited by itself.
func (s *crashServer) killed(gen int) (killed, exitedAlone bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gen != gen {
		return true, false
	}
	select {
	case <-s.exited:
		return false, true
	default:
		return false, false
	}
}

// stop kills the process for good.
func (s *crashServer) stop() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd != nil {
		_ = cmd.Process.Kill()
		<-exited
	}
}

// request sends one API request and decodes a 2xx answer into out.
func crashRequest(ctx context.Context, client *http.Client, method, url string, body []byte, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+crashToken)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode >= 300 {
		return resp.StatusCode, &crashStatusError{code: resp.StatusCode, body: string(data)}
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s answered %d with a body that does not decode: %w: %.300s", method, url, resp.StatusCode, err, data)
		}
	}
	return resp.StatusCode, nil
}

// crashStatusError is an answer >= 300: the server answered, so it is not
// a broken connection.
type crashStatusError struct {
	code int
	body string
}

func (e *crashStatusError) Error() string { return fmt.Sprintf("HTTP %d: %.500s", e.code, e.body) }

// crashObject is the test's record of one object. Its writer is the only
// one to write it, and does so in order, retrying a write whose outcome a
// kill made unknown until it is acknowledged.
type crashObject struct {
	mu        sync.Mutex
	attempted int    // highest version sent
	ackedV    int    // version last acknowledged (0: none)
	ackedRV   uint64 // its resourceVersion
	// acks are every acknowledged (resourceVersion, version) for the
	// audit check; an unchanged write acknowledges an earlier revision
	// again.
	acks map[uint64]int
	// writes is how many revisions of it the server must have stored:
	// one per version that reached the store.
	writes int
}

// crashOp is one planned write: object obj, a new version or (same) the
// last acknowledged content again.
type crashOp struct {
	obj  int
	same bool
}

// crashRun is the shared state of one test run.
type crashRun struct {
	srv  *crashServer
	objs []*crashObject

	mu                            sync.Mutex
	acked, unknown, unchangedAcks int
	inflight                      int
	ackTimes                      []time.Time
	down                          time.Duration // killed until the restarted tollgate was checked
	restarts                      []time.Duration
	failures                      []string
	cancel                        context.CancelCauseFunc
	ackedCh                       chan struct{} // signalled on each ack
}

// fail records a failure from any goroutine and stops the run.
func (r *crashRun) fail(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.mu.Lock()
	r.failures = append(r.failures, msg)
	r.mu.Unlock()
	r.cancel(errors.New(msg))
}

func (r *crashRun) objectURL(i int) string {
	return r.srv.admin + crashAPIPrefix + "/namespaces/" + crashNamespace + "/" + strings.ToLower(crashKind(i)) + "s/" + crashName(i)
}

// get reads object i: ok false when it does not exist. A broken connection
// (a kill) is retried once tollgate serves again.
func (r *crashRun) get(ctx context.Context, i int) (crashAPIObject, bool, error) {
	for {
		gen, client, err := r.srv.waitUp(ctx)
		if err != nil {
			return crashAPIObject{}, false, err
		}
		var o crashAPIObject
		code, err := crashRequest(ctx, client, http.MethodGet, r.objectURL(i), nil, &o)
		if code == http.StatusNotFound {
			return o, false, nil
		}
		var se *crashStatusError
		if err != nil && !errors.As(err, &se) && ctx.Err() == nil {
			if killed, alone := r.srv.killed(gen); killed {
				continue
			} else if alone {
				return o, false, fmt.Errorf("GET %s: tollgate exited by itself: %w", crashName(i), err)
			}
		}
		if err != nil {
			return o, false, fmt.Errorf("GET %s: %w", crashName(i), err)
		}
		return o, true, nil
	}
}

// writer runs the ops of one writer.
func (r *crashRun) writer(ctx context.Context, ops []crashOp) {
	for _, op := range ops {
		if err := r.write(ctx, op); err != nil {
			if ctx.Err() == nil {
				r.fail("%v", err)
			}
			return
		}
	}
}

// write performs one op until it is acknowledged. A write broken by a
// kill is checked once tollgate serves again (the object must be whole,
// either as before or as written) and then sent again; its answer must
// agree with what the check saw.
func (r *crashRun) write(ctx context.Context, op crashOp) error {
	o := r.objs[op.obj]
	name := crashName(op.obj)
	o.mu.Lock()
	v := o.ackedV
	if !op.same {
		v = o.attempted + 1
		o.attempted = v
	}
	prevV, prevRV := o.ackedV, o.ackedRV
	o.mu.Unlock()
	body := crashBody(op.obj, v)

	// What the answer must be: created (201) for the first write, else an
	// update (200) with a new revision, or, for the same content again, 200
	// with the same revision.
	wantCreated, wantSameRV := prevV == 0, op.same
	var seenRV uint64 // resourceVersion this write was found stored at after a kill
	for {
		gen, client, err := r.srv.waitUp(ctx)
		if err != nil {
			return err
		}
		r.mu.Lock()
		r.inflight++
		r.mu.Unlock()
		var got crashAPIObject
		code, err := crashRequest(ctx, client, http.MethodPut, r.objectURL(op.obj), body, &got)
		r.mu.Lock()
		r.inflight--
		r.mu.Unlock()
		var se *crashStatusError
		if err != nil && !errors.As(err, &se) && ctx.Err() == nil {
			killed, alone := r.srv.killed(gen)
			if !killed {
				return fmt.Errorf("PUT %s version %d failed, but tollgate was not killed (exited by itself: %v): %w", name, v, alone, err)
			}
			// Unknown: the kill came before the answer. Once tollgate
			// serves again, the object must be whole: as it was, or as
			// this write made it.
			r.mu.Lock()
			r.unknown++
			r.mu.Unlock()
			cur, exists, err := r.get(ctx, op.obj)
			if err != nil {
				return err
			}
			switch {
			case !exists && prevV != 0:
				return fmt.Errorf("%s: version %d (resourceVersion %d) was acknowledged, but after a kill during the write of version %d the object is gone", name, prevV, prevRV, v)
			case !exists && seenRV != 0:
				return fmt.Errorf("%s: version %d was stored at resourceVersion %d after one restart, and is gone after another", name, v, seenRV)
			case !exists:
				wantCreated, wantSameRV = true, false
			default:
				curV, err := cur.wholeVersion(op.obj)
				if err != nil {
					return fmt.Errorf("after a kill during the write of version %d: %w", v, err)
				}
				curRV, _ := cur.rv()
				switch {
				case curV == v && seenRV != 0 && curRV != seenRV:
					return fmt.Errorf("%s: version %d was stored at resourceVersion %d after one restart, and at %d after another", name, v, seenRV, curRV)
				case curV == v && seenRV != 0:
					// Seen before a later kill broke the write again.
				case curV == prevV && curRV != prevRV:
					return fmt.Errorf("%s: the acknowledged version %d had resourceVersion %d, but after a kill it has %d with the same content", name, prevV, prevRV, curRV)
				case curV == prevV && seenRV != 0:
					return fmt.Errorf("%s: version %d was stored at resourceVersion %d after one restart, and after another the object is back at version %d", name, v, seenRV, curV)
				case curV == prevV:
					// The broken write did not reach the store.
				case curV == v && curRV <= prevRV:
					return fmt.Errorf("%s: version %d is stored at resourceVersion %d, not after the acknowledged %d", name, v, curRV, prevRV)
				case curV == v:
					// It did: sending it again changes nothing.
					wantCreated, wantSameRV, seenRV = false, true, curRV
					o.mu.Lock()
					o.writes++
					o.mu.Unlock()
				default:
					return fmt.Errorf("%s: after a kill during the write of version %d (last acknowledged %d), the stored version is %d", name, v, prevV, curV)
				}
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("PUT %s version %d: %w", name, v, err)
		}
		gotV, err := got.wholeVersion(op.obj)
		if err != nil {
			return fmt.Errorf("the answer to PUT %s: %w", name, err)
		}
		rv, _ := got.rv()
		switch {
		case gotV != v:
			return fmt.Errorf("PUT %s version %d answered version %d", name, v, gotV)
		case wantCreated && code != http.StatusCreated:
			return fmt.Errorf("PUT %s created it but answered %d, not 201", name, code)
		case !wantCreated && code != http.StatusOK:
			return fmt.Errorf("PUT %s replaced it but answered %d, not 200", name, code)
		case wantSameRV && seenRV != 0 && rv != seenRV:
			return fmt.Errorf("PUT %s of the content stored at resourceVersion %d answered resourceVersion %d: unchanged content made a new revision", name, seenRV, rv)
		case wantSameRV && seenRV == 0 && rv != prevRV:
			return fmt.Errorf("PUT %s of unchanged content answered resourceVersion %d, not the acknowledged %d", name, rv, prevRV)
		case !wantSameRV && rv <= prevRV:
			return fmt.Errorf("PUT %s version %d answered resourceVersion %d, not after the acknowledged %d", name, v, rv, prevRV)
		}
		o.mu.Lock()
		if !wantSameRV {
			o.writes++
		}
		o.ackedV, o.ackedRV = v, rv
		if o.acks == nil {
			o.acks = map[uint64]int{}
		}
		o.acks[rv] = v
		o.mu.Unlock()
		r.mu.Lock()
		r.acked++
		r.ackTimes = append(r.ackTimes, time.Now())
		if op.same {
			r.unchangedAcks++
		}
		r.mu.Unlock()
		select {
		case r.ackedCh <- struct{}{}:
		default:
		}
		return nil
	}
}

// ackedCount is how many writes were acknowledged.
func (r *crashRun) ackedCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.acked
}

// crashList is a list answer.
type crashList struct {
	Kind     string `json:"kind"`
	Metadata struct {
		ResourceVersion string `json:"resourceVersion"`
	} `json:"metadata"`
	Items []crashAPIObject `json:"items"`
}

// checkStored lists the objects of a restarted tollgate, before any
// writer continues, and checks every object: whole, and at the version
// last acknowledged or at the newer one being written when the kill came,
// with its resourceVersion accordingly; exact (no write was in flight)
// requires the acknowledged version itself. The file objects are there
// and read-only. It returns the API objects by name and the store's
// revision.
func (r *crashRun) checkStored(ctx context.Context, client *http.Client, exact bool) (map[string]crashAPIObject, uint64, error) {
	stored := map[string]crashAPIObject{}
	var storeRev uint64
	for _, kind := range []string{"HTTPRoute", "Backend"} {
		var list crashList
		if _, err := crashRequest(ctx, client, http.MethodGet, r.srv.admin+crashAPIPrefix+"/namespaces/"+crashNamespace+"/"+strings.ToLower(kind)+"s", nil, &list); err != nil {
			return nil, 0, fmt.Errorf("list after restart: %w", err)
		}
		if list.Kind != kind+"List" {
			return nil, 0, fmt.Errorf("list of %ss after restart is a %q", kind, list.Kind)
		}
		rev, err := strconv.ParseUint(list.Metadata.ResourceVersion, 10, 64)
		if err != nil || (storeRev != 0 && rev != storeRev) {
			return nil, 0, fmt.Errorf("list of %ss after restart at resourceVersion %q (%d before, no write since)", kind, list.Metadata.ResourceVersion, storeRev)
		}
		storeRev = rev
		files := 0
		for _, it := range list.Items {
			if it.Status.Source != "api" {
				if !strings.HasPrefix(it.Status.Source, "file:") || (it.Metadata.Name != crashBackend && it.Metadata.Name != "files") {
					return nil, 0, fmt.Errorf("after restart the list of %ss holds %s from %q", kind, it.Metadata.Name, it.Status.Source)
				}
				files++
				continue
			}
			if _, dup := stored[it.Metadata.Name]; dup {
				return nil, 0, fmt.Errorf("list after restart holds %s twice", it.Metadata.Name)
			}
			stored[it.Metadata.Name] = it
		}
		if files != 1 {
			return nil, 0, fmt.Errorf("after restart the list of %ss holds %d objects of the policy files, not 1", kind, files)
		}
	}
	for i, o := range r.objs {
		o.mu.Lock()
		ackedV, ackedRV, attempted := o.ackedV, o.ackedRV, o.attempted
		o.mu.Unlock()
		name := crashKind(i) + " " + crashName(i)
		it, ok := stored[crashName(i)]
		if !ok {
			if ackedV != 0 {
				return nil, 0, fmt.Errorf("after restart %s is missing, but version %d was acknowledged at resourceVersion %d", name, ackedV, ackedRV)
			}
			continue
		}
		v, err := it.wholeVersion(i)
		if err != nil {
			return nil, 0, fmt.Errorf("after restart: %w", err)
		}
		rv, _ := it.rv()
		switch {
		case rv > storeRev:
			return nil, 0, fmt.Errorf("after restart %s is at resourceVersion %d, after the store's %d", name, rv, storeRev)
		case v < ackedV:
			return nil, 0, fmt.Errorf("after restart %s is at version %d (resourceVersion %d), older than the acknowledged %d (resourceVersion %d)", name, v, rv, ackedV, ackedRV)
		case v > attempted:
			return nil, 0, fmt.Errorf("after restart %s is at version %d, never written (last sent %d)", name, v, attempted)
		case v == ackedV && rv != ackedRV:
			return nil, 0, fmt.Errorf("after restart %s is at the acknowledged version %d but at resourceVersion %d, not %d", name, v, rv, ackedRV)
		case v > ackedV && rv <= ackedRV:
			return nil, 0, fmt.Errorf("after restart %s is at version %d with resourceVersion %d, not after the acknowledged %d", name, v, rv, ackedRV)
		case exact && v != ackedV:
			return nil, 0, fmt.Errorf("after the final restart %s is at version %d, not the acknowledged %d", name, v, ackedV)
		}
	}
	if len(stored) > len(r.objs) {
		return nil, 0, fmt.Errorf("after restart the API holds %d objects, more than the %d the test writes", len(stored), len(r.objs))
	}
	for name := range stored {
		if n, err := strconv.Atoi(strings.TrimPrefix(name, "crash-")); err != nil || crashName(n) != name || n >= len(r.objs) {
			return nil, 0, fmt.Errorf("after restart the API holds %s, which the test never wrote", name)
		}
	}
	return stored, storeRev, nil
}

// killer kills tollgate once the acknowledged writes reach each point of
// kills (plus a random 0–30 ms, so that kills land inside writes, commits
// and fsyncs alike), starts it again on the same state directory and
// ports, checks what the restarted tollgate holds, and lets the writers go
// on.
func (r *crashRun) killer(ctx context.Context, rnd *rand.Rand, kills []int, done <-chan struct{}) (midWrite int) {
	for _, at := range kills {
		for r.ackedCount() < at {
			select {
			case <-r.ackedCh:
			case <-done:
				return midWrite
			case <-ctx.Done():
				return midWrite
			case <-time.After(100 * time.Millisecond):
			}
		}
		time.Sleep(time.Duration(rnd.Intn(30)) * time.Millisecond)
		r.mu.Lock()
		inflight := r.inflight
		r.mu.Unlock()
		if inflight > 0 {
			midWrite++
		}
		killedAt := time.Now()
		r.srv.kill()
		client, err := r.srv.start(ctx, rnd, rnd.Intn(4) == 0)
		if err != nil {
			r.fail("restart after kill %d: %v", r.srv.kills, err)
			return midWrite
		}
		// The writers wait until markUp: what the restarted tollgate
		// loaded is checked first.
		if _, _, err := r.checkStored(ctx, client, false); err != nil {
			r.fail("%v", err)
			return midWrite
		}
		r.mu.Lock()
		r.down += time.Since(killedAt)
		r.restarts = append(r.restarts, time.Since(killedAt).Round(time.Millisecond))
		r.mu.Unlock()
		r.srv.markUp()
	}
	return midWrite
}

// crashServed is what the gateway serves once every object is written:
// the clusters (the file backend's and those of the backends behind API
// routes, sorted) and the number of virtual hosts (the file route's and
// one per API route).
func crashServed() (clusters []string, vhosts int) {
	clusters = []string{crashCluster(crashBackend)}
	vhosts = 1
	for i := range crashObjects {
		if crashIsRoute(i) {
			clusters = append(clusters, crashCluster(crashName(i-crashWriters)))
			vhosts++
		}
	}
	slices.Sort(clusters)
	return clusters, vhosts
}

// crashComplete reports whether an Envoy holds the gateway's whole
// configuration once every object is written.
func crashComplete() func(envoysim.State) bool {
	clusters, vhosts := crashServed()
	return func(s envoysim.State) bool {
		if len(s.Names(resourcev3.ListenerType)) != 1 || len(s.Names(resourcev3.RouteType)) != 1 {
			return false
		}
		if !slices.Equal(s.Names(resourcev3.ClusterType), clusters) {
			return false
		}
		for _, name := range clusters {
			c, _ := envoysim.Get[*clusterv3.Cluster](s, name)
			if _, ok := envoysim.Get[*endpointv3.ClusterLoadAssignment](s, name); c.GetType() == clusterv3.Cluster_EDS && !ok {
				return false
			}
		}
		rc, _ := envoysim.Get[*routev3.RouteConfiguration](s, s.Names(resourcev3.RouteType)[0])
		return len(rc.GetVirtualHosts()) == vhosts
	}
}

var crashTypes = []string{resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.ListenerType, resourcev3.RouteType}

// crashADS is a bare ADS stream: it sends requests as given, records and
// ACKs every response, like an Envoy that reconnects with the state it
// held.
type crashADS struct {
	conn  *grpc.ClientConn
	delta grpc.BidiStreamingClient[discovery.DeltaDiscoveryRequest, discovery.DeltaDiscoveryResponse]
	sotw  grpc.BidiStreamingClient[discovery.DiscoveryRequest, discovery.DiscoveryResponse]

	mu        sync.Mutex
	deltaResp []*discovery.DeltaDiscoveryResponse
	sotwResp  []*discovery.DiscoveryResponse
	err       error
	changed   chan struct{}
}

func dialCrashADS(t *testing.T, ctx context.Context, addr string, delta bool) *crashADS {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	c := &crashADS{conn: conn, changed: make(chan struct{})}
	ads := discovery.NewAggregatedDiscoveryServiceClient(conn)
	if delta {
		c.delta, err = ads.DeltaAggregatedResources(ctx)
	} else {
		c.sotw, err = ads.StreamAggregatedResources(ctx)
	}
	require.NoError(t, err)
	go c.recv()
	return c
}

func (c *crashADS) recv() {
	for {
		var err error
		if c.delta != nil {
			var m *discovery.DeltaDiscoveryResponse
			if m, err = c.delta.Recv(); err == nil {
				c.mu.Lock()
				c.deltaResp = append(c.deltaResp, m)
				c.mu.Unlock()
				err = c.delta.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: m.GetTypeUrl(), ResponseNonce: m.GetNonce()})
			}
		} else {
			var m *discovery.DiscoveryResponse
			if m, err = c.sotw.Recv(); err == nil {
				c.mu.Lock()
				c.sotwResp = append(c.sotwResp, m)
				c.mu.Unlock()
				// No ACK needed for the check: the server must not send
				// anything else either way.
			}
		}
		c.mu.Lock()
		if err != nil {
			c.err = err
		}
		close(c.changed)
		c.changed = make(chan struct{})
		c.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// waitFor waits until cond holds for the responses so far, or ctx ends.
func (c *crashADS) waitFor(ctx context.Context, cond func() bool) error {
	for {
		c.mu.Lock()
		ch, err := c.changed, c.err
		ok := cond()
		c.mu.Unlock()
		if ok {
			return nil
		}
		if err != nil {
			return fmt.Errorf("ADS stream ended: %w", err)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// quiet waits for d without a new response.
func (c *crashADS) quiet(ctx context.Context, d time.Duration) {
	for {
		c.mu.Lock()
		ch := c.changed
		c.mu.Unlock()
		select {
		case <-ch:
		case <-time.After(d):
			return
		case <-ctx.Done():
			return
		}
	}
}

func crashNode(id string) *corev3.Node { return &corev3.Node{Id: id, Cluster: crashGateway} }

// crashDeltaSubscribe subscribes a delta stream to the gateway's resources
// (clusters and listeners as wildcard, endpoints and routes by name, as
// Envoy does) and returns the system and per-resource versions it gets.
func crashDeltaSubscribe(c *crashADS, names map[string][]string, initial map[string]map[string]string) error {
	for i, typeURL := range crashTypes {
		req := &discovery.DeltaDiscoveryRequest{TypeUrl: typeURL, InitialResourceVersions: initial[typeURL]}
		if i == 0 {
			req.Node = crashNode("crash-delta-raw")
		}
		if typeURL == resourcev3.EndpointType || typeURL == resourcev3.RouteType {
			req.ResourceNamesSubscribe = names[typeURL]
		}
		if err := c.delta.Send(req); err != nil {
			return err
		}
	}
	return nil
}

// crashBuild builds the real tollgate binary into dir.
func crashBuild(t *testing.T, ctx context.Context, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "tollgate")
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	require.NoError(t, err)
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/tollgate")
	build.Dir = filepath.Dir(strings.TrimSpace(string(gomod)))
	out, err := build.CombinedOutput()
	require.NoError(t, err, "go build:\n%s", out)
	return bin
}

// TestCrashSafety is the crash-safety test of the API store: 1,000 API
// writes with tollgate SIGKILLed at random points. TOLLGATE_CRASH_SEED
// replays a run's schedule.
func TestCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("load test: 1,000 API writes through a tollgate killed with SIGKILL about ten times")
	}
	seed := time.Now().UnixNano()
	if s := os.Getenv("TOLLGATE_CRASH_SEED"); s != "" {
		var err error
		seed, err = strconv.ParseInt(s, 10, 64)
		require.NoError(t, err, "TOLLGATE_CRASH_SEED")
	}
	t.Logf("seed %d (TOLLGATE_CRASH_SEED=%d replays the schedule)", seed, seed)
	rnd := rand.New(rand.NewSource(seed))
	began := time.Now()

	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	ctx, stopTimer := context.WithTimeout(ctx, 3*time.Minute)
	defer stopTimer()

	tmp := t.TempDir()
	bin := crashBuild(t, ctx, tmp)
	t.Logf("built tollgate in %v", time.Since(began).Round(time.Millisecond))

	policies, state := filepath.Join(tmp, "policies"), filepath.Join(tmp, "state")
	require.NoError(t, os.MkdirAll(policies, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(policies, "gateway.yaml"), []byte(crashPolicies), 0o644))
	sum := sha256.Sum256([]byte(crashToken))
	tokens := filepath.Join(tmp, "tokens.yaml")
	require.NoError(t, os.WriteFile(tokens, []byte("tokens:\n- name: crash\n  sha256: "+hex.EncodeToString(sum[:])+"\n  namespaces: [\"*\"]\n"), 0o600))

	// A kill cannot lose what the kernel already holds: SIGKILL shows
	// that nothing is acknowledged before bbolt wrote it, not that it was
	// synced. That is checked on the system calls instead.
	t.Run("SyncBeforeAck", func(t *testing.T) { crashSyncBeforeAck(t, bin, policies, tokens) })

	adminAddr, xdsAddr := crashFreePort(t), crashFreePort(t)
	srv := &crashServer{
		bin: bin, admin: "http://" + adminAddr, xds: xdsAddr, logs: &crashLog{}, changed: make(chan struct{}),
		args: []string{"serve", "--policies", policies, "--state-dir", state, "--api-tokens", tokens,
			"--xds-addr", xdsAddr, "--admin-addr", adminAddr, "--log-level", "info"},
	}
	t.Cleanup(srv.stop)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("tollgate logs (last 150 lines):\n%s", srv.logs.tail(150))
		}
	})
	_, err := srv.start(ctx, rnd, false)
	require.NoError(t, err)
	srv.markUp()

	run := &crashRun{srv: srv, cancel: cancel, ackedCh: make(chan struct{}, 1)}
	for range crashObjects {
		run.objs = append(run.objs, &crashObject{})
	}
	// The plan: each writer creates its objects in order; now and then
	// it writes a new version of one it created before, or the same
	// content again (no new revision).
	plans := make([][]crashOp, crashWriters)
	for w := range plans {
		var mine []int
		for i := w; i < crashObjects; i += crashWriters {
			plans[w] = append(plans[w], crashOp{obj: i})
			mine = append(mine, i)
			switch p := rnd.Float64(); {
			case p < 0.12:
				plans[w] = append(plans[w], crashOp{obj: mine[rnd.Intn(len(mine))]})
			case p < 0.17:
				plans[w] = append(plans[w], crashOp{obj: mine[rnd.Intn(len(mine))], same: true})
			}
		}
	}
	total := 0
	for _, p := range plans {
		total += len(p)
	}
	// Kill points, spread over the whole run, so that some come when the
	// store is small and some when it holds nearly everything.
	nKills := 8 + rnd.Intn(8)
	var kills []int
	for range nKills {
		kills = append(kills, rnd.Intn(total))
	}
	slices.Sort(kills)
	t.Logf("%d writes planned (%d objects, %d writers), %d kills after acknowledged writes %v", total, crashObjects, crashWriters, nKills, kills)

	writing := time.Now()
	done := make(chan struct{})
	var wg sync.WaitGroup
	for _, plan := range plans {
		wg.Add(1)
		go func() {
			defer wg.Done()
			run.writer(ctx, plan)
		}()
	}
	killerDone := make(chan int)
	go func() { killerDone <- run.killer(ctx, rand.New(rand.NewSource(rnd.Int63())), kills, done) }()
	wg.Wait()
	close(done)
	midWrite := <-killerDone
	writeTime := time.Since(writing)
	require.Empty(t, run.failures, "failures during the writes (seed %d)", seed)
	require.NoError(t, ctx.Err())
	t.Logf("writes: %d acknowledged (%d of unchanged content), %d unknown (broken by a kill, checked and sent again); "+
		"%d kills (%d with a write in flight) + %d during start-up, %d starts, %d restarts for a busy port; %v of writing, %.0f acknowledged writes/s",
		run.acked, run.unchangedAcks, run.unknown, srv.kills, midWrite, srv.startupKills, srv.starts, srv.busyRetries,
		writeTime.Round(time.Millisecond), float64(run.acked)/writeTime.Seconds())
	require.Equal(t, total, run.acked)
	// Throughput by quarter of the run (down time included), since each
	// write validates and translates the whole configuration again.
	var quarters []string
	from := writing
	for q := 1; q <= 4; q++ {
		at := run.ackTimes[q*len(run.ackTimes)/4-1]
		quarters = append(quarters, fmt.Sprintf("%.0f/s", float64(len(run.ackTimes)/4)/at.Sub(from).Seconds()))
		from = at
	}
	t.Logf("acknowledged writes/s by quarter %v; %v down for kills, restarts and checks (%v each)", quarters, run.down.Round(time.Millisecond), run.restarts)
	require.GreaterOrEqual(t, srv.kills, 1)

	// The Envoy view before the last kill: SotW and Delta Envoys with the
	// whole configuration, and the per-resource versions a reconnecting
	// Envoy would send.
	_, client, err := srv.waitUp(ctx)
	require.NoError(t, err)
	// within bounds one wait of the checks below.
	within := func(d time.Duration) context.Context {
		c, cancel := context.WithTimeout(ctx, d)
		t.Cleanup(cancel)
		return c
	}
	envoy := func(id string, delta bool) envoysim.State {
		c, err := envoysim.New(ctx, srv.xds, envoysim.Options{NodeID: id, Gateway: crashGateway, Delta: delta,
			DialOptions: []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}})
		require.NoError(t, err)
		defer c.Close()
		st, err := c.WaitFor(within(20*time.Second), crashComplete())
		require.NoError(t, err, "%s: the whole configuration", id)
		return st
	}
	sotwBefore, deltaBefore := envoy("crash-sotw-1", false), envoy("crash-delta-1", true)
	require.Equal(t, sotwBefore.Versions, deltaBefore.Versions)
	var gatewaysBefore map[string]map[string]string
	_, err = crashRequest(ctx, client, http.MethodGet, srv.admin+"/status/gateways", nil, &gatewaysBefore)
	require.NoError(t, err)

	names := map[string][]string{}
	for _, typeURL := range crashTypes {
		names[typeURL] = deltaBefore.Names(typeURL)
	}
	raw := dialCrashADS(t, ctx, srv.xds, true)
	require.NoError(t, crashDeltaSubscribe(raw, names, nil))
	resourceVersions := map[string]map[string]string{}
	systemVersions := map[string]string{}
	require.NoError(t, raw.waitFor(within(20*time.Second), func() bool {
		for _, m := range raw.deltaResp {
			if resourceVersions[m.GetTypeUrl()] == nil {
				resourceVersions[m.GetTypeUrl()] = map[string]string{}
			}
			for _, res := range m.GetResources() {
				resourceVersions[m.GetTypeUrl()][res.GetName()] = res.GetVersion()
			}
			systemVersions[m.GetTypeUrl()] = m.GetSystemVersionInfo()
		}
		raw.deltaResp = nil
		for _, typeURL := range crashTypes {
			if len(resourceVersions[typeURL]) != len(names[typeURL]) {
				return false
			}
		}
		return true
	}), "the raw delta stream gets every resource")
	raw.conn.Close()

	// The final kill, with no write after it, and the restart.
	srv.kill()
	client, err = srv.start(ctx, rnd, false)
	require.NoError(t, err)
	srv.markUp()

	// Every acknowledged write is there, whole, at its acknowledged
	// version and resourceVersion (every write was acknowledged in the
	// end), and nothing else is.
	byName, storeRev, err := run.checkStored(ctx, client, true)
	require.NoError(t, err)
	require.Len(t, byName, crashObjects)

	// GET of each object says the same as the list.
	var getWG sync.WaitGroup
	var getMu sync.Mutex
	var getErrs []string
	for w := range crashWriters {
		getWG.Add(1)
		go func() {
			defer getWG.Done()
			for i := w; i < crashObjects; i += crashWriters {
				o, ok, err := run.get(ctx, i)
				problem := ""
				switch {
				case err != nil:
					problem = err.Error()
				case !ok:
					problem = crashName(i) + " is listed but GET says 404"
				case !reflect.DeepEqual(crashJSON(o), crashJSON(byName[crashName(i)])):
					problem = fmt.Sprintf("GET %s differs from its list item:\n%v\n%v", crashName(i), crashJSON(o), crashJSON(byName[crashName(i)]))
				}
				if problem != "" {
					getMu.Lock()
					getErrs = append(getErrs, problem)
					getMu.Unlock()
				}
			}
		}()
	}
	getWG.Wait()
	require.Empty(t, getErrs)

	// The audit log: one entry per stored revision, 1..storeRev with no
	// gap and no duplicate, each for an object of the test; every
	// acknowledged revision is the entry of that object (a revision number
	// reused after a crash would name another); each object has as many
	// entries as versions that reached the store, the last at its
	// resourceVersion.
	type auditItem struct {
		Revision   uint64 `json:"revision"`
		Verb       string `json:"verb"`
		Object     string `json:"object"`
		Name       string `json:"name"`
		Namespace  string `json:"namespace"`
		Kind       string `json:"kind"`
		Generation int64  `json:"generation"`
		Who        string `json:"who"`
	}
	var audit []auditItem
	for after := uint64(0); ; {
		var page struct {
			Items []auditItem `json:"items"`
		}
		_, err := crashRequest(ctx, client, http.MethodGet, fmt.Sprintf("%s%s/audit?after=%d&limit=1000", srv.admin, crashAPIPrefix, after), nil, &page)
		require.NoError(t, err)
		if len(page.Items) == 0 {
			break
		}
		audit = append(audit, page.Items...)
		after = page.Items[len(page.Items)-1].Revision
	}
	require.Len(t, audit, int(storeRev), "one audit entry per revision of the store (at %d)", storeRev)
	perObject := map[string][]auditItem{}
	for n, e := range audit {
		require.Equal(t, uint64(n+1), e.Revision, "audit entries are revisions 1..%d in order, no gap, no duplicate", storeRev)
		require.Equal(t, crashNamespace, e.Namespace)
		require.Equal(t, "token:crash", e.Who)
		require.Contains(t, []string{"create", "replace"}, e.Verb, "%+v", e)
		perObject[e.Name] = append(perObject[e.Name], e)
	}
	require.Len(t, perObject, crashObjects)
	for i, o := range run.objs {
		name := crashName(i)
		entries := perObject[name]
		rv, _ := byName[name].rv()
		require.Len(t, entries, o.writes, "%s: one audit entry per version stored (%d)", name, o.writes)
		require.Equal(t, "create", entries[0].Verb, "%s: its first entry", name)
		for k, e := range entries {
			require.Equal(t, crashKind(i), e.Kind, "%s", name)
			require.Equal(t, crashKind(i)+"/"+name, e.Object)
			require.Equal(t, int64(k+1), e.Generation, "%s: the generation of its entry %d", name, k)
			if k > 0 {
				require.Equal(t, "replace", e.Verb)
			}
		}
		require.Equal(t, rv, entries[len(entries)-1].Revision, "%s: its last entry is its resourceVersion", name)
		for ackRV, v := range o.acks {
			require.LessOrEqual(t, ackRV, storeRev)
			e := audit[ackRV-1]
			require.Equal(t, name, e.Name, "acknowledged resourceVersion %d of %s (version %d) is in the audit log as %s's: the acknowledged write was lost and its revision reused", ackRV, name, v, e.Object)
			require.Equal(t, int64(v), e.Generation, "acknowledged resourceVersion %d of %s", ackRV, name)
		}
	}

	// What is stored is what is served: a virtual host per stored route
	// with its version's timeout, and the endpoint of each backend behind
	// a route at its version's port.
	sotwAgain, deltaAgain := envoy("crash-sotw-2", false), envoy("crash-delta-2", true)
	rc, _ := envoysim.Get[*routev3.RouteConfiguration](sotwAgain, sotwAgain.Names(resourcev3.RouteType)[0])
	timeouts := map[string]time.Duration{}
	for _, vh := range rc.GetVirtualHosts() {
		require.Len(t, vh.GetDomains(), 1)
		timeouts[vh.GetDomains()[0]] = vh.GetRoutes()[0].GetRoute().GetTimeout().AsDuration()
	}
	for i, o := range run.objs {
		if crashIsRoute(i) {
			require.Equal(t, time.Duration(10+o.ackedV)*time.Second, timeouts[crashHost(i)], "%s is served at its stored version %d", crashHost(i), o.ackedV)
			b := i - crashWriters
			cla, ok := envoysim.Get[*endpointv3.ClusterLoadAssignment](sotwAgain, crashCluster(crashName(b)))
			require.True(t, ok, "the endpoints of %s", crashName(b))
			addr := cla.GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
			require.Equal(t, crashSpec(b, 1)["addresses"].([]any)[0].(map[string]any)["ip"], addr.GetAddress())
			require.Equal(t, uint32(8000+run.objs[b].ackedV), addr.GetPortValue(), "%s is served at its stored version %d", crashName(b), run.objs[b].ackedV)
		}
	}

	// No version change for unchanged content: the restarted tollgate
	// serves the same versions and the same resources, to new Envoys of
	// either protocol.
	var gatewaysAfter map[string]map[string]string
	_, err = crashRequest(ctx, client, http.MethodGet, srv.admin+"/status/gateways", nil, &gatewaysAfter)
	require.NoError(t, err)
	require.Equal(t, gatewaysBefore, gatewaysAfter, "the versions of every gateway across the restart")
	for _, pair := range []struct {
		name          string
		before, after envoysim.State
	}{{"sotw", sotwBefore, sotwAgain}, {"delta", deltaBefore, deltaAgain}} {
		require.Equal(t, pair.before.Versions, pair.after.Versions, "%s Envoy: versions across the restart", pair.name)
		for _, typeURL := range crashTypes {
			require.Equal(t, pair.before.Names(typeURL), pair.after.Names(typeURL), "%s %s", pair.name, typeURL)
			for name, m := range pair.before.Resources[typeURL] {
				require.True(t, proto.Equal(m, pair.after.Resources[typeURL][name]), "%s: %s %s changed across the restart", pair.name, typeURL, name)
			}
		}
	}

	// An Envoy reconnecting over Delta with the versions it holds
	// (initial_resource_versions) is sent nothing: for the wildcard types
	// the one empty answer the protocol requires, at the same system
	// version; for the others no answer.
	raw = dialCrashADS(t, ctx, srv.xds, true)
	require.NoError(t, crashDeltaSubscribe(raw, names, resourceVersions))
	wild := func() bool {
		got := map[string]bool{}
		for _, m := range raw.deltaResp {
			got[m.GetTypeUrl()] = true
		}
		return got[resourcev3.ClusterType] && got[resourcev3.ListenerType]
	}
	require.NoError(t, raw.waitFor(within(20*time.Second), wild), "the empty answers to the wildcard subscriptions")
	raw.quiet(ctx, time.Second)
	raw.mu.Lock()
	deltaAnswers := slices.Clone(raw.deltaResp)
	raw.mu.Unlock()
	for _, m := range deltaAnswers {
		var sent []string
		for _, res := range m.GetResources() {
			sent = append(sent, res.GetName())
		}
		require.Empty(t, sent, "a reconnecting delta Envoy holding every resource at its version was sent %s %v (version %s)", m.GetTypeUrl(), sent, m.GetSystemVersionInfo())
		require.Empty(t, m.GetRemovedResources(), "%s", m.GetTypeUrl())
		require.Equal(t, systemVersions[m.GetTypeUrl()], m.GetSystemVersionInfo(), "%s system version across the restart", m.GetTypeUrl())
	}
	require.Len(t, deltaAnswers, 2, "only the two wildcard answers")
	raw.conn.Close()

	// An Envoy reconnecting over SotW with the versions it holds is sent,
	// at most, the same versions with the same resources.
	raw = dialCrashADS(t, ctx, srv.xds, false)
	for i, typeURL := range crashTypes {
		req := &discovery.DiscoveryRequest{TypeUrl: typeURL, VersionInfo: sotwBefore.Versions[typeURL]}
		if i == 0 {
			req.Node = crashNode("crash-sotw-raw")
		}
		if typeURL == resourcev3.EndpointType || typeURL == resourcev3.RouteType {
			req.ResourceNames = names[typeURL]
		}
		require.NoError(t, raw.sotw.Send(req))
	}
	raw.quiet(ctx, time.Second)
	raw.mu.Lock()
	sotwAnswers := slices.Clone(raw.sotwResp)
	raw.mu.Unlock()
	for _, m := range sotwAnswers {
		require.Equal(t, sotwBefore.Versions[m.GetTypeUrl()], m.GetVersionInfo(), "a reconnecting SotW Envoy is sent a new %s version", m.GetTypeUrl())
		require.Len(t, m.GetResources(), len(sotwBefore.Resources[m.GetTypeUrl()]), "%s", m.GetTypeUrl())
		for _, a := range m.GetResources() {
			msg, err := a.UnmarshalNew()
			require.NoError(t, err)
			var name string
			if cla, ok := msg.(*endpointv3.ClusterLoadAssignment); ok {
				name = cla.GetClusterName()
			} else {
				name = msg.(interface{ GetName() string }).GetName()
			}
			require.True(t, proto.Equal(sotwBefore.Resources[m.GetTypeUrl()][name], msg), "%s %s changed across the restart", m.GetTypeUrl(), name)
		}
	}
	raw.conn.Close()

	// Nothing went wrong in tollgate's own eyes either.
	if bad := srv.logs.grep("level=ERROR", "panic:", "fatal error:"); len(bad) > 0 {
		t.Errorf("tollgate logged errors:\n%s", strings.Join(bad, "\n"))
	}
	t.Logf("store at revision %d, %d audit entries; Envoy versions unchanged across the final restart (%v); a reconnecting delta Envoy was sent no resource, a reconnecting SotW Envoy %d answers at the same versions; total %v",
		storeRev, len(audit), sotwBefore.Versions, len(sotwAnswers), time.Since(began).Round(time.Millisecond))
}

// pwriteOffset finds the offset of a traced pwrite64: its last argument.
var pwriteOffset = regexp.MustCompile(`, \d+, (\d+)(?:\)| <unfinished)`)

// crashSyncBeforeAck runs tollgate under strace and checks that every API
// write that changes something is answered only after bbolt wrote its
// meta page (the commit) and fdatasynced the file after its last write:
// what makes an acknowledged write survive a crash of the machine, which a
// SIGKILL does not simulate.
func crashSyncBeforeAck(t *testing.T, bin, policies, tokens string) {
	strace, err := exec.LookPath("strace")
	if err != nil {
		t.Skip("strace is not installed: the system calls of API writes are not checked")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	adminAddr, xdsAddr := crashFreePort(t), crashFreePort(t)
	logs := &crashLog{}
	srv := exec.Command(bin, "serve", "--policies", policies, "--state-dir", filepath.Join(dir, "state"), "--api-tokens", tokens,
		"--xds-addr", xdsAddr, "--admin-addr", adminAddr)
	srv.Stdout, srv.Stderr = logs, logs
	require.NoError(t, srv.Start())
	exited := make(chan struct{})
	go func() {
		_ = srv.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = srv.Process.Kill()
		<-exited
	})
	cs := &crashServer{admin: "http://" + adminAddr}
	require.NoError(t, cs.waitHealthy(ctx, exited))

	// Attach to every thread of the running process (so that the tracer
	// never outlives it, tollgate is the one killed at the end).
	tracePath := filepath.Join(dir, "trace.txt")
	traced := crashTrace(t, ctx, strace, srv.Process.Pid, tracePath, "-yy", "-s", "40", "-e", "trace=pwrite64,pwritev,write,fdatasync,fsync")

	// Sequential writes: new objects, new versions, and unchanged content
	// (answered without a commit).
	client := &http.Client{Timeout: 20 * time.Second}
	type req struct {
		obj, v int
		commit bool
	}
	var reqs []req
	for i := range 12 { // Backends only: crashIsRoute(i) is false below 12
		reqs = append(reqs, req{i, 1, true})
		if i%3 == 2 {
			reqs = append(reqs, req{i - 1, 2, true}, req{i - 2, 1, false})
		}
	}
	url := func(i int) string {
		return cs.admin + crashAPIPrefix + "/namespaces/" + crashNamespace + "/" + strings.ToLower(crashKind(i)) + "s/" + crashName(i)
	}
	commits := 0
	for _, r := range reqs {
		if r.commit {
			commits++
		}
		_, err := crashRequest(ctx, client, http.MethodPut, url(r.obj), crashBody(r.obj, r.v), nil)
		require.NoError(t, err)
	}
	_ = srv.Process.Kill()
	<-exited
	select {
	case <-traced:
	case <-ctx.Done():
		t.Fatal("strace did not end with tollgate")
	}

	// Replay the trace. strace -f interleaves threads: a call another
	// thread interrupts is split into "<unfinished ...>" and "<... resumed>"
	// lines; a call counts as done at its complete or resumed line, and a
	// response as begun at its first line.
	data, err := os.ReadFile(tracePath)
	require.NoError(t, err)
	// The store's file, as strace -yy names its descriptor (by its
	// resolved path, hence by its name only).
	db := "/tollgate.db"
	pending := map[string]string{} // tid → call unfinished on the db
	var (
		responses, metas, syncs int
		wrote, meta, unsynced   bool
		problems                []string
	)
	for _, line := range strings.Split(string(data), "\n") {
		// strace pads the thread id to a fixed width: "5940  write(...".
		tid, rest, _ := strings.Cut(line, " ")
		rest = strings.TrimLeft(rest, " ")
		call := ""
		switch {
		case strings.Contains(rest, db+">") && strings.HasSuffix(rest, "<unfinished ...>"):
			pending[tid] = rest
			continue
		case strings.HasPrefix(rest, "<... ") && pending[tid] != "":
			call, rest = pending[tid], pending[tid]+rest
			delete(pending, tid)
		case strings.Contains(rest, db+">"):
			call = rest
		}
		if call != "" {
			switch {
			case strings.HasPrefix(call, "pwrite"):
				wrote, unsynced = true, true
				// bbolt's meta pages are pages 0 and 1: the commit.
				if m := pwriteOffset.FindAllStringSubmatch(call, -1); len(m) > 0 {
					if off := m[len(m)-1][1]; off == "0" || off == "4096" {
						meta = true
						metas++
					}
				}
			case strings.HasPrefix(call, "fdatasync") || strings.HasPrefix(call, "fsync"):
				if strings.Contains(rest, "= 0") {
					unsynced = false
					syncs++
				}
			}
			continue
		}
		if strings.HasPrefix(rest, "write(") && strings.Contains(rest, "TCP:[") && strings.Contains(rest, `"HTTP/1.1 `) {
			if responses >= len(reqs) {
				problems = append(problems, "an answer more than the requests: "+line)
				continue
			}
			r := reqs[responses]
			switch {
			case r.commit && (!meta || unsynced):
				problems = append(problems, fmt.Sprintf("answer %d (%s version %d) was sent with its commit written %v and not fdatasynced after the last write %v: %s", responses, crashName(r.obj), r.v, meta, unsynced, line))
			case !r.commit && wrote:
				problems = append(problems, fmt.Sprintf("answer %d (%s unchanged) wrote the store", responses, crashName(r.obj)))
			}
			responses++
			wrote, meta = false, false
		}
	}
	require.Empty(t, problems, "trace %s", tracePath)
	require.Equal(t, len(reqs), responses, "every answer is in the trace")
	require.Equal(t, commits, metas, "one meta page written per commit")
	t.Logf("%d API writes traced (%d commits: %d meta pages, %d syncs): each change was answered after its commit and an fdatasync; unchanged content wrote nothing", len(reqs), commits, metas, syncs)
}

// crashProviderPolicies route the gateway to a provider over TLS, which a
// credential may be injected for.
const crashProviderPolicies = `apiVersion: tollgate.dev/v1alpha1
kind: Gateway
metadata: {name: ` + crashGateway + `}
spec:
  listeners: [{name: http, port: 10080, protocol: HTTP}]
---
apiVersion: tollgate.dev/v1alpha1
kind: Backend
metadata: {name: openai}
spec: {provider: openai}
---
apiVersion: tollgate.dev/v1alpha1
kind: HTTPRoute
metadata: {name: chat}
spec:
  parentRefs: [{name: ` + crashGateway + `}]
  rules:
  - backendRefs: [{name: openai}]
`

// TestCrashRefusedWriteWindow guards the window a refused API write could
// leave open: if the store committed a write before the xDS server refused
// it (here: a credential on plaintext xDS) and reverted it with a second
// commit, a kill between the two would leave the refused object stored,
// and tollgate would then refuse to start. The store runs the xDS server's
// Check before it commits (store.Store.resolve), so such a write is refused
// without any commit. strace delays every fdatasync, so that a commit, if
// one happened, would be caught in its window: the test then kills
// tollgate there and checks that it starts again without the object.
func TestCrashRefusedWriteWindow(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills tollgate")
	}
	strace, err := exec.LookPath("strace")
	if err != nil {
		t.Skip("needs strace to hold the revert's fdatasync")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tmp := t.TempDir()
	bin := crashBuild(t, ctx, tmp)
	policies, state := filepath.Join(tmp, "policies"), filepath.Join(tmp, "state")
	require.NoError(t, os.MkdirAll(policies, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(policies, "gateway.yaml"), []byte(crashProviderPolicies), 0o644))
	secrets := filepath.Join(tmp, "api-secrets")
	require.NoError(t, os.MkdirAll(filepath.Join(secrets, crashNamespace), 0o700))
	key := filepath.Join(secrets, crashNamespace, "openai.key")
	require.NoError(t, os.WriteFile(key, []byte("sk-FAKE-crash\n"), 0o600))
	sum := sha256.Sum256([]byte(crashToken))
	tokens := filepath.Join(tmp, "tokens.yaml")
	require.NoError(t, os.WriteFile(tokens, []byte("tokens:\n- name: crash\n  sha256: "+hex.EncodeToString(sum[:])+"\n  namespaces: [\"*\"]\n"), 0o600))
	adminAddr, xdsAddr := crashFreePort(t), crashFreePort(t)
	srv := &crashServer{
		bin: bin, admin: "http://" + adminAddr, xds: xdsAddr, logs: &crashLog{}, changed: make(chan struct{}),
		args: []string{"serve", "--policies", policies, "--state-dir", state, "--api-tokens", tokens, "--api-secrets-dir", secrets,
			"--xds-addr", xdsAddr, "--admin-addr", adminAddr},
	}
	t.Cleanup(srv.stop)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("tollgate logs:\n%s", srv.logs.tail(40))
		}
	})
	client, err := srv.start(ctx, nil, false)
	require.NoError(t, err)

	// Every fdatasync takes half a second from now on.
	srv.mu.Lock()
	pid := srv.cmd.Process.Pid
	srv.mu.Unlock()
	tracePath := filepath.Join(tmp, "trace.txt")
	traced := crashTrace(t, ctx, strace, pid, tracePath, "-e", "trace=fdatasync", "-e", "inject=fdatasync:delay_enter=500000")

	// An API credential for the file backend: valid, but plaintext xDS
	// refuses to serve its secret.
	body := fmt.Sprintf(`{"apiVersion":"tollgate.dev/v1alpha1","kind":"CredentialInjector","metadata":{"name":"crash"},`+
		`"spec":{"targetRefs":[{"kind":"Backend","name":"openai"}],"apiKey":{"secret":{"file":"%s"}}}}`, key)
	type answer struct {
		code int
		err  error
	}
	answered := make(chan answer, 1)
	go func() {
		code, err := crashRequest(ctx, client, http.MethodPut, srv.admin+crashAPIPrefix+"/namespaces/"+crashNamespace+"/credentialinjectors/crash", []byte(body), nil)
		answered <- answer{code, err}
	}()
	// A commit is two fdatasyncs (its pages, then its meta page): if the
	// write commits, kill during the next one, the revert's. The write
	// must instead be refused before any commit.
	for {
		data, _ := os.ReadFile(tracePath)
		if strings.Count(string(data), "(DELAYED)") >= 2 {
			srv.kill()
			<-traced
			require.Error(t, (<-answered).err, "the write was answered although tollgate was killed before it was reverted")
			t.Errorf("the refused write was committed before it was refused: %s", data)
			break
		}
		select {
		case a := <-answered:
			require.Equal(t, http.StatusUnprocessableEntity, a.code, "%v", a.err)
			require.ErrorContains(t, a.err, "refusing to serve secrets over plaintext xDS")
			require.NotContains(t, string(data), "(DELAYED)", "a refused write commits nothing")
			srv.kill()
			<-traced
		case <-ctx.Done():
			t.Fatalf("the write was not answered: %s", data)
		case <-time.After(5 * time.Millisecond):
			continue
		}
		break
	}

	// A write that was refused, and never acknowledged, must not keep
	// tollgate from starting again.
	client, err = srv.start(ctx, nil, false)
	require.NoError(t, err, "tollgate does not start after a kill between the commit of a refused write and its revert:\n%s", srv.logs.tail(5))
	code, err := crashRequest(ctx, client, http.MethodGet, srv.admin+crashAPIPrefix+"/namespaces/"+crashNamespace+"/credentialinjectors/crash", nil, nil)
	require.Equal(t, http.StatusNotFound, code, "the refused write is stored: %v", err)
}

// crashTrace attaches strace (with args) to every thread of pid, writing
// to tracePath, and waits until it is attached; the test is skipped where
// ptrace is not permitted. The returned channel is closed when strace
// exits (the traced process ended, or the test's cleanup killed it).
func crashTrace(t *testing.T, ctx context.Context, strace string, pid int, tracePath string, args ...string) <-chan struct{} {
	t.Helper()
	tracerOut := &crashLog{}
	tracer := exec.Command(strace, append(append([]string{"-f"}, args...), "-o", tracePath, "-p", strconv.Itoa(pid))...)
	tracer.Stderr = tracerOut
	require.NoError(t, tracer.Start())
	traced := make(chan struct{})
	go func() {
		_ = tracer.Wait()
		close(traced)
	}()
	t.Cleanup(func() {
		_ = tracer.Process.Kill()
		<-traced
	})
	for !strings.Contains(tracerOut.String(), "attached") {
		select {
		case <-traced:
			t.Skipf("strace cannot attach to tollgate (ptrace not permitted here?): %s", tracerOut.String())
		case <-ctx.Done():
			t.Fatalf("strace did not attach: %s", tracerOut.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	return traced
}
