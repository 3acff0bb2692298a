package translatetest

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/model/modeltest"
	"github.com/tollgate-dev/tollgate/policies"
)

// DecodeFiles decodes generated policy files with every kind's decoder;
// each file must decode without a violation.
func DecodeFiles(t testing.TB, files []modeltest.File) []model.Object {
	t.Helper()
	scheme := policies.NewScheme()
	var objs []model.Object
	for _, f := range files {
		o, errs := scheme.Decode(f.Name, f.Data)
		require.Empty(t, errs, f.Name)
		objs = append(objs, o...)
	}
	return objs
}

// BuildFiles decodes and resolves generated policy files, which must
// resolve without a violation.
func BuildFiles(t testing.TB, files []modeltest.File) *model.Config {
	t.Helper()
	cfg, errs := model.BuildConfig(DecodeFiles(t, files), model.Settings{})
	require.Empty(t, errs)
	return cfg
}
