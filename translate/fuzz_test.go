package translate_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/tollgate-dev/tollgate/model/modeltest"
	"github.com/tollgate-dev/tollgate/policies"
	"github.com/tollgate-dev/tollgate/store"
	"github.com/tollgate-dev/tollgate/translate"
	"github.com/tollgate-dev/tollgate/translate/translatetest"
)

// fuzzCorpus is what FuzzTranslate's inputs refer to: the directories an
// input may pretend to be read from (the golden inputs' and each
// example's, so that the secret files and certificates their policies name
// resolve), and those files.
type fuzzCorpus struct {
	dirs      []string          // absolute
	materials map[string][]byte // absolute path → content, read once
	seeds     map[int][]byte    // dir index → one policy stream
}

// loadFuzzCorpus reads every golden input and every example (the files of
// one directory joined into one YAML stream), and every other file under
// those directories into memory, for an in-memory material reader: the
// fuzz loop itself does no I/O.
func loadFuzzCorpus(f *testing.F) *fuzzCorpus {
	f.Helper()
	c := &fuzzCorpus{materials: map[string][]byte{}, seeds: map[int][]byte{}}
	examples, err := translatetest.ExampleDirs("../examples")
	if err != nil {
		f.Fatal(err)
	}
	for _, root := range append([]string{"testdata/in"}, examples...) {
		abs, err := filepath.Abs(root)
		if err != nil {
			f.Fatal(err)
		}
		streams := map[string][]string{} // dir → policy documents
		err = filepath.WalkDir(abs, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			if ext := filepath.Ext(path); ext == ".yaml" || ext == ".yml" {
				dir := filepath.Dir(path)
				if root == "testdata/in" && dir == abs {
					// Each golden input is a seed of its own.
					streams[path] = []string{string(data)}
				} else {
					streams[dir] = append(streams[dir], string(data))
				}
				return nil
			}
			c.materials[path] = data
			return nil
		})
		if err != nil {
			f.Fatal(err)
		}
		keys := make([]string, 0, len(streams))
		for k := range streams {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			dir := k
			if strings.HasSuffix(k, ".yaml") {
				dir = filepath.Dir(k)
			}
			i := c.dirIndex(dir)
			f.Add(uint8(i), []byte(strings.Join(streams[k], "\n---\n")))
		}
	}
	return c
}

func (c *fuzzCorpus) dirIndex(dir string) int {
	for i, d := range c.dirs {
		if d == dir {
			return i
		}
	}
	c.dirs = append(c.dirs, dir)
	return len(c.dirs) - 1
}

func (c *fuzzCorpus) read(path string) ([]byte, error) {
	if data, ok := c.materials[filepath.Clean(path)]; ok {
		return data, nil
	}
	return nil, fs.ErrNotExist
}

// FuzzTranslate checks the promise that matters most: any policy set the
// model accepts translates without error into configuration that passes
// Envoy's constraints. It goes the way tollgate serve does — the full
// policy scheme, the store, lowering of every policy kind with the files
// they name (served from memory), translation, the deep check — from seeds
// of every golden input and every example, so that credentials, TLS,
// QoS, guard rails, egress and DNS policies are all in play. A failure is a
// validation gap in the model (an input that should have been rejected
// with a message) or a translation bug.
//
//	go test ./translate -run XXX -fuzz FuzzTranslate -fuzztime 60s
func FuzzTranslate(f *testing.F) {
	c := loadFuzzCorpus(f)
	f.Add(uint8(0), modeltest.GenerateYAML(3))
	scheme := policies.NewScheme()
	f.Fuzz(func(t *testing.T, dir uint8, data []byte) {
		file := filepath.Join(c.dirs[int(dir)%len(c.dirs)], "fuzz.yaml")
		objs, errs := scheme.Decode(file, data)
		if len(errs) > 0 {
			return
		}
		st, err := store.New(store.Options{DNS: goldenVerifier(), ReadMaterial: c.read})
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := st.Replace("fuzz", objs, nil)
		if err != nil {
			return
		}
		out, err := translate.Translate(cfg)
		if err != nil {
			t.Fatalf("accepted policy failed to translate: %v", err)
		}
		if err := out.Validate(); err != nil {
			t.Fatalf("accepted policy translated into configuration Envoy would reject: %v", err)
		}
	})
}
