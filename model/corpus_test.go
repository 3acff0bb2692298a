package model

import (
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

var updateCorpus = flag.Bool("update-corpus", false, "rewrite cmd/tollgate/testdata/broken/EXPECTED.txt from the corpus")

// brokenCorpus is the policy directory that the CLI test runs
// `tollgate validate` on.
var brokenCorpus = filepath.Join("..", "cmd", "tollgate", "testdata", "broken")

// validateDir does what `tollgate validate DIR` is meant to report: decode
// every *.yaml and *.yml file under dir (recursively, hidden files and
// directories skipped, in lexical order, named relative to dir), then resolve
// every object that decoded, and return all violations sorted.
func validateDir(t testing.TB, dir string) Violations {
	t.Helper()
	var files []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path != dir && strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if ext := filepath.Ext(path); !d.IsDir() && (ext == ".yaml" || ext == ".yml") {
			files = append(files, path)
		}
		return nil
	})
	require.NoError(t, err)
	sort.Strings(files)

	s := NewScheme()
	var (
		objs []Object
		all  Violations
	)
	for _, path := range files {
		data, err := os.ReadFile(path)
		require.NoError(t, err)
		rel, err := filepath.Rel(dir, path)
		require.NoError(t, err)
		o, vs := s.Decode(filepath.ToSlash(rel), data)
		objs = append(objs, o...)
		all = append(all, vs...)
	}
	cfg, vs := BuildConfigWithInvalid(objs, Settings{}, all.InvalidObjects())
	require.Equal(t, len(vs) == 0, cfg != nil)
	all = append(all, vs...)
	all.Sort()
	return all
}

func TestBrokenCorpus(t *testing.T) {
	vs := validateDir(t, brokenCorpus)
	var b strings.Builder
	for _, v := range vs {
		b.WriteString(v.Error())
		b.WriteByte('\n')
	}
	expectedFile := filepath.Join(brokenCorpus, "EXPECTED.txt")
	if *updateCorpus {
		// Rewrite, and say whether that changed anything; comparing the
		// file just written with itself would prove nothing.
		old, _ := os.ReadFile(expectedFile)
		require.NoError(t, os.WriteFile(expectedFile, []byte(b.String()), 0o644))
		if string(old) != b.String() {
			t.Logf("%s rewritten: review the diff", expectedFile)
		}
	} else {
		want, err := os.ReadFile(expectedFile)
		require.NoError(t, err)
		require.Equal(t, string(want), b.String(), "run `go test ./model -run TestBrokenCorpus -update-corpus` after changing the corpus on purpose")
	}

	// The corpus shows each kind of problem at least once.
	for _, needle := range []string{
		"invalid YAML: ",        // syntax error
		"unknown field ",        // unknown field
		"must be an integer",    // wrong type
		"does not exist",        // dangling reference
		"is already defined at", // duplicate name across two files
	} {
		require.Contains(t, b.String(), needle)
	}
	// And base.yaml, which the others refer to, is valid.
	for _, v := range vs {
		require.NotEqual(t, "base.yaml", v.File, v.Error())
	}
}
