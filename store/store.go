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
	Ref    string // model.Ref.String()
	Object model.Object
}

var schema = &memdb.DBSchema{Tables: map[string]*memdb.TableSchema{
	tableObjects: {
		Name: tableObjects,
		Indexes: map[string]*memdb.IndexSchema{
			"id":     {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "ID"}},
			"source": {Name: "source", Indexer: &memdb.StringFieldIndex{Field: "Source"}},
			"ref":    {Name: "ref", Indexer: &memdb.StringFieldIndex{Field: "Ref"}},
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
	// Check is Accept for Preview (dry runs, diffs): it may refuse a
	// config but must not serve it. tollgate serve translates and checks
	// Envoy's constraints here; nil accepts every valid Config.
	Check func(*model.Config) error
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
	// gens counts the generations of the served objects (objstatus.go).
	gens    map[model.Ref]*genEntry
	genPass uint64 // counts countGenerations' passes
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
	return s.replace(source, objs, decodeErrs, 0, nil)
}

// ErrNotAccepted wraps Accept's refusal of a change that UpdateWith had
// already committed: the caller must undo what its commit step did.
var ErrNotAccepted = errors.New("refused after it was committed")

// Seed puts objs in the store as source's without resolving them: the API
// source seeds its objects at start-up, and the file source's first Sync
// then resolves both together (either may refer to the other).
func (s *Store) Seed(source string, objs []model.Object) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	txn := s.db.Txn(true)
	defer txn.Abort()
	if err := s.stage(txn, source, objs); err != nil {
		return err
	}
	txn.Commit()
	return nil
}

// replace is Replace for a source that spent decoded reading objs, which
// counts towards the reload time.
func (s *Store) replace(source string, objs []model.Object, decodeErrs model.Violations, decoded time.Duration, commit func(*model.Config) error) (*model.Config, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	txn := s.db.Txn(true)
	defer txn.Abort() // no-op after Commit
	if err := s.stage(txn, source, objs); err != nil {
		return nil, err
	}
	cfg, err := s.apply(txn, decodeErrs, decoded, commit)
	if err != nil {
		s.lastErr = err
		return nil, err
	}
	txn.Commit()
	s.current, s.lastErr = cfg, nil
	return cfg, nil
}

// Preview resolves and lowers the store's objects with source's replaced by
// objs, as Replace would, and runs Options.Check on the result instead of
// Accept; nothing is committed or served. It answers dry runs and diffs:
// the same violations a real change would get, for the same inputs.
func (s *Store) Preview(source string, objs []model.Object, decodeErrs model.Violations) (*model.Config, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	txn := s.db.Txn(true)
	defer txn.Abort() // never committed
	if err := s.stage(txn, source, objs); err != nil {
		return nil, err
	}
	return s.resolve(txn, decodeErrs, 0, true, nil)
}

// UpdateWith replaces source's object named ref by obj (removes it when
// obj is nil), keeping the source's other objects, with a commit step: once
// the change is valid, commit is called before Accept serves it, and an
// error from commit refuses the change. The API source persists its write
// there, so that nothing is served that is not durable. If Accept then
// refuses the change, UpdateWith returns ErrNotAccepted wrapping the
// reason.
func (s *Store) UpdateWith(source string, ref model.Ref, obj model.Object, commit func(*model.Config) error) (*model.Config, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	txn := s.db.Txn(true)
	defer txn.Abort() // no-op after Commit
	if err := s.stageRef(txn, source, ref, obj); err != nil {
		return nil, err
	}
	cfg, err := s.apply(txn, nil, 0, commit)
	if err != nil {
		s.lastErr = err
		return nil, err
	}
	txn.Commit()
	s.current, s.lastErr = cfg, nil
	return cfg, nil
}

// PreviewUpdate is Preview for one object, as UpdateWith changes it.
func (s *Store) PreviewUpdate(source string, ref model.Ref, obj model.Object) (*model.Config, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	txn := s.db.Txn(true)
	defer txn.Abort() // never committed
	if err := s.stageRef(txn, source, ref, obj); err != nil {
		return nil, err
	}
	return s.resolve(txn, nil, 0, true, nil)
}

// stageRef replaces source's objects named ref with obj (none if nil).
func (s *Store) stageRef(txn *memdb.Txn, source string, ref model.Ref, obj model.Object) error {
	it, err := txn.Get(tableObjects, "ref", ref.String())
	if err != nil {
		return fmt.Errorf("store index: %w", err)
	}
	var old []*entry
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if e := raw.(*entry); e.Source == source {
			old = append(old, e)
		}
	}
	for _, e := range old {
		if err := txn.Delete(tableObjects, e); err != nil {
			return fmt.Errorf("store index: %w", err)
		}
	}
	if obj == nil {
		return nil
	}
	return s.insert(txn, source, obj)
}

// entryID keys an object by where it was read, not by its name: two
// objects of one name must both reach BuildConfig, which reports the
// duplicate, instead of one silently replacing the other here.
func entryID(source string, o model.Object) string {
	src := o.GetSource()
	return fmt.Sprintf("%s\x00%s\x00%09d\x00%s", source, src.File, src.Line, model.RefOf(o))
}

// insert adds one object of source to txn (replacing the entry of the
// same ID).
func (s *Store) insert(txn *memdb.Txn, source string, o model.Object) error {
	if err := txn.Insert(tableObjects, &entry{ID: entryID(source, o), Source: source, Ref: model.RefOf(o).String(), Object: o}); err != nil {
		return fmt.Errorf("store index: %w", err)
	}
	return nil
}

// stage replaces source's objects with objs in txn. Only what changed is
// written: a file source hands back the same decoded objects for the files
// that did not change, and rewriting tens of thousands of index entries on
// every edit would cost more than resolving them.
func (s *Store) stage(txn *memdb.Txn, source string, objs []model.Object) error {
	it, err := txn.Get(tableObjects, "source", source)
	if err != nil {
		return fmt.Errorf("store index: %w", err)
	}
	// By object: a decoded object is read from one place, so the same
	// object has the same entry.
	old := map[model.Object]*entry{}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		e := raw.(*entry)
		old[e.Object] = e
	}
	var added []model.Object
	for _, o := range objs {
		if _, ok := old[o]; ok {
			delete(old, o)
			continue
		}
		added = append(added, o)
	}
	// Removals first: a changed object keeps its entry's ID, and deleting
	// after inserting would delete the new one.
	for _, e := range old {
		if err := txn.Delete(tableObjects, e); err != nil {
			return fmt.Errorf("store index: %w", err)
		}
	}
	for _, o := range added {
		if err := s.insert(txn, source, o); err != nil {
			return err
		}
	}
	return nil
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
	cfg, err := s.apply(txn, nil, 0, nil)
	if err != nil {
		s.lastErr = err
		return err
	}
	s.current = cfg
	return nil
}

// apply resolves and lowers the objects txn holds and offers the result to
// Accept. The caller holds s.mu.
func (s *Store) apply(txn *memdb.Txn, decodeErrs model.Violations, decoded time.Duration, commit func(*model.Config) error) (*model.Config, error) {
	cfg, err := s.resolve(txn, decodeErrs, decoded, false, commit)
	if err != nil {
		return nil, err
	}
	s.countGenerations(cfg)
	if s.opts.Log != nil {
		auditRegions(s.opts.Log, s.current, cfg)
	}
	return cfg, nil
}

// resolve resolves and lowers the objects txn holds and offers the result
// to Accept, or for a preview to Check (a preview records no metrics and
// leaves the watched material files alone). The caller holds s.mu.
func (s *Store) resolve(txn *memdb.Txn, decodeErrs model.Violations, decoded time.Duration, preview bool, commit func(*model.Config) error) (_ *model.Config, err error) {
	start := time.Now()
	var took time.Duration
	metrics := s.opts.Metrics
	accept := s.opts.Accept
	if preview {
		metrics, accept = nil, s.opts.Check
	}
	if metrics != nil {
		defer func() {
			if took == 0 {
				took = time.Since(start)
			}
			metrics.ObserveReload(decoded+took, err)
		}()
	}
	all, conflicts, err := allObjects(txn)
	if err != nil {
		return nil, err
	}
	cfg, violations := model.BuildConfigWithInvalid(all, s.opts.Settings, decodeErrs.InvalidObjects())
	if cfg != nil {
		cfg.Conditions = append(cfg.Conditions, conflicts...)
	}
	keys := policies.MaterialKeys(all)
	if !preview {
		s.materialFiles = s.materialFiles[:0]
		for _, k := range keys {
			if p := model.MaterialPath(k); p != "" {
				s.materialFiles = append(s.materialFiles, p)
			}
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
		if metrics != nil {
			metrics.RefusedChange(RefusedInvalidPolicy)
		}
		return nil, err
	}
	took = time.Since(start)
	if commit != nil {
		// What is committed must be servable: Check first (translation,
		// Envoy's constraints), so that only the publication is left
		// after the commit.
		if s.opts.Check != nil {
			if err := s.opts.Check(cfg); err != nil {
				return nil, err
			}
		}
		if err := commit(cfg); err != nil {
			return nil, err
		}
	}
	if accept != nil {
		if err := accept(cfg); err != nil {
			if commit != nil {
				return nil, fmt.Errorf("%w: %w", ErrNotAccepted, err)
			}
			return nil, err
		}
	}
	if !preview {
		// The reverse-DNS checks the served policies ask for: the others'
		// results are forgotten.
		s.opts.DNS.retain(checks)
	}
	return cfg, nil
}

// allObjects lists every object of every source. An object the API holds
// under a name that a file also defines is left out: the file wins (files
// are what an operator reviews and deploys), and both get a Conflicted
// condition. The API refuses to create such an object; this happens when
// the file appears after it.
func allObjects(txn *memdb.Txn) ([]model.Object, []model.Condition, error) {
	it, err := txn.Get(tableObjects, "id")
	if err != nil {
		return nil, nil, fmt.Errorf("store index: %w", err)
	}
	var files, api []*entry
	for raw := it.Next(); raw != nil; raw = it.Next() {
		e := raw.(*entry)
		if e.Source == APISourceName {
			api = append(api, e)
			continue
		}
		files = append(files, e)
	}
	out := make([]model.Object, 0, len(files)+len(api))
	for _, e := range files {
		out = append(out, e.Object)
	}
	if len(api) == 0 {
		return out, nil, nil
	}
	file := make(map[string]*entry, len(files))
	for _, e := range files {
		if _, dup := file[e.Ref]; !dup {
			file[e.Ref] = e
		}
	}
	var conds []model.Condition
	for _, e := range api {
		f, clash := file[e.Ref]
		if !clash {
			out = append(out, e.Object)
			continue
		}
		src := f.Object.GetSource()
		conds = append(conds, model.Condition{Object: e.Ref, Type: ConditionConflicted, Status: true, Reason: ReasonDefinedByFileAndAPI,
			Message: fmt.Sprintf("both %s:%d and the API (%s) define it, and files win: the file's is served; delete it through the API (that deletes the API's copy only), or remove it from the file",
				src.File, src.Line, e.Object.GetSource().File)})
	}
	return out, conds, nil
}

// Conflict conditions between the file and API sources.
const (
	ConditionConflicted       = "Conflicted"
	ReasonDefinedByFileAndAPI = "DefinedByFileAndAPI"
)

// APISourceName is the name of the API source in the store.
const APISourceName = "api"

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
