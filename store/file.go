package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/tollgate-dev/tollgate/model"
)

// DefaultDebounce is how long a directory must be quiet before it is
// reloaded when a change is not known to be complete (a file still open
// for writing, a new directory being filled, or a platform whose watcher
// cannot tell): long enough to fold a `cp -r` into one change, short
// enough to feel immediate. Complete saves wait DefaultSettle instead.
const DefaultDebounce = 50 * time.Millisecond

// FileSource reads policy objects from *.yaml and *.yml files under a
// directory, recursively, and watches it for changes.
type FileSource struct {
	dir      string
	scheme   *model.Scheme
	log      *slog.Logger
	debounce time.Duration
	// allowEmpty accepts a start with no object at all (AllowEmpty).
	allowEmpty bool

	mu       sync.Mutex
	cache    map[string]cachedFile // path → last decode, reused while unchanged
	warnings []string              // from the latest Load

	materialDirs map[string]bool // only touched by Watch's goroutine
	treeDirs     map[string]bool // the policy tree's watched directories; Watch's goroutine only
}

type cachedFile struct {
	sum  [sha256.Size]byte
	objs []model.Object
	errs model.Violations
}

// NewFileSource returns a source for dir.
func NewFileSource(dir string, scheme *model.Scheme, log *slog.Logger) *FileSource {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &FileSource{dir: dir, scheme: scheme, log: log, debounce: DefaultDebounce, cache: map[string]cachedFile{}, materialDirs: map[string]bool{}, treeDirs: map[string]bool{}}
}

// SetDebounce changes the quiet period of changes not known to be
// complete.
func (f *FileSource) SetDebounce(d time.Duration) { f.debounce = d }

// Name identifies the source in the store.
func (f *FileSource) Name() string { return "file:" + f.dir }

// policyFile reports whether name is a file tollgate reads. Hidden files are
// skipped: editors keep swap and lock files there (.x.yaml.swp, .#x.yaml).
func policyFile(name string) bool {
	if strings.HasPrefix(name, ".") {
		return false
	}
	ext := filepath.Ext(name)
	return ext == ".yaml" || ext == ".yml"
}

// Load reads and decodes every policy file. Violations (YAML and per-object
// problems) are returned together; an error means the directory itself could
// not be read.
func (f *FileSource) Load() ([]model.Object, model.Violations, error) {
	var files, warnings []string
	root := walkRoot(f.dir)
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if path == root {
				return err
			}
			// A file that vanished mid-walk is simply not there any more.
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			if path != root && strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir
			}
			return nil
		}
		if !policyFile(d.Name()) {
			return nil
		}
		if !d.Type().IsRegular() {
			// A symbolic link is read if it leads to a regular file;
			// anything else (a FIFO, a device, a socket) would block or
			// never end: skip it, and say so.
			fi, err := os.Stat(path)
			if err != nil || !fi.Mode().IsRegular() {
				why := "it does not resolve"
				if err == nil {
					why = "it is " + notRegular(fi.Mode()).Error()
				}
				warnings = append(warnings, fmt.Sprintf("%s: skipped: %s", path, why))
				return nil
			}
		}
		files = append(files, path)
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("read policy directory: %w", err)
	}
	sort.Strings(files)

	f.mu.Lock()
	defer f.mu.Unlock()
	var (
		objs []model.Object
		errs model.Violations
	)
	seen := make(map[string]bool, len(files))
	var buf []byte // every file is read into it to be hashed; only a changed one is copied, to be decoded
	for _, path := range files {
		data, err := readRegularInto(path, MaxPolicyFileSize, buf)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if errors.Is(err, errTooLarge) {
			errs = append(errs, model.Violation{File: path, Msg: fmt.Sprintf("is larger than %d MiB, the most a policy file may hold: split it into several files", MaxPolicyFileSize>>20)})
			continue
		}
		if err != nil {
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			errs = append(errs, model.Violation{File: path, Msg: "cannot read: " + err.Error()})
			continue
		}
		buf = data
		seen[path] = true
		sum := sha256.Sum256(data)
		c, ok := f.cache[path]
		if !ok || c.sum != sum {
			o, e := f.scheme.Decode(path, bytes.Clone(data))
			c = cachedFile{sum: sum, objs: o, errs: e}
			f.cache[path] = c
		}
		objs = append(objs, c.objs...)
		errs = append(errs, c.errs...)
	}
	for path := range f.cache {
		if !seen[path] {
			delete(f.cache, path)
		}
	}
	errs.Sort()
	for _, w := range warnings {
		f.log.Warn(w)
	}
	f.warnings = warnings
	return objs, errs, nil
}

// Warnings are what the latest Load skipped and why (a FIFO or device
// named like a policy file): not violations, but worth telling.
func (f *FileSource) Warnings() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.warnings...)
}

// Start is the first Sync of a process (serve's start-up, validate): it
// also refuses a path that is not a directory, and a directory that holds
// no object at all, which is almost always the wrong path and would
// otherwise serve (or pass) nothing.
func (f *FileSource) Start(st *Store) error {
	fi, err := os.Stat(f.dir)
	if err != nil {
		return fmt.Errorf("read policy directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is a file, not a directory: give the directory that holds it (every *.yaml and *.yml under it is read)", f.dir)
	}
	if err := f.Sync(st); err != nil {
		return err
	}
	if cfg := st.Config(); (cfg == nil || len(cfg.Objects) == 0) && !f.allowEmpty {
		return fmt.Errorf("%s holds no policy objects: add *.yaml files with at least a Gateway (or check the path)", f.dir)
	}
	return nil
}

// AllowEmpty lets Start accept a directory without objects: with the API
// store on, policies may all come through the API.
func (f *FileSource) AllowEmpty() { f.allowEmpty = true }

// Sync loads the directory into st. It returns the resulting error, if any:
// decoding violations, resolution violations or a refusal by the store.
func (f *FileSource) Sync(st *Store) error {
	start := time.Now()
	objs, violations, err := f.Load()
	if err != nil {
		return err
	}
	_, err = st.replace(f.Name(), objs, violations, time.Since(start), nil)
	return err
}

// DefaultSettle is how long a complete save (a file closed after writing,
// or renamed into place) waits for more events before the directory is
// reloaded: long enough to fold a burst of complete saves (git checkout, a
// configuration management run) into one change, short enough to add
// nothing noticeable to a single save.
const DefaultSettle = 3 * time.Millisecond

// dirWatcher watches directories (not recursively) for changes of their
// entries: inotify on Linux (watch_linux.go), fsnotify elsewhere.
type dirWatcher interface {
	Add(dir string) error
	Events() <-chan dirEvent
	Errors() <-chan error
	Close() error
}

// dirEvent is one change in a watched directory.
type dirEvent struct {
	Name string
	// Kind says whether the change is complete: a file closed after
	// writing or renamed into place, a removal, an attribute change.
	Kind eventKind
	// Created is set when Name appeared (created or renamed into place).
	Created bool
	// IsDir is set when Name is a directory (where the watcher knows).
	IsDir bool
}

type eventKind int

const (
	// eventStarted: written or created, more may follow (in-place writes
	// until the writer closes the file; fsnotify reports everything so).
	eventStarted eventKind = iota
	// eventComplete: the writer is done with the file.
	eventComplete
	// eventGone: removed or renamed away.
	eventGone
)

// Watch follows the directory (and the directories of the files the
// policies read) until ctx ends, syncing st after each change. A change is
// served as soon as it is complete: when every file written since the
// last sync has been closed or renamed into place, the directory is
// reloaded after DefaultSettle (a burst of saves folds into one change).
// Otherwise (a file still open for writing, a new directory being filled,
// or a platform whose watcher cannot tell) it waits until the directory
// has been quiet for the debounce period, as before; that is also the
// longest a save waits. New subdirectories are watched as they appear; a
// change that leaves the directory invalid is logged with every violation
// and the last good config stays in place. onSync, if set, is called
// after every attempt with its result.
func (f *FileSource) Watch(ctx context.Context, st *Store, onSync func(error)) error {
	w, err := newDirWatcher()
	if err != nil {
		return fmt.Errorf("watch policy directory: %w", err)
	}
	defer w.Close()
	if err := f.addTree(w, f.dir); err != nil {
		return err
	}
	// Whatever changed between the caller's initial load and the watch
	// being in place produced no event: reload once now to catch it.
	timer := time.NewTimer(0)
	open := map[string]bool{} // files written and not yet closed
	needQuiet := false        // a new directory, or a watcher error
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events():
			if !ok {
				return nil
			}
			if !f.relevant(ev.Name) {
				continue
			}
			f.log.Debug("policy directory event", "name", ev.Name, "kind", ev.Kind, "created", ev.Created)
			if ev.Created {
				if fi, err := os.Lstat(ev.Name); err == nil {
					switch {
					case fi.IsDir():
						ev.Kind = eventComplete // nothing to close; a new tree directory waits for quiet below
						// A new directory of the policy tree: files may
						// have landed before the watch did; the reload
						// below reads them anyway, once the directory has
						// been quiet. (A directory next to a secret, as
						// secret managers stage versions, is not read.)
						if f.treeDirs[filepath.Dir(ev.Name)] && !strings.HasPrefix(filepath.Base(ev.Name), ".") {
							if err := f.addTree(w, ev.Name); err != nil {
								f.log.Warn("cannot watch new directory", "dir", ev.Name, "err", err)
							}
							needQuiet = true
						}
					case fi.Mode()&fs.ModeSymlink != 0:
						ev.Kind = eventComplete // a symbolic link is whole when made
					}
				}
			}
			switch ev.Kind {
			case eventStarted:
				open[ev.Name] = true
			default:
				delete(open, ev.Name)
			}
			if len(open) == 0 && !needQuiet {
				timer.Reset(DefaultSettle)
			} else {
				timer.Reset(f.debounce)
			}
		case err, ok := <-w.Errors():
			if !ok {
				return nil
			}
			// An overflowed queue lost events: reload to be sure.
			f.log.Warn("policy watch error; reloading", "err", err)
			needQuiet = true
			timer.Reset(f.debounce)
		case <-timer.C:
			// A file left open (its writer died, or keeps it open) must
			// not hold every later save to the quiet period: its next
			// write marks it again.
			clear(open)
			needQuiet = false
			err := f.Sync(st)
			f.watchMaterials(w, st)
			f.report(err)
			if onSync != nil {
				onSync(err)
			}
		}
	}
}

// relevant reports whether a change of name can change what the source
// loads: a policy file or a directory of the policy tree (hidden names are
// skipped, as Load skips them), or anything in a directory of a file the
// policies read (secrets are often swapped by renaming a hidden directory
// or symbolic link next to them).
func (f *FileSource) relevant(name string) bool {
	dir := filepath.Dir(name)
	if f.materialDirs[dir] || f.materialDirs[name] {
		return true
	}
	base := filepath.Base(name)
	if strings.HasPrefix(base, ".") && name != f.dir {
		return false
	}
	if policyFile(base) || name == f.dir {
		return true
	}
	fi, err := os.Lstat(name)
	return err != nil || fi.IsDir() // gone (it may have been a directory), or a directory
}

// watchMaterials adds a watch on the directory of every file the policies
// read (CA bundles, keys, API key files), wherever it is: replacing such a
// file, atomically or not, is a change like any other. Directories, not
// files, are watched, so that rename-replacements are seen.
func (f *FileSource) watchMaterials(w dirWatcher, st *Store) {
	for _, file := range st.MaterialFiles() {
		dir := filepath.Dir(file)
		if f.materialDirs[dir] {
			continue
		}
		if err := w.Add(dir); err != nil {
			f.log.Warn("cannot watch the directory of a file the policies read; changes to it need a policy edit to be picked up", "dir", dir, "err", err)
			continue
		}
		f.materialDirs[dir] = true
	}
}

func (f *FileSource) report(err error) {
	if err == nil {
		f.log.Info("policies applied", "dir", f.dir)
		return
	}
	if vs, ok := model.AsViolations(err); ok {
		f.log.Error("policies rejected; still serving the last good config", "dir", f.dir, "violations", len(vs))
		for _, v := range vs {
			f.log.Error(v.Error())
		}
		return
	}
	f.log.Error("policies rejected; still serving the last good config", "dir", f.dir, "err", err)
}

// walkRoot makes WalkDir enter a root that is a symbolic link to a
// directory (a common way to switch policy sets atomically), which it
// otherwise reports as a single non-directory entry.
func walkRoot(dir string) string {
	if fi, err := os.Lstat(dir); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		return dir + string(filepath.Separator)
	}
	return dir
}

func (f *FileSource) addTree(w dirWatcher, root string) error {
	root = walkRoot(root)
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if !d.IsDir() {
			return nil
		}
		if path != root && strings.HasPrefix(d.Name(), ".") {
			return filepath.SkipDir
		}
		if err := w.Add(path); err != nil {
			return fmt.Errorf("watch %s: %w", path, err)
		}
		f.treeDirs[filepath.Clean(path)] = true
		return nil
	})
}
