package model

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// RE2 says 403 for the first; the estimate must never be below RE2's size.
func TestRegexProgramSizeIsNotBelowRE2s(t *testing.T) {
	n, err := RegexProgramSize(`^/v1/[a-z]{1,200}$`)
	require.NoError(t, err)
	require.GreaterOrEqual(t, n, 403)
	for _, small := range []string{`^/v1/.*$`, `^/v1/(chat|completions)/.*$`, `[^/]+`, `(?i)^/v1/models/[a-z0-9-]+$`} {
		n, err := RegexProgramSize(small)
		require.NoError(t, err)
		require.LessOrEqual(t, n, MaxRegexProgramSize, small)
	}
	_, err = RegexProgramSize(`(\w)\1`)
	require.Error(t, err, "backreferences are not RE2")
}
