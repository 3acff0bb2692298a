package ratelimittest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// redisStartTimeout bounds the wait for redis-server to answer PING.
const redisStartTimeout = 10 * time.Second

// StartRedis runs redis-server on 127.0.0.1, on a free port, without
// persistence, in a temporary directory, until the test ends, and returns
// its address. Its log is printed if the test failed.
func StartRedis(t testing.TB) (addr string) {
	t.Helper()
	bin := RedisBinary(t)
	dir := t.TempDir()
	// A port picked free can be taken before redis binds it: try again.
	for attempt := 1; ; attempt++ {
		port := FreePort(t)
		addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		logs := &logBuffer{}
		cmd := exec.Command(bin,
			"--save", "", "--appendonly", "no",
			"--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--protected-mode", "yes",
			"--dir", dir, "--daemonize", "no", "--logfile", "")
		cmd.Dir, cmd.Stdout, cmd.Stderr = dir, logs, logs
		if err := cmd.Start(); err != nil {
			t.Fatalf("start redis-server: %v", err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		stop := func() {
			select {
			case <-done:
			default:
				_ = cmd.Process.Kill()
				<-done
			}
		}
		err := waitRedis(addr, done)
		if err == nil {
			t.Cleanup(func() {
				stop()
				if t.Failed() {
					t.Logf("redis-server %s log (last lines):\n%s", addr, tail(logs.String(), 30))
				}
			})
			return addr
		}
		stop()
		if attempt == 3 {
			t.Fatalf("redis-server on %s: %v\n%s", addr, err, tail(logs.String(), 30))
		}
	}
}

// waitRedis polls addr with PING until it answers PONG, the process exits
// or redisStartTimeout passes.
func waitRedis(addr string, done chan error) error {
	deadline := time.Now().Add(redisStartTimeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			done <- err
			return fmt.Errorf("exited while starting: %v", err)
		default:
		}
		v, err := do(addr, "PING")
		if err == nil && v == "PONG" {
			return nil
		}
		if err == nil {
			err = fmt.Errorf("PING answered %v", v)
		}
		last = err
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("no PONG within %s: %v", redisStartTimeout, last)
}

// Do sends one command to the Redis at addr on a connection of its own
// and returns the reply: a string for a simple or bulk string, nil for a
// null, an int64 for an integer, a []any for an array. An error reply
// fails the test.
func Do(t testing.TB, addr string, args ...string) any {
	t.Helper()
	v, err := do(addr, args...)
	if err != nil {
		t.Fatalf("redis %s %s: %v", addr, strings.Join(args, " "), err)
	}
	return v
}

// FlushAll removes every key.
func FlushAll(t testing.TB, addr string) {
	t.Helper()
	if v := Do(t, addr, "FLUSHALL"); v != "OK" {
		t.Fatalf("redis FLUSHALL: %v", v)
	}
}

// Get returns the value of key and whether it exists.
func Get(t testing.TB, addr, key string) (string, bool) {
	t.Helper()
	switch v := Do(t, addr, "GET", key).(type) {
	case nil:
		return "", false
	case string:
		return v, true
	default:
		t.Fatalf("redis GET %s: unexpected reply %v", key, v)
		return "", false
	}
}

// Keys returns the keys matching pattern (Redis glob syntax), sorted.
func Keys(t testing.TB, addr, pattern string) []string {
	t.Helper()
	v, ok := Do(t, addr, "KEYS", pattern).([]any)
	if !ok {
		t.Fatalf("redis KEYS %s: unexpected reply %v", pattern, v)
	}
	keys := make([]string, 0, len(v))
	for _, k := range v {
		s, ok := k.(string)
		if !ok {
			t.Fatalf("redis KEYS %s: unexpected element %v", pattern, k)
		}
		keys = append(keys, s)
	}
	sort.Strings(keys)
	return keys
}

// do speaks RESP2 on a connection of its own.
func do(addr string, args ...string) (any, error) {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := io.WriteString(conn, b.String()); err != nil {
		return nil, err
	}
	return readReply(bufio.NewReader(conn))
}

// errorReply is a Redis error reply.
type errorReply string

func (e errorReply) Error() string { return string(e) }

func readReply(r *bufio.Reader) (any, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return nil, errors.New("empty reply line")
	}
	body := line[1:]
	switch line[0] {
	case '+':
		return body, nil
	case '-':
		return nil, errorReply(body)
	case ':':
		return strconv.ParseInt(body, 10, 64)
	case '$':
		n, err := strconv.Atoi(body)
		if err != nil {
			return nil, err
		}
		if n < 0 {
			return nil, nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(body)
		if err != nil {
			return nil, err
		}
		if n < 0 {
			return nil, nil
		}
		out := make([]any, n)
		for i := range out {
			if out[i], err = readReply(r); err != nil {
				return nil, err
			}
		}
		return out, nil
	default:
		return nil, fmt.Errorf("unexpected reply %q", line)
	}
}
