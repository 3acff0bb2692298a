package store_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/policies"
	"github.com/tollgate-dev/tollgate/store"
)

const gateway = `apiVersion: tollgate.dev/v1alpha1
kind: Gateway
metadata: {name: egress}
spec:
  listeners: [{name: http, port: 10080, protocol: HTTP}]
`

func backend(name string) string {
	if name == "gemini" {
		return "apiVersion: tollgate.dev/v1alpha1\nkind: Backend\nmetadata: {name: gemini}\nspec: {provider: gemini}\n"
	}
	return "apiVersion: tollgate.dev/v1alpha1\nkind: Backend\nmetadata: {name: " + name + "}\nspec: {provider: openai}\n"
}

func route(name, backend string) string {
	return "apiVersion: tollgate.dev/v1alpha1\nkind: HTTPRoute\nmetadata: {name: " + name + "}\n" +
		"spec:\n  parentRefs: [{name: egress}]\n  rules: [{backendRefs: [{name: " + backend + "}]}]\n"
}

func write(t testing.TB, path, content string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, os.WriteFile(path, []byte(content), 0o644))
}

// watched runs a FileSource on dir and lets tests wait for sync results.
type watched struct {
	st      *store.Store
	results chan error
	mu      sync.Mutex
	applied []*model.Config
}

func watch(t *testing.T, dir string) *watched {
	t.Helper()
	return watchWith(t, dir, 20*time.Millisecond)
}

// watchWith is watch with a debounce of its own.
func watchWith(t *testing.T, dir string, debounce time.Duration) *watched {
	t.Helper()
	w := &watched{results: make(chan error, 100)}
	st, err := store.New(store.Options{Accept: func(c *model.Config) error {
		w.mu.Lock()
		w.applied = append(w.applied, c)
		w.mu.Unlock()
		return nil
	}})
	require.NoError(t, err)
	w.st = st
	src := store.NewFileSource(dir, policies.NewScheme(), nil)
	src.SetDebounce(debounce)
	require.NoError(t, src.Sync(st), "initial load")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = src.Watch(ctx, st, func(err error) { w.results <- err })
	}()
	t.Cleanup(func() { cancel(); <-done })
	// Watch reloads once as soon as its watches are in place; after that,
	// every change produces an event.
	require.NoError(t, <-w.results)
	return w
}

// until waits for a sync whose outcome satisfies ok, skipping others (an
// editor's save may produce several bursts).
func (w *watched) until(t *testing.T, ok func(error) bool) error {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case err := <-w.results:
			if ok(err) {
				return err
			}
		case <-deadline:
			t.Fatal("timed out waiting for the policy directory to sync")
		}
	}
}

func (w *watched) routes() []string {
	var names []string
	for _, o := range w.st.Config().Objects {
		if o.GetTypeMeta().Kind == model.KindHTTPRoute {
			names = append(names, o.GetMeta().Name)
		}
	}
	return names
}

func applied(err error) bool { return err == nil }

func TestWatchFollowsEdits(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "gateway.yaml"), gateway+"---\n"+backend("openai"))
	write(t, filepath.Join(dir, "routes.yaml"), route("a", "openai"))
	w := watch(t, dir)
	require.Equal(t, []string{"a"}, w.routes())

	// Atomic rename-save, as vim and most editors do.
	tmp := filepath.Join(dir, ".routes.yaml.swp")
	write(t, tmp, route("a", "openai")+"---\n"+route("b", "openai"))
	require.NoError(t, os.Rename(tmp, filepath.Join(dir, "routes.yaml")))
	w.until(t, applied)
	require.Equal(t, []string{"a", "b"}, w.routes())

	// A new subdirectory, and a file written into it right away.
	write(t, filepath.Join(dir, "team", "nested", "c.yml"), route("c", "openai"))
	w.until(t, func(err error) bool { return err == nil && len(w.routes()) == 3 })
	require.Equal(t, []string{"a", "b", "c"}, w.routes())

	// Files in the new subdirectory are watched too.
	write(t, filepath.Join(dir, "team", "nested", "c.yml"), route("c2", "openai"))
	w.until(t, func(err error) bool { return err == nil && strings.Contains(strings.Join(w.routes(), ","), "c2") })

	// Deleting a file removes its objects; deleting a directory its files'.
	require.NoError(t, os.Remove(filepath.Join(dir, "routes.yaml")))
	w.until(t, func(err error) bool { return err == nil && len(w.routes()) == 1 })
	require.NoError(t, os.RemoveAll(filepath.Join(dir, "team")))
	w.until(t, func(err error) bool { return err == nil && len(w.routes()) == 0 })

	// Files that are not policy files are ignored.
	write(t, filepath.Join(dir, "notes.txt"), "not yaml: [")
	write(t, filepath.Join(dir, ".hidden.yaml"), "not: [valid")
	write(t, filepath.Join(dir, "r.yaml"), route("r", "openai"))
	w.until(t, func(err error) bool { return err == nil && len(w.routes()) == 1 })
}

func TestWatchKeepsLastGoodConfig(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "base.yaml"), gateway+"---\n"+backend("openai"))
	write(t, filepath.Join(dir, "route.yaml"), route("a", "openai"))
	w := watch(t, dir)
	good := w.st.Config()

	// A dangling reference and a syntax error in another file: both are
	// reported, nothing changes.
	write(t, filepath.Join(dir, "route.yaml"), route("a", "missing"))
	write(t, filepath.Join(dir, "broken.yaml"), "kind: [")
	err := w.until(t, func(err error) bool {
		return err != nil && strings.Contains(err.Error(), "missing") && strings.Contains(err.Error(), "broken.yaml")
	})
	vs, ok := model.AsViolations(err)
	require.True(t, ok)
	require.Len(t, vs, 2, "%v", vs)
	require.Same(t, good, w.st.Config(), "the last good config must stay in place")
	require.False(t, w.st.Status().Applied)
	require.Len(t, w.st.Status().Violations, 2)

	// Fixing both applies the change.
	require.NoError(t, os.Remove(filepath.Join(dir, "broken.yaml")))
	write(t, filepath.Join(dir, "route.yaml"), route("b", "openai"))
	w.until(t, func(err error) bool { return err == nil && len(w.routes()) == 1 && w.routes()[0] == "b" })
	require.True(t, w.st.Status().Applied)
}

func TestWatchDebouncesBursts(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "base.yaml"), gateway+"---\n"+backend("openai"))
	w := watch(t, dir)
	w.mu.Lock()
	before := len(w.applied)
	w.mu.Unlock()
	// Many writes in quick succession (a `cp -r` of 50 files)…
	for i := 0; i < 50; i++ {
		write(t, filepath.Join(dir, "routes", "r"+string(rune('a'+i%26))+string(rune('a'+i/26))+".yaml"),
			route("r"+string(rune('a'+i%26))+string(rune('a'+i/26)), "openai"))
	}
	w.until(t, func(err error) bool { return err == nil && len(w.routes()) == 50 })
	w.mu.Lock()
	defer w.mu.Unlock()
	// …are folded into a handful of reloads, not 50.
	require.Less(t, len(w.applied)-before, 10)
}

func TestLoadReportsUnreadableDirectory(t *testing.T) {
	src := store.NewFileSource(filepath.Join(t.TempDir(), "absent"), policies.NewScheme(), nil)
	_, _, err := src.Load()
	require.ErrorContains(t, err, "read policy directory")
}

func TestReplaceMergesSources(t *testing.T) {
	st, err := store.New(store.Options{})
	require.NoError(t, err)
	decode := func(src string) []model.Object {
		objs, errs := policies.NewScheme().Decode("x.yaml", []byte(src))
		require.Empty(t, errs)
		return objs
	}
	_, err = st.Replace("a", decode(gateway+"---\n"+backend("openai")), nil)
	require.NoError(t, err)
	_, err = st.Replace("b", decode(route("r", "openai")), nil)
	require.NoError(t, err)
	require.Len(t, st.Config().Objects, 3)
	// The same object from two sources is a duplicate, not an overwrite.
	_, err = st.Replace("b", decode(backend("openai")), nil)
	require.ErrorContains(t, err, "already defined")
	require.Len(t, st.Config().Objects, 3)
	// Emptying a source removes its objects.
	_, err = st.Replace("b", nil, nil)
	require.NoError(t, err)
	require.Len(t, st.Config().Objects, 2)
}

// A policy directory given as a symbolic link (e.g. switched atomically
// between releases) is read through the link.
func TestLoadFollowsSymlinkedRoot(t *testing.T) {
	real := t.TempDir()
	write(t, filepath.Join(real, "p.yaml"), gateway)
	link := filepath.Join(t.TempDir(), "current")
	require.NoError(t, os.Symlink(real, link))
	objs, errs, err := store.NewFileSource(link, policies.NewScheme(), nil).Load()
	require.NoError(t, err)
	require.Empty(t, errs)
	require.Len(t, objs, 1)
}
