package translatetest

import (
	"os"
	"path/filepath"
)

// ExampleDirs lists the policy directory of every example under root (the
// repository's examples/): the example's folder, or its policies/ folder
// when it has one (an example that keeps other files beside its policies,
// such as tollgate's config or objects for the API).
func ExampleDirs(root string) ([]string, error) {
	dirs, err := filepath.Glob(filepath.Join(root, "*"))
	if err != nil {
		return nil, err
	}
	out := dirs[:0]
	for _, d := range dirs {
		if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
			continue
		}
		if fi, err := os.Stat(filepath.Join(d, "policies")); err == nil && fi.IsDir() {
			d = filepath.Join(d, "policies")
		}
		out = append(out, d)
	}
	return out, nil
}
