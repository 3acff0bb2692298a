package model

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestHeaderValueProblemRefusesWhatEnvoyRefuses(t *testing.T) {
	for _, tc := range []struct {
		value string
		want  string // substring of the problem; "" for none
	}{
		{"Bearer ", ""},
		{"a\tb", ""},
		{"2023-06-01", ""},
		{"Bearer\r\nX-Injected: 1", "contains a control character"},
		{"a\nb", "contains a control character"},
		{"nul\x00", "contains a control character"},
		{"del\x7f", "contains a control character"},
		{"\xff", "is not valid UTF-8"},
		{strings.Repeat("x", MaxHeaderBytes), ""},
		{strings.Repeat("x", MaxHeaderBytes+1), "is 16385 bytes long: Envoy accepts at most 16384 bytes"},
	} {
		got := HeaderValueProblem(tc.value)
		if tc.want == "" {
			require.Empty(t, got, "%q", tc.value)
		} else {
			require.Contains(t, got, tc.want, "%q", tc.value)
		}
	}
}

func TestHeaderNameProblemRequiresAToken(t *testing.T) {
	require.Empty(t, HeaderNameProblem("OpenAI-Project"))
	require.Contains(t, HeaderNameProblem("bad name"), "is not a valid header name")
	require.Contains(t, HeaderNameProblem("x\r\ny"), "is not a valid header name")
	require.Contains(t, HeaderNameProblem(""), "is not a valid header name")
	require.Contains(t, HeaderNameProblem(strings.Repeat("x", MaxHeaderBytes+1)), "bytes long")
}

func TestQuoteShortCutsLongValues(t *testing.T) {
	got := quoteShort(strings.Repeat("é", 100))
	require.True(t, strings.HasSuffix(got, "…"))
	require.Less(t, len(got), 100)
}
