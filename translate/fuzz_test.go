package translate_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/model/modeltest"
	"github.com/tollgate-dev/tollgate/policies"
	"github.com/tollgate-dev/tollgate/translate"
)

// FuzzTranslate checks the promise that matters most: any policy set the
// model accepts translates without error into configuration that passes
// Envoy's constraints. A failure here is a validation gap in the model (an
// input that should have been rejected with a message) or a translation bug.
//
//	go test ./translate -run XXX -fuzz FuzzTranslate -fuzztime 60s
func FuzzTranslate(f *testing.F) {
	inputs, _ := filepath.Glob("testdata/in/*.yaml")
	for _, in := range inputs {
		data, err := os.ReadFile(in)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add(modeltest.GenerateYAML(3))
	scheme := policies.NewScheme()
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, errs := scheme.Decode("fuzz.yaml", data)
		if len(errs) > 0 {
			return
		}
		cfg, errs := model.BuildConfig(objs, model.Settings{})
		if len(errs) > 0 {
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
