package store_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/tollgate-dev/tollgate/store"
	"github.com/tollgate-dev/tollgate/store/etcdtest"
)

// etcdWait bounds every wait for something etcd should do soon.
const etcdWait = 10 * time.Second

// startEtcd starts an embedded etcd for the test and returns its client
// URL (see etcdtest.Start, which tests outside this package use).
func startEtcd(t testing.TB) string {
	t.Helper()
	return etcdtest.Start(t)
}

// openEtcd opens an EtcdBackend, closed when the test ends.
func openEtcd(t testing.TB, opts store.EtcdOptions) *store.EtcdBackend {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), etcdWait)
	defer cancel()
	b, err := store.OpenEtcd(ctx, opts)
	require.NoError(t, err)
	t.Cleanup(func() { b.Close() })
	return b
}

// etcdChange is a create of Backend/default/<name> at time 0.
func etcdChange(name string) store.Change {
	return store.Change{Verb: "create", Who: "test", Record: store.Record{Kind: "Backend", Namespace: "default", Name: name, Generation: 1}}
}

// TestEtcdParseURL: the --store flag's etcd:// and etcds:// forms.
func TestEtcdParseURL(t *testing.T) {
	for _, c := range []struct {
		in   string
		want store.EtcdOptions
		err  string
	}{
		{in: "etcd://127.0.0.1:2379", want: store.EtcdOptions{Endpoints: []string{"127.0.0.1:2379"}, Prefix: "/tollgate/"}},
		{in: "etcd://host1:2379,host2:2379/prefix", want: store.EtcdOptions{Endpoints: []string{"host1:2379", "host2:2379"}, Prefix: "/prefix/"}},
		{in: "etcd://host1,host2:12379/a/b/", want: store.EtcdOptions{Endpoints: []string{"host1:2379", "host2:12379"}, Prefix: "/a/b/"}},
		{in: "etcds://etcd.internal/", want: store.EtcdOptions{Endpoints: []string{"etcd.internal:2379"}, Prefix: "/tollgate/", UseTLS: true}},
		{in: "etcd://[::1]:2379,[fd00::2]/p", want: store.EtcdOptions{Endpoints: []string{"[::1]:2379", "[fd00::2]:2379"}, Prefix: "/p/"}},
		{in: "etcd://tollgate:s%40cret@h:2379", want: store.EtcdOptions{Endpoints: []string{"h:2379"}, Prefix: "/tollgate/", Username: "tollgate", Password: "s@cret"}},
		{in: "http://h:2379", err: "unknown scheme http"},
		{in: "h:2379", err: "no scheme"},
		{in: "etcd:///prefix", err: "no etcd host"},
		{in: "etcd://h:http", err: `bad port in "h:http"`},
		{in: "etcd://h:0", err: "bad port"},
		{in: "etcd://h:2379?x=1", err: "query"},
		{in: "etcd://alice@h", err: "user alice has no password"},
	} {
		got, err := store.ParseEtcdURL(c.in)
		if c.err != "" {
			require.ErrorContains(t, err, c.err, c.in)
			require.ErrorContains(t, err, "want etcd://host:2379", c.in)
			continue
		}
		require.NoError(t, err, c.in)
		require.Equal(t, c.want, got, c.in)
	}
}

// TestEtcdReplicasCommitConcurrently: two replicas commit at the same
// revision at once; exactly one wins, the other is told ErrStale.
func TestEtcdReplicasCommitConcurrently(t *testing.T) {
	endpoint := startEtcd(t)
	opts := store.EtcdOptions{Endpoints: []string{endpoint}, Prefix: "/race/"}
	replicas := []*store.EtcdBackend{openEtcd(t, opts), openEtcd(t, opts)}
	ctx := context.Background()
	const rounds = 10
	for rev := uint64(0); rev < rounds; rev++ {
		var wg sync.WaitGroup
		start := make(chan struct{})
		errs := make([]error, len(replicas))
		revs := make([]uint64, len(replicas))
		for i, b := range replicas {
			wg.Go(func() {
				<-start
				revs[i], errs[i] = b.Commit(ctx, rev, etcdChange(fmt.Sprintf("r%d-replica%d", rev, i)))
			})
		}
		close(start)
		wg.Wait()
		won := 0
		for i, err := range errs {
			if err == nil {
				won++
				require.Equal(t, rev+1, revs[i])
			} else {
				require.ErrorIs(t, err, store.ErrStale)
			}
		}
		require.Equal(t, 1, won, "round %d: exactly one replica commits: %v", rev, errs)
	}
	for _, b := range replicas {
		snap, err := b.Load(ctx)
		require.NoError(t, err)
		require.Equal(t, uint64(rounds), snap.Revision)
		require.Len(t, snap.Records, rounds)
		audit, err := b.Audit(ctx, 0, 0)
		require.NoError(t, err)
		require.Len(t, audit, rounds)
	}
}

// TestEtcdCommitTooLarge: a change over etcd's request size limit fails
// saying so, and changes nothing.
func TestEtcdCommitTooLarge(t *testing.T) {
	b := openEtcd(t, store.EtcdOptions{Endpoints: []string{startEtcd(t)}})
	ctx := context.Background()
	ch := etcdChange("huge")
	// The object and its history entry, both JSON with the body in
	// base64: over etcd's 1.5 MiB, under the client's 2 MiB.
	ch.Record.Body = make([]byte, 600<<10)
	_, err := b.Commit(ctx, 0, ch)
	require.ErrorContains(t, err, "larger than etcd at")
	snap, err := b.Load(ctx)
	require.NoError(t, err)
	require.Equal(t, store.Snapshot{}, snap)
}

// receiveRev waits for rev on ch, skipping lower revisions (Watch resends
// the current one when it reconnects).
func receiveRev(t *testing.T, ch <-chan uint64, rev uint64) {
	t.Helper()
	deadline := time.After(etcdWait)
	for {
		select {
		case got, ok := <-ch:
			require.True(t, ok, "watch closed while waiting for revision %d", rev)
			if got == rev {
				return
			}
			require.Less(t, got, rev, "revisions arrive in order")
		case <-deadline:
			t.Fatalf("no revision %d after %s", rev, etcdWait)
		}
	}
}

// TestEtcdWatchSeesOtherReplicasCommits: replica B's Watch reports the
// revision of each commit made through replica A, also across a restart of
// etcd and a compaction of the events B's watch missed meanwhile (B then
// resyncs to the current revision), and closes when its context ends or
// its backend is closed.
func TestEtcdWatchSeesOtherReplicasCommits(t *testing.T) {
	srv := etcdtest.StartServer(t)
	opts := store.EtcdOptions{Endpoints: []string{srv.URL}, Prefix: "/watch/"}
	a, b := openEtcd(t, opts), openEtcd(t, opts)
	ctx := context.Background()
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	ch := b.Watch(wctx)
	receiveRev(t, ch, 0) // the current revision, first

	for rev := uint64(0); rev < 3; rev++ {
		got, err := a.Commit(ctx, rev, etcdChange(fmt.Sprintf("w%d", rev)))
		require.NoError(t, err)
		receiveRev(t, ch, got)
	}

	// B's client reconnects after a backoff; meanwhile A commits and the
	// events B would resume from are compacted away.
	srv.Restart(t)
	raw, err := clientv3.New(clientv3.Config{Endpoints: []string{srv.URL}, Logger: zap.NewNop()})
	require.NoError(t, err)
	defer raw.Close()
	for rev := uint64(3); rev < 6; rev++ {
		_, err := a.Commit(ctx, rev, etcdChange(fmt.Sprintf("w%d", rev)))
		require.NoError(t, err)
	}
	resp, err := raw.Get(ctx, "/watch/revision")
	require.NoError(t, err)
	_, err = raw.Compact(ctx, resp.Header.Revision)
	require.NoError(t, err)
	receiveRev(t, ch, 6)
	_, err = a.Commit(ctx, 6, etcdChange("w6"))
	require.NoError(t, err)
	receiveRev(t, ch, 7)

	closed := openEtcd(t, opts)
	closedCh := closed.Watch(ctx)
	receiveRev(t, closedCh, 7)
	require.NoError(t, closed.Close())
	requireClosed(t, closedCh)

	stop()
	requireClosed(t, ch)
}

// requireClosed waits for ch to be closed, draining it.
func requireClosed(t *testing.T, ch <-chan uint64) {
	t.Helper()
	deadline := time.After(etcdWait)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatalf("watch not closed after %s", etcdWait)
		}
	}
}

// TestEtcdUnreachableFailsClearlyAndInTime: with its member stopped,
// every call fails within the request timeout, saying what to check.
func TestEtcdUnreachableFailsClearlyAndInTime(t *testing.T) {
	srv := etcdtest.StartServer(t)
	const timeout = time.Second
	opts := store.EtcdOptions{Endpoints: []string{srv.URL}, Prefix: "/down/", DialTimeout: timeout, RequestTimeout: timeout}
	b := openEtcd(t, opts)
	ctx := context.Background()
	_, err := b.Commit(ctx, 0, etcdChange("before"))
	require.NoError(t, err)
	srv.Stop()

	calls := map[string]func() error{
		"load":    func() error { _, err := b.Load(ctx); return err },
		"commit":  func() error { _, err := b.Commit(ctx, 1, etcdChange("after")); return err },
		"history": func() error { _, err := b.History(ctx, etcdChange("before").Record.Ref()); return err },
		"audit":   func() error { _, err := b.Audit(ctx, 0, 0); return err },
		"open": func() error {
			b, err := store.OpenEtcd(ctx, opts)
			if err == nil {
				b.Close()
			}
			return err
		},
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	errs := map[string]error{}
	took := map[string]time.Duration{}
	for name, call := range calls {
		wg.Go(func() {
			start := time.Now()
			err := call()
			mu.Lock()
			defer mu.Unlock()
			errs[name], took[name] = err, time.Since(start)
		})
	}
	wg.Wait()
	for name := range calls {
		require.Error(t, errs[name], name)
		require.ErrorContains(t, errs[name], "etcd at "+srv.URL+" unreachable", name)
		require.ErrorContains(t, errs[name], "check --store", name)
		require.Less(t, took[name], timeout+2*time.Second, "%s failed in time", name)
	}
	require.ErrorContains(t, errs["commit"], "may or may not have been committed")
	require.NotErrorIs(t, errs["commit"], store.ErrStale)

	// The caller's own deadline still wins over the request timeout.
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = b.Load(short)
	require.Error(t, err)
	require.Less(t, time.Since(start), timeout)
}
