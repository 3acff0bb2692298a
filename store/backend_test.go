package store_test

import (
	"cmp"
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/store"
)

// backendImpl is one Backend implementation under the conformance test.
type backendImpl struct {
	name string
	// store prepares an empty store and returns how to open it: every call
	// of open, after the previous Backend was closed, opens the same store
	// afresh (bbolt: the file again; etcd: a new client).
	store func(t *testing.T) (open func(t *testing.T) store.Backend)
}

// backendImpls are bbolt and etcd.
func backendImpls() []backendImpl {
	return []backendImpl{
		{name: "bolt", store: func(t *testing.T) func(t *testing.T) store.Backend {
			path := filepath.Join(t.TempDir(), "api.db")
			return func(t *testing.T) store.Backend {
				b, err := store.OpenBolt(path)
				require.NoError(t, err)
				t.Cleanup(func() { b.Close() })
				return b
			}
		}},
		{name: "etcd", store: func(t *testing.T) func(t *testing.T) store.Backend {
			endpoint := startEtcd(t)
			return func(t *testing.T) store.Backend {
				return openEtcd(t, store.EtcdOptions{Endpoints: []string{endpoint}, Prefix: "/conformance"})
			}
		}},
	}
}

// conformanceTime is the time of the i-th change of the conformance test.
func conformanceTime(i int) time.Time {
	return time.Date(2026, 3, 1, 12, i, 0, 0, time.UTC)
}

// conformanceRecord is an object as the conformance test writes it,
// created by its c-th change and last changed by its u-th.
func conformanceRecord(kind, ns, name string, gen int64, c, u int, body string) store.Record {
	return store.Record{
		Kind: kind, Namespace: ns, Name: name, UID: "uid-" + kind + "-" + ns + "-" + name,
		Generation: gen, Created: conformanceTime(c), Updated: conformanceTime(u), Body: []byte(body),
	}
}

// conformanceStep is one Commit of the conformance test and what it must
// return.
type conformanceStep struct {
	name    string
	rev     uint64 // Commit's rev
	verb    string
	rec     store.Record
	wantRev uint64 // 0: the commit fails
	stale   bool   // the failure is ErrStale (else: wantErr)
	wantErr string
}

// conformanceSteps are the changes, in order; a change's time is
// conformanceTime of its index.
var conformanceSteps = []conformanceStep{
	{name: "create", rev: 0, verb: "create", rec: conformanceRecord("Backend", "default", "openai", 1, 0, 0, "spec: {provider: openai}\n"), wantRev: 1},
	{name: "create cluster-scoped", rev: 1, verb: "create", rec: conformanceRecord("Gateway", "", "edge", 1, 1, 1, "spec: {}\n"), wantRev: 2},
	{name: "replace", rev: 2, verb: "replace", rec: conformanceRecord("Backend", "default", "openai", 2, 0, 2, "spec: {provider: openai, timeout: 5s}\n"), wantRev: 3},
	{name: "stale rev behind", rev: 2, verb: "create", rec: conformanceRecord("Backend", "default", "late", 1, 3, 3, "spec: {}\n"), stale: true},
	{name: "stale rev 0", rev: 0, verb: "create", rec: conformanceRecord("Backend", "default", "late", 1, 4, 4, "spec: {}\n"), stale: true},
	{name: "stale rev ahead", rev: 9, verb: "replace", rec: conformanceRecord("Backend", "default", "openai", 3, 0, 5, "spec: {}\n"), stale: true},
	{name: "delete", rev: 3, verb: "delete", rec: store.Record{Kind: "Gateway", Name: "edge", UID: "uid-Gateway--edge"}, wantRev: 4},
	{name: "delete missing", rev: 4, verb: "delete", rec: store.Record{Kind: "Gateway", Name: "edge"}, wantErr: "Gateway/edge does not exist"},
	{name: "delete missing at stale rev", rev: 3, verb: "delete", rec: store.Record{Kind: "Gateway", Name: "edge"}, stale: true},
	{name: "same name, other namespace", rev: 4, verb: "create", rec: conformanceRecord("Backend", "ml", "openai", 1, 9, 9, "spec: {provider: vllm}\n"), wantRev: 5},
	{name: "name extending another", rev: 5, verb: "create", rec: conformanceRecord("Backend", "default", "openai-2", 1, 10, 10, "spec: {}\n"), wantRev: 6},
	{name: "recreate deleted", rev: 6, verb: "create", rec: conformanceRecord("Gateway", "", "edge", 1, 11, 11, "spec: {listeners: []}\n"), wantRev: 7},
}

// TestBackendConformance runs the same changes against bbolt and etcd and
// expects the same results from both.
func TestBackendConformance(t *testing.T) {
	for _, impl := range backendImpls() {
		t.Run(impl.name, func(t *testing.T) {
			ctx := context.Background()
			open := impl.store(t)
			b := open(t)

			snap, err := b.Load(ctx)
			require.NoError(t, err)
			require.Equal(t, store.Snapshot{}, snap, "a new store is empty at revision 0")

			// want is the store as the steps so far should have left it.
			want := map[model.Ref]store.Record{}
			var rev uint64
			for i, step := range conformanceSteps {
				ch := store.Change{Verb: step.verb, Record: step.rec, Who: "spiffe://test/alice", Diff: "diff of step " + step.name, Time: conformanceTime(i)}
				got, err := b.Commit(ctx, step.rev, ch)
				switch {
				case step.wantRev != 0:
					require.NoError(t, err, step.name)
					require.Equal(t, step.wantRev, got, step.name)
					rev = got
					if step.verb == "delete" {
						delete(want, step.rec.Ref())
					} else {
						r := step.rec
						r.ResourceVersion = got
						want[r.Ref()] = r
					}
				case step.stale:
					require.ErrorIs(t, err, store.ErrStale, step.name)
				default:
					require.ErrorContains(t, err, step.wantErr, step.name)
					require.NotErrorIs(t, err, store.ErrStale, step.name)
				}
				snap, err := b.Load(ctx)
				require.NoError(t, err, step.name)
				require.Equal(t, rev, snap.Revision, step.name)
				require.Equal(t, sortedRecords(want), snap.Records, "%s: a failed commit changes nothing", step.name)
			}

			final := conformanceFinal(t, b)
			require.Equal(t, uint64(7), final.snap.Revision)
			require.Len(t, final.snap.Records, 4)

			// Every revision of an object, the deleting one included.
			require.Equal(t, []store.Record{
				withRev(conformanceRecord("Gateway", "", "edge", 1, 1, 1, "spec: {}\n"), 2),
				{Kind: "Gateway", Name: "edge", UID: "uid-Gateway--edge", ResourceVersion: 4, Updated: conformanceTime(6), Deleted: true},
				withRev(conformanceRecord("Gateway", "", "edge", 1, 11, 11, "spec: {listeners: []}\n"), 7),
			}, final.history[model.Ref{Kind: "Gateway", Name: "edge"}])
			require.Equal(t, []store.Record{
				withRev(conformanceRecord("Backend", "default", "openai", 1, 0, 0, "spec: {provider: openai}\n"), 1),
				withRev(conformanceRecord("Backend", "default", "openai", 2, 0, 2, "spec: {provider: openai, timeout: 5s}\n"), 3),
			}, final.history[model.Ref{Kind: "Backend", Namespace: "default", Name: "openai"}], "openai-2 and ml/openai are not openai's history")
			require.Empty(t, final.history[model.Ref{Kind: "Backend", Namespace: "default", Name: "late"}], "stale commits leave no history")

			// Audit: after and limit.
			require.Equal(t, []uint64{1, 2, 3, 4, 5, 6, 7}, auditRevs(final.audit))
			require.Equal(t, store.AuditEntry{
				Revision: 4, Time: conformanceTime(6), Who: "spiffe://test/alice", Verb: "delete",
				Object: "Gateway/edge", Kind: "Gateway", Name: "edge", Diff: "diff of step delete",
			}, final.audit[3])
			require.Equal(t, store.AuditEntry{
				Revision: 5, Time: conformanceTime(9), Who: "spiffe://test/alice", Verb: "create",
				Object: "Backend/ml/openai", Kind: "Backend", Namespace: "ml", Name: "openai", Generation: 1,
				Diff: "diff of step same name, other namespace",
			}, final.audit[4])
			for _, c := range []struct {
				after uint64
				limit int
				want  []uint64
			}{
				{after: 2, limit: 2, want: []uint64{3, 4}},
				{after: 5, limit: 0, want: []uint64{6, 7}},
				{after: 6, limit: 10, want: []uint64{7}},
				{after: 7, limit: 0, want: nil},
				{after: 100, limit: 1, want: nil},
				{after: 0, limit: 1, want: []uint64{1}},
			} {
				entries, err := b.Audit(ctx, c.after, c.limit)
				require.NoError(t, err)
				require.Equal(t, c.want, auditRevs(entries), "Audit(%d, %d)", c.after, c.limit)
			}

			// Reopened, the store is the same and goes on from its revision.
			require.NoError(t, b.Close())
			b = open(t)
			require.Equal(t, final, conformanceFinal(t, b))
			_, err = b.Commit(ctx, 6, store.Change{Verb: "delete", Record: store.Record{Kind: "Gateway", Name: "edge"}, Time: conformanceTime(20)})
			require.ErrorIs(t, err, store.ErrStale)
			got, err := b.Commit(ctx, 7, store.Change{Verb: "delete", Record: store.Record{Kind: "Gateway", Name: "edge"}, Time: conformanceTime(20)})
			require.NoError(t, err)
			require.Equal(t, uint64(8), got)
		})
	}
}

// conformanceState is everything a Backend returns about the conformance
// test's store.
type conformanceState struct {
	snap    store.Snapshot
	history map[model.Ref][]store.Record
	audit   []store.AuditEntry
}

// conformanceFinal reads the whole state of the conformance test's store
// through b.
func conformanceFinal(t *testing.T, b store.Backend) conformanceState {
	t.Helper()
	ctx := context.Background()
	snap, err := b.Load(ctx)
	require.NoError(t, err)
	st := conformanceState{snap: snap, history: map[model.Ref][]store.Record{}}
	for _, step := range conformanceSteps {
		ref := step.rec.Ref()
		h, err := b.History(ctx, ref)
		require.NoError(t, err)
		st.history[ref] = h
	}
	st.audit, err = b.Audit(ctx, 0, 0)
	require.NoError(t, err)
	return st
}

// sortedRecords is the records of m in Snapshot's order, nil for none.
func sortedRecords(m map[model.Ref]store.Record) []store.Record {
	var out []store.Record
	for _, r := range m {
		out = append(out, r)
	}
	slices.SortFunc(out, func(x, y store.Record) int {
		return cmp.Or(cmp.Compare(x.Kind, y.Kind), cmp.Compare(x.Namespace, y.Namespace), cmp.Compare(x.Name, y.Name))
	})
	return out
}

// withRev is r at resourceVersion rev.
func withRev(r store.Record, rev uint64) store.Record {
	r.ResourceVersion = rev
	return r
}

// auditRevs is the revisions of entries.
func auditRevs(entries []store.AuditEntry) []uint64 {
	var out []uint64
	for _, e := range entries {
		out = append(out, e.Revision)
	}
	return out
}
