package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/policies"
	"github.com/tollgate-dev/tollgate/store"
)

// TestReloadOnSignal drives reloadOn's loop through its channel (a real
// SIGHUP would reach every test of the process): each signal is one reload,
// logged with its outcome, and the loop ends with its context.
func TestReloadOnSignal(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	sig := make(chan os.Signal, 1)
	results := make(chan error, 1)
	calls := make(chan struct{}, 10)
	reload := func() error {
		calls <- struct{}{}
		return <-results
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		reloadOn(ctx, sig, reload, log)
	}()

	step := func(result error, want string) {
		t.Helper()
		sig <- syscall.SIGHUP
		select {
		case <-calls:
		case <-time.After(10 * time.Second):
			t.Fatal("no reload after SIGHUP")
		}
		results <- result
		require.Eventually(t, func() bool { return strings.Contains(logs.String(), want) }, 10*time.Second, 5*time.Millisecond, logs.String())
	}
	step(nil, "policies reloaded")
	step(model.Violations{{File: "/etc/tollgate/policies/bad.yaml", Line: 4, Msg: "spec.listeners[0].tsl: unknown field"}}, "bad.yaml:4")
	require.Contains(t, logs.String(), "reload refused: policies rejected; still serving the last good config")
	require.Contains(t, logs.String(), "violations=1")
	step(errors.New("read policy directory: permission denied"), "permission denied")
	require.Equal(t, 3, strings.Count(logs.String(), `msg="reloading the policy directory" signal=hangup`), logs.String())

	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("reloadOn did not return after its context ended")
	}
	require.Empty(t, calls)
}

// TestReloadSyncsStore is the reload serve wires: a SIGHUP's Sync puts a
// change that the watch has not delivered (none runs here) into the store.
func TestReloadSyncsStore(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) {
		t.Helper()
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644))
	}
	write("gw.yaml", "apiVersion: tollgate.dev/v1alpha1\nkind: Gateway\nmetadata: {name: egress}\nspec: {listeners: [{name: http, port: 10000, protocol: HTTP}]}\n")
	st, err := store.New(store.Options{})
	require.NoError(t, err)
	src := store.NewFileSource(dir, policies.NewScheme(), nil)
	require.NoError(t, src.Start(st))
	require.Len(t, st.Config().Gateways, 1)

	write("gw2.yaml", "apiVersion: tollgate.dev/v1alpha1\nkind: Gateway\nmetadata: {name: egress-2}\nspec: {listeners: [{name: http, port: 10001, protocol: HTTP}]}\n")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sig := make(chan os.Signal, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		reloadOn(ctx, sig, func() error { return src.Sync(st) }, slog.New(slog.DiscardHandler))
	}()
	sig <- syscall.SIGHUP
	require.Eventually(t, func() bool { return len(st.Config().Gateways) == 2 }, 10*time.Second, 5*time.Millisecond)
	cancel()
	<-done
}
