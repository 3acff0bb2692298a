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

// re2Sizes are RE2::ProgramSize values measured with libre2 (Debian
// 12's, RE2 2023-01-01): the estimate must never be below them (Envoy
// would refuse a regex tollgate accepted) and should not be far above.
var re2Sizes = []struct {
	re   string
	size int
}{
	{`.*(?:x).*`, 21}, {`(?s).*(?:x).*`, 19}, {`.`, 12}, {`(?s).`, 11}, {`[^/]*`, 12}, {`[^a]`, 12},
	{`.*(?:(?i)ignore (all )?previous instructions).*`, 61}, {`.*(?:BEGIN RSA PRIVATE KEY).*`, 41},
	{`(?i)abcdefghij`, 14}, {`abcdefghij`, 14}, {`(?i)s`, 7}, {`(?i)kk`, 12}, {`(?i)ssn`, 11},
	{`^/v1/[a-z]{1,200}$`, 403}, {`(?:(llama|qwen)-[0-9.]+-.*)`, 28}, {`^/v1/(chat|completions|embeddings)$`, 30},
	{`[一-龥]+`, 14}, {`é`, 6}, {`(?i)é`, 7}, {`(?i)straße`, 16}, {`(?i)ΑΒΓΔ`, 18},
	{`[\x{80}-\x{10FFFF}]`, 10}, {`[\x{800}-\x{10FFFF}]`, 15}, {`[\x{100}-\x{10FFFF}]`, 16}, {`[\x{81}-\x{10FFFF}]`, 18},
	{`[\x{80}-\x{FFFD}]`, 14}, {`[\x{1F600}-\x{1F64F}]+`, 11},
	{`/model/(?:claude-[^/]*)/(?:converse|converse-stream|invoke|invoke-with-response-stream)(?:\?.*)?`, 82},
	{`(?i)(password|secret|token)\s*[:=]`, 39}, {`\d+\s\w+`, 13}, {`x{1,10}`, 23}, {`\bfoo\b`, 9},
}

func TestRegexProgramSizeAgainstRE2(t *testing.T) {
	for _, c := range re2Sizes {
		n, err := RegexProgramSize(c.re)
		require.NoError(t, err, c.re)
		require.GreaterOrEqual(t, n, c.size, "%s: the estimate is below RE2's size", c.re)
		require.LessOrEqual(t, n, 2*c.size+12, "%s: the estimate is far above RE2's size", c.re)
	}
}
