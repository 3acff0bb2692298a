package store_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/policies"
	"github.com/tollgate-dev/tollgate/store"
)

// replicaSource is one replica's store and API source on a shared etcd.
func replicaSource(t *testing.T, endpoint, dir string) (*store.Store, *store.APISource) {
	t.Helper()
	st, err := store.New(store.Options{})
	require.NoError(t, err)
	b := openEtcd(t, store.EtcdOptions{Endpoints: []string{endpoint}, Prefix: "/replicas/"})
	scheme := policies.NewScheme()
	api := store.NewAPISource(b, st, scheme, nil)
	require.NoError(t, api.Load(context.Background()))
	require.NoError(t, store.NewFileSource(dir, scheme, nil).Start(st))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- api.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	return st, api
}

// TestReplicasWriteConcurrently writes through two replicas at once: a
// write validated against a revision the other replica moved past is
// validated again (ErrStale, then a resync), so every write lands, none is
// lost, and both replicas end with the same objects at the same revision.
func TestReplicasWriteConcurrently(t *testing.T) {
	endpoint := startEtcd(t)
	dir := t.TempDir()
	write(t, filepath.Join(dir, "gw.yaml"), gateway+"---\n"+backend("openai"))
	stA, apiA := replicaSource(t, endpoint, dir)
	stB, apiB := replicaSource(t, endpoint, dir)

	const perReplica = 10
	var wg sync.WaitGroup
	errs := make(chan error, 2*perReplica)
	for r, api := range []*store.APISource{apiA, apiB} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perReplica {
				name := fmt.Sprintf("r%d-%02d", r, i)
				_, err := api.Write(context.Background(), store.WriteRequest{Verb: "apply", Who: "test",
					Ref:  model.Ref{Kind: "HTTPRoute", Namespace: "default", Name: name},
					Body: []byte(routeYAML("default", name, "openai", name+".llm.internal"))})
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool {
		return apiA.Revision() == 2*perReplica && apiB.Revision() == 2*perReplica &&
			len(stA.Config().Objects) == 2+2*perReplica && len(stB.Config().Objects) == 2+2*perReplica
	}, 10*time.Second, 10*time.Millisecond, "a at %d, b at %d", apiA.Revision(), apiB.Revision())
	require.Equal(t, apiA.Records(), apiB.Records())
}

// staleBackend refuses its first n commits with ErrStale, as a store
// another replica keeps writing to would.
type staleBackend struct {
	*store.BoltBackend
	mu sync.Mutex
	n  int
}

func (b *staleBackend) Commit(ctx context.Context, rev uint64, ch store.Change) (uint64, error) {
	b.mu.Lock()
	if b.n > 0 {
		b.n--
		b.mu.Unlock()
		return 0, store.ErrStale
	}
	b.mu.Unlock()
	return b.BoltBackend.Commit(ctx, rev, ch)
}

// TestStaleWritesWaitAndTryAgain: a write that keeps losing the race to
// other replicas is validated again after a growing pause, lands when the
// others pause, and after too many attempts is refused with a Conflict
// that says nothing was written (never a partial write).
func TestStaleWritesWaitAndTryAgain(t *testing.T) {
	for _, tc := range []struct {
		stale    int
		conflict bool
	}{{stale: 7}, {stale: 1000, conflict: true}} {
		t.Run(fmt.Sprint(tc.stale), func(t *testing.T) {
			dir := t.TempDir()
			write(t, filepath.Join(dir, "gw.yaml"), gateway+"---\n"+backend("openai"))
			bolt, err := store.OpenBolt(filepath.Join(t.TempDir(), "tollgate.db"))
			require.NoError(t, err)
			t.Cleanup(func() { bolt.Close() })
			b := &staleBackend{BoltBackend: bolt, n: tc.stale}
			st, err := store.New(store.Options{})
			require.NoError(t, err)
			scheme := policies.NewScheme()
			api := store.NewAPISource(b, st, scheme, nil)
			require.NoError(t, api.Load(context.Background()))
			require.NoError(t, store.NewFileSource(dir, scheme, nil).Start(st))

			_, err = api.Write(context.Background(), store.WriteRequest{Verb: "apply", Who: "test",
				Ref:  model.Ref{Kind: "HTTPRoute", Namespace: "default", Name: "chat"},
				Body: []byte(routeYAML("default", "chat", "openai", "chat.llm.internal"))})
			if !tc.conflict {
				require.NoError(t, err)
				require.Equal(t, uint64(1), api.Revision())
				return
			}
			var apiErr *store.APIError
			require.ErrorAs(t, err, &apiErr)
			require.Equal(t, 409, apiErr.Code)
			require.Contains(t, apiErr.Message, "nothing was written")
			require.Zero(t, api.Revision())
			require.Empty(t, api.Records())
		})
	}
}
