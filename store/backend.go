package store

import (
	"context"
	"errors"
	"time"

	"github.com/tollgate-dev/tollgate/model"
)

// Backend persists the objects written through the HTTP API. bbolt
// (bolt.go) is the embedded default on one machine; etcd (etcd.go) is shared
// by several replicas. Every method is safe for concurrent use.
//
// A Backend holds one linear history: every committed change gets the next
// revision of the whole store, which also becomes the changed object's
// resourceVersion (as in etcd, where it is the key's mod revision). A change
// is committed only if the store is still at the revision it was validated
// against, so that two writers, in one process or on two machines, can never
// commit changes that are each valid alone but not together.
type Backend interface {
	// Load returns every object and the revision of the store they were
	// read at.
	Load(ctx context.Context) (Snapshot, error)
	// Commit applies one change atomically, with its revision history
	// entry and its audit entry, if the store is still at rev; otherwise it
	// returns ErrStale and changes nothing. It returns the revision the
	// change was committed at. When Commit returns nil the change is
	// durable: fsynced by bbolt, committed by an etcd quorum.
	Commit(ctx context.Context, rev uint64, ch Change) (uint64, error)
	// History lists the revisions of one object, oldest first, deleted
	// ones included (Record.Deleted).
	History(ctx context.Context, ref model.Ref) ([]Record, error)
	// Audit lists audit entries with a revision above after, oldest first,
	// at most limit of them (0: no limit).
	Audit(ctx context.Context, after uint64, limit int) ([]AuditEntry, error)
	// Watch returns a channel that receives the store's revision after
	// every commit by any writer (this process's own included: the reader
	// skips revisions it already has), until ctx ends. A Backend that only
	// this process writes (bbolt) returns nil.
	Watch(ctx context.Context) <-chan uint64
	// Close releases the backend.
	Close() error
}

// ErrStale is returned by Backend.Commit when the store moved on since the
// revision the change was validated against.
var ErrStale = errors.New("the API store changed since this change was validated")

// Snapshot is the whole API store at one revision.
type Snapshot struct {
	Revision uint64
	Records  []Record // sorted by Kind, Namespace, Name
}

// Record is one stored object: its canonical YAML and the metadata the
// server manages.
type Record struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// UID is assigned at creation and kept across replaces.
	UID string `json:"uid"`
	// ResourceVersion is the store revision of the object's last change.
	ResourceVersion uint64 `json:"resourceVersion"`
	// Generation counts changes of the object's content other than its
	// metadata, from 1.
	Generation int64     `json:"generation"`
	Created    time.Time `json:"created"`
	Updated    time.Time `json:"updated"`
	// Body is the object's YAML without the server-managed metadata
	// (resourceVersion, generation, uid, creationTimestamp) and status.
	Body []byte `json:"body,omitempty"`
	// Deleted marks, in History only, the revision that deleted it.
	Deleted bool `json:"deleted,omitempty"`
}

// Ref is the record's identity.
func (r Record) Ref() model.Ref {
	return model.Ref{Kind: r.Kind, Namespace: r.Namespace, Name: r.Name}
}

// Change is one write through the API.
type Change struct {
	// Verb is "create", "replace" or "delete".
	Verb string `json:"verb"`
	// Record is the object to store; for a delete, only its identity
	// (Kind, Namespace, Name) is read.
	Record Record `json:"record"`
	// Who is the authenticated identity that made the change.
	Who string `json:"who"`
	// Diff is a unified diff of the object's YAML, for the audit log.
	Diff string    `json:"diff,omitempty"`
	Time time.Time `json:"time"`
}

// AuditEntry is one committed change as the audit log keeps it.
type AuditEntry struct {
	Revision  uint64    `json:"revision"`
	Time      time.Time `json:"time"`
	Who       string    `json:"who"`
	Verb      string    `json:"verb"`
	Object    string    `json:"object"` // model.Ref.String()
	Kind      string    `json:"kind"`
	Namespace string    `json:"namespace"`
	Name      string    `json:"name"`
	// Generation of the object after the change (0 for a delete).
	Generation int64  `json:"generation,omitempty"`
	Diff       string `json:"diff,omitempty"`
}
