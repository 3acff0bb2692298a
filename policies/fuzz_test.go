package policies_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/policies"
)

// fuzzMaterial stands in for every file and variable a fuzzed policy
// names: a value that must never appear in a message.
const fuzzMaterial = "FUZZ-MATERIAL-never-in-a-message-7f3a"

// FuzzDecode is model's FuzzDecode with the full scheme: the six policy
// kinds' decoders and validators, then resolving and lowering whatever
// decoded. No input may panic; every violation says where and what; no
// violation quotes a secret value. Seeds are every golden input and every
// example file.
//
//	go test ./policies -run XXX -fuzz FuzzDecode -fuzztime 60s
func FuzzDecode(f *testing.F) {
	var seeds []string
	for _, pattern := range []string{"../translate/testdata/in/*.yaml", "../examples/*/*.yaml", "../examples/*/*/*.yaml", "../cmd/tollgate/testdata/broken/*.yaml"} {
		files, err := filepath.Glob(pattern)
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, files...)
	}
	if len(seeds) == 0 {
		f.Fatal("no seeds")
	}
	for _, s := range seeds {
		data, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	scheme := policies.NewScheme()
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, vs := scheme.Decode("fuzz.yaml", data)
		checkViolations(t, "Decode", vs)
		for _, o := range objs {
			if model.RefOf(o).Name == "" {
				t.Fatalf("Decode returned %T without a name", o)
			}
		}
		cfg, bvs := model.BuildConfigWithInvalid(objs, model.Settings{}, vs.InvalidObjects())
		checkViolations(t, "BuildConfig", bvs)
		if (cfg == nil) == (len(bvs) == 0) {
			t.Fatalf("BuildConfig returned config %v with %d violations", cfg != nil, len(bvs))
		}
		if cfg == nil {
			return
		}
		materials := model.Materials{}
		for _, k := range policies.MaterialKeys(objs) {
			materials[k] = model.Material{Data: []byte(fuzzMaterial)}
		}
		lvs := policies.Lower(cfg, policies.Inputs{Materials: materials})
		checkViolations(t, "Lower", lvs)
		for _, v := range lvs {
			if strings.Contains(v.Error(), fuzzMaterial) {
				t.Fatalf("a violation quotes a material's value: %s", v.Error())
			}
		}
	})
}

func checkViolations(t *testing.T, what string, vs model.Violations) {
	t.Helper()
	for _, v := range vs {
		if v.Msg == "" || v.File == "" {
			t.Fatalf("%s returned a violation without file or message: %#v", what, v)
		}
		if v.Line < 0 {
			t.Fatalf("%s returned a violation with a negative line: %#v", what, v)
		}
	}
}
