// Package store owns every input tollgate reads: policy files on disk today
// (file.go), API-fed objects later. Sources hand their objects to the Store,
// whose go-memdb index merges them; each change is one transaction that is
// committed only when the merged set resolves into a valid model.Config and
// the Accept hook (translation and publication) takes it. Otherwise it is
// aborted, the violations are reported and the last good config stays.
package store

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	memdb "github.com/hashicorp/go-memdb"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/policies"
)

const tableObjects = "objects"

// entry is one object as the index stores it.
type entry struct {
	// ID is unique per source, file, line and object.
	ID     string
	Source string
	Object model.Object
}

var schema = &memdb.DBSchema{Tables: map[string]*memdb.TableSchema{
	tableObjects: {
		Name: tableObjects,
		Indexes: map[string]*memdb.IndexSchema{
			"id":     {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "ID"}},
			"source": {Name: "source", Indexer: &memdb.StringFieldIndex{Field: "Source"}},
		},
	},
}}

// Options configure a Store.
type Options struct {
	// Settings are passed to every model.Config built.
	Settings model.Settings
	// Accept is called with each new valid Config before the change is
	// committed; an error rejects the change as if the policies were
	// invalid. tollgate serve translates and publishes here.
	Accept func(*model.Config) error
	// DNS runs the reverse-DNS checks DNSPolicies ask for. Nil resolves
	// nothing: such backends are reported as not verified and not served
	// (tollgate validate works offline this way).
	DNS *DNSVerifier
	// Now is the clock certificates and CRLs the policies name are judged
	// by (an expired CRL refuses the change, an expired certificate gets a
	// condition); nil is time.Now. Tests fix it.
	Now func() time.Time
	// ReadMaterial, if set, reads the files policies refer to (keys,
	// certificates) instead of the file system, so that fuzz tests can
	// lower every policy kind in memory. Nil reads regular files, bounded
	// by MaxMaterialSize.
	ReadMaterial func(path string) ([]byte, error)
	// Metrics receives how long changes take and which are refused; nil
	// records nothing. tollgate serve passes the xDS server's metrics.
	Metrics Metrics
	// Log receives the audit lines of accepted changes (backends a
	// RegionAllowListPolicy newly refuses or admits); nil logs nothing
	// (tollgate validate). tollgate serve passes its logger.
	Log *slog.Logger
}

// Metrics is what the store reports to tollgate's metrics.
type Metrics interface {
	// ObserveReload records the time one change spent decoding,
	// resolving and lowering (Accept excluded), and its outcome.
	ObserveReload(d time.Duration, err error)
	// RefusedChange counts a change refused for a reason class.
	RefusedChange(reason string)
}

// RefusedInvalidPolicy is the reason class of a change the store refuses
// for its violations (the xDS server counts its own refusals).
const RefusedInvalidPolicy = "invalid_policy"

// Store merges the objects of every source and hands out the resolved
// Config.
type Store struct {
	opts Options
	db   *memdb.MemDB

	mu      sync.Mutex // serialises changes, so Accept sees them in order
	current *model.Config
	lastErr error
	// materialFiles are the files the policies of the latest change read,
	// for sources to watch.
	materialFiles []string
}

// MaterialFiles lists the files (secrets, certificates) the latest change's
// policies read; a change to any of them must trigger a reload.
func (s *Store) MaterialFiles() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.materialFiles...)
}

// loadMaterials reads every file and variable the policies refer to. This
// is the only place tollgate reads secrets; their values go into the
// Config and from there only into SDS resources.
func loadMaterials(keys []string, read func(string) ([]byte, error)) model.Materials {
	if read == nil {
		read = func(p string) ([]byte, error) { return readRegular(p, MaxMaterialSize) }
	}
	out := make(model.Materials, len(keys))
	for _, k := range keys {
		if p := model.MaterialPath(k); p != "" {
			data, err := read(p)
			if err != nil {
				// The path is already in the message; keep the reason only.
				var pe *fs.PathError
				if errors.As(err, &pe) {
					err = pe.Err
				}
			}
			out[k] = model.Material{Data: data, Err: err}
			continue
		}
		name := strings.TrimPrefix(k, "env:")
		val, ok := os.LookupEnv(name)
		if !ok {
			out[k] = model.Material{Err: fmt.Errorf("not set in tollgate's environment")}
			continue
		}
		out[k] = model.Material{Data: []byte(val)}
	}
	return out
}

// New returns an empty store.
func New(opts Options) (*Store, error) {
	db, err := memdb.NewMemDB(schema)
	if err != nil {
		return nil, fmt.Errorf("store index: %w", err)
	}
	return &Store{opts: opts, db: db}, nil
}

// Replace swaps every object of source for objs in one transaction. It
// returns the new Config, or the reasons the change was refused; in that
// case nothing changes. decodeErrs are the source's own violations (objects
// it could not decode): they refuse the change too, and are reported
// together with whatever resolving the rest finds, so that one pass shows
// every problem.
func (s *Store) Replace(source string, objs []model.Object, decodeErrs model.Violations) (*model.Config, error) {
	return s.replace(source, objs, decodeErrs, 0)
}

// replace is Replace for a source that spent decoded reading objs, which
// counts towards the reload time.
func (s *Store) replace(source string, objs []model.Object, decodeErrs model.Violations, decoded time.Duration) (*model.Config, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	txn := s.db.Txn(true)
	defer txn.Abort() // no-op after Commit
	if _, err := txn.DeleteAll(tableObjects, "source", source); err != nil {
		return nil, fmt.Errorf("store index: %w", err)
	}
	for _, o := range objs {
		// Keyed by where the object was read, not by its name: two objects
		// of one name must both reach BuildConfig, which reports the
		// duplicate, instead of one silently replacing the other here.
		src := o.GetSource()
		id := fmt.Sprintf("%s\x00%s\x00%09d\x00%s", source, src.File, src.Line, model.RefOf(o))
		if err := txn.Insert(tableObjects, &entry{ID: id, Source: source, Object: o}); err != nil {
			return nil, fmt.Errorf("store index: %w", err)
		}
	}
	cfg, err := s.apply(txn, decodeErrs, decoded)
	if err != nil {
		s.lastErr = err
		return nil, err
	}
	txn.Commit()
	s.current, s.lastErr = cfg, nil
	return cfg, nil
}

// Reload rebuilds the served config from the objects the store holds, for
// inputs that change outside every source: the DNSVerifier calls it when a
// reverse-DNS result changes. A refusal is reported like any other (the
// last good config stays); success leaves the status of the latest source
// change as it was.
func (s *Store) Reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.current == nil {
		return nil
	}
	txn := s.db.Txn(false)
	defer txn.Abort()
	cfg, err := s.apply(txn, nil, 0)
	if err != nil {
		s.lastErr = err
		return err
	}
	s.current = cfg
	return nil
}

// apply resolves and lowers the objects txn holds and offers the result to
// Accept. The caller holds s.mu.
func (s *Store) apply(txn *memdb.Txn, decodeErrs model.Violations, decoded time.Duration) (_ *model.Config, err error) {
	start := time.Now()
	var took time.Duration
	if s.opts.Metrics != nil {
		defer func() {
			if took == 0 {
				took = time.Since(start)
			}
			s.opts.Metrics.ObserveReload(decoded+took, err)
		}()
	}
	all, err := allObjects(txn)
	if err != nil {
		return nil, err
	}
	cfg, violations := model.BuildConfigWithInvalid(all, s.opts.Settings, decodeErrs.InvalidObjects())
	keys := policies.MaterialKeys(all)
	s.materialFiles = s.materialFiles[:0]
	for _, k := range keys {
		if p := model.MaterialPath(k); p != "" {
			s.materialFiles = append(s.materialFiles, p)
		}
	}
	var checks []model.ReverseDNSCheck
	now := time.Now
	if s.opts.Now != nil {
		now = s.opts.Now
	}
	if cfg != nil {
		checks = policies.ReverseDNSChecks(cfg)
		violations = append(violations, policies.Lower(cfg, policies.Inputs{
			Materials:  loadMaterials(keys, s.opts.ReadMaterial),
			ReverseDNS: s.opts.DNS.results(checks),
			Now:        now(),
		})...)
	}
	violations = append(append(model.Violations(nil), decodeErrs...), violations...)
	if err := violations.Err(); err != nil {
		if s.opts.Metrics != nil {
			s.opts.Metrics.RefusedChange(RefusedInvalidPolicy)
		}
		return nil, err
	}
	took = time.Since(start)
	if s.opts.Accept != nil {
		if err := s.opts.Accept(cfg); err != nil {
			return nil, err
		}
	}
	s.opts.DNS.retain(checks)
	if s.opts.Log != nil {
		auditRegions(s.opts.Log, s.current, cfg)
	}
	return cfg, nil
}

func allObjects(txn *memdb.Txn) ([]model.Object, error) {
	it, err := txn.Get(tableObjects, "id")
	if err != nil {
		return nil, fmt.Errorf("store index: %w", err)
	}
	var out []model.Object
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*entry).Object)
	}
	return out, nil
}

// Config is the last accepted Config, or nil before the first one.
func (s *Store) Config() *model.Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.current
}

// LastError is why the most recent change was refused, or nil when it was
// accepted. The last good Config keeps being served either way.
func (s *Store) LastError() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastErr
}

// PolicyStatus is the admin view of the policy set.
type PolicyStatus struct {
	// Applied is false when the latest change was refused; the last good
	// config is still served.
	Applied bool `json:"applied"`
	// Objects counts the objects of the config being served, per kind.
	Objects map[string]int `json:"objects"`
	// Violations of the latest refused change.
	Violations []model.Violation `json:"violations,omitempty"`
	// Error is set when the refusal was not a list of violations.
	Error string `json:"error,omitempty"`
	// Conditions of the config being served: policy outcomes that are not
	// errors, such as a policy that lost a conflict or a backend whose
	// reverse DNS did not verify.
	Conditions []model.Condition `json:"conditions,omitempty"`
}

// Status reports what is served and why the latest change was refused, if
// it was.
func (s *Store) Status() PolicyStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := PolicyStatus{Applied: s.lastErr == nil, Objects: map[string]int{}}
	if s.current != nil {
		for _, o := range s.current.Objects {
			st.Objects[o.GetTypeMeta().Kind]++
		}
		st.Conditions = s.current.Conditions
	}
	if s.lastErr != nil {
		if vs, ok := model.AsViolations(s.lastErr); ok {
			st.Violations = vs
		} else {
			st.Error = s.lastErr.Error()
		}
	}
	return st
}
