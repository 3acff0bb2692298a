package translate_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/translate"
)

// The merged back-off check in policies/guardrails judges intervals against
// model's copy of the default; it must be the one translate emits.
func TestDefaultRetryBaseIntervalMatchesTranslate(t *testing.T) {
	require.Equal(t, translate.DefaultBaseInterval, model.DefaultRetryBaseInterval)
}
