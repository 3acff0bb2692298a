package store

import (
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

	"github.com/fsnotify/fsnotify"

	"github.com/tollgate-dev/tollgate/model"
)

// DefaultDebounce is how long a directory must be quiet before it is
// reloaded: long enough to fold an editor's write-rename-chmod burst or a
// `cp -r` into one change, short enough to feel immediate.
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
	return &FileSource{dir: dir, scheme: scheme, log: log, debounce: DefaultDebounce, cache: map[string]cachedFile{}, materialDirs: map[string]bool{}}
}

// SetDebounce changes the quiet period before a reload.
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
	for _, path := range files {
		data, err := readRegular(path, MaxPolicyFileSize)
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
		seen[path] = true
		sum := sha256.Sum256(data)
		c, ok := f.cache[path]
		if !ok || c.sum != sum {
			o, e := f.scheme.Decode(path, data)
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

// Watch syncs st whenever the directory changes, until ctx ends. Bursts of
// events are debounced; new subdirectories are watched as they appear; a
// change that leaves the directory invalid is logged with every violation
// and the last good config stays in place. onSync, if set, is called after
// every attempt with its result.
func (f *FileSource) Watch(ctx context.Context, st *Store, onSync func(error)) error {
	w, err := fsnotify.NewWatcher()
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
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			f.log.Debug("policy directory event", "event", ev.String())
			if ev.Has(fsnotify.Create) {
				if fi, err := os.Stat(ev.Name); err == nil && fi.IsDir() && !strings.HasPrefix(filepath.Base(ev.Name), ".") {
					// Files may have landed before the watch did; the
					// reload below reads them anyway.
					if err := f.addTree(w, ev.Name); err != nil {
						f.log.Warn("cannot watch new directory", "dir", ev.Name, "err", err)
					}
				}
			}
			timer.Reset(f.debounce)
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			// An overflowed queue lost events: reload to be sure.
			f.log.Warn("policy watch error; reloading", "err", err)
			timer.Reset(f.debounce)
		case <-timer.C:
			err := f.Sync(st)
			f.watchMaterials(w, st)
			f.report(err)
			if onSync != nil {
				onSync(err)
			}
		}
	}
}

// watchMaterials adds a watch on the directory of every file the policies
// read (CA bundles, keys, API key files), wherever it is: replacing such a
// file, atomically or not, is a change like any other. Directories, not
// files, are watched, so that rename-replacements are seen.
func (f *FileSource) watchMaterials(w *fsnotify.Watcher, st *Store) {
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

func (f *FileSource) addTree(w *fsnotify.Watcher, root string) error {
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
		return nil
	})
}
