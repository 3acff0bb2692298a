package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/tollgate-dev/tollgate/model"
)

// Buckets of the bbolt file. Keys of objects are kind, namespace and name
// joined by NUL; history keys append the big-endian revision, so that one
// object's revisions are adjacent and in order; audit keys are the
// revision alone.
var (
	bucketObjects = []byte("objects")
	bucketHistory = []byte("history")
	bucketAudit   = []byte("audit")
	bucketMeta    = []byte("meta")
	keyRevision   = []byte("revision")
)

// BoltBackend keeps API objects in one bbolt file. A commit returns only
// after bbolt has fsynced it (bbolt's default; NoSync is never set), so a
// write the API acknowledged survives a crash of tollgate or of the machine.
type BoltBackend struct {
	db *bolt.DB
}

// OpenBolt opens (creating if needed) the bbolt file at path. bbolt locks
// the file: a second tollgate on the same file is refused after a second
// instead of corrupting it.
func OpenBolt(path string) (*BoltBackend, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("API store: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("API store %s is locked: another tollgate is using it (give each its own --state-dir, or use --store etcd://... for replicas)", path)
	}
	if err != nil {
		return nil, fmt.Errorf("API store %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketObjects, bucketHistory, bucketAudit, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("API store %s: %w", path, err)
	}
	return &BoltBackend{db: db}, nil
}

func objectKey(ref model.Ref) []byte {
	return []byte(ref.Kind + "\x00" + ref.Namespace + "\x00" + ref.Name)
}

func revKey(rev uint64) []byte {
	return binary.BigEndian.AppendUint64(nil, rev)
}

func historyKey(ref model.Ref, rev uint64) []byte {
	return append(append(objectKey(ref), 0), revKey(rev)...)
}

func revisionOf(tx *bolt.Tx) uint64 {
	if v := tx.Bucket(bucketMeta).Get(keyRevision); len(v) == 8 {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

// Load implements Backend.
func (b *BoltBackend) Load(context.Context) (Snapshot, error) {
	var snap Snapshot
	err := b.db.View(func(tx *bolt.Tx) error {
		snap.Revision = revisionOf(tx)
		return tx.Bucket(bucketObjects).ForEach(func(_, v []byte) error {
			var r Record
			if err := json.Unmarshal(v, &r); err != nil {
				return err
			}
			snap.Records = append(snap.Records, r)
			return nil
		})
	})
	if err != nil {
		return Snapshot{}, fmt.Errorf("API store: %w", err)
	}
	return snap, nil
}

// Commit implements Backend: the object, its history entry, the audit entry
// and the store revision change in one bbolt transaction.
func (b *BoltBackend) Commit(_ context.Context, rev uint64, ch Change) (uint64, error) {
	var next uint64
	err := b.db.Update(func(tx *bolt.Tx) error {
		if cur := revisionOf(tx); cur != rev {
			return ErrStale
		}
		next = rev + 1
		rec := ch.Record
		rec.ResourceVersion = next
		ref := rec.Ref()
		objects := tx.Bucket(bucketObjects)
		hist := rec
		if ch.Verb == "delete" {
			if objects.Get(objectKey(ref)) == nil {
				return fmt.Errorf("%s does not exist", ref)
			}
			if err := objects.Delete(objectKey(ref)); err != nil {
				return err
			}
			hist = Record{Kind: ref.Kind, Namespace: ref.Namespace, Name: ref.Name, UID: rec.UID, ResourceVersion: next, Updated: ch.Time, Deleted: true}
		} else {
			data, err := json.Marshal(rec)
			if err != nil {
				return err
			}
			if err := objects.Put(objectKey(ref), data); err != nil {
				return err
			}
		}
		data, err := json.Marshal(hist)
		if err != nil {
			return err
		}
		if err := tx.Bucket(bucketHistory).Put(historyKey(ref, next), data); err != nil {
			return err
		}
		entry := auditEntry(ch, next)
		if data, err = json.Marshal(entry); err != nil {
			return err
		}
		if err := tx.Bucket(bucketAudit).Put(revKey(next), data); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Put(keyRevision, revKey(next))
	})
	if err != nil {
		if errors.Is(err, ErrStale) {
			return 0, err
		}
		return 0, fmt.Errorf("API store: %w", err)
	}
	return next, nil
}

// auditEntry is the audit log's record of ch, committed at rev.
func auditEntry(ch Change, rev uint64) AuditEntry {
	ref := ch.Record.Ref()
	e := AuditEntry{
		Revision: rev, Time: ch.Time, Who: ch.Who, Verb: ch.Verb, Object: ref.String(),
		Kind: ref.Kind, Namespace: ref.Namespace, Name: ref.Name, Diff: ch.Diff,
	}
	if ch.Verb != "delete" {
		e.Generation = ch.Record.Generation
	}
	return e
}

// History implements Backend.
func (b *BoltBackend) History(_ context.Context, ref model.Ref) ([]Record, error) {
	var out []Record
	prefix := append(objectKey(ref), 0)
	err := b.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketHistory).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && len(k) == len(prefix)+8; k, v = c.Next() {
			var r Record
			if err := json.Unmarshal(v, &r); err != nil {
				return err
			}
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("API store: %w", err)
	}
	return out, nil
}

// Audit implements Backend.
func (b *BoltBackend) Audit(_ context.Context, after uint64, limit int) ([]AuditEntry, error) {
	var out []AuditEntry
	err := b.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketAudit).Cursor()
		for k, v := c.Seek(revKey(after + 1)); k != nil; k, v = c.Next() {
			if limit > 0 && len(out) >= limit {
				break
			}
			var e AuditEntry
			if err := json.Unmarshal(v, &e); err != nil {
				return err
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("API store: %w", err)
	}
	return out, nil
}

// Watch implements Backend: bbolt has one writer, this process.
func (b *BoltBackend) Watch(context.Context) <-chan uint64 { return nil }

// Close implements Backend.
func (b *BoltBackend) Close() error { return b.db.Close() }
