package model

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestUnknownKeysPastTheCapComputeNoSuggestions(t *testing.T) {
	if testing.Short() {
		t.Skip("decodes a 200,000-key document; skipped with -short")
	}
	var b strings.Builder
	b.WriteString(backendDoc("  hostname: x.internal\n"))
	for i := 0; i < 200_000; i++ {
		fmt.Fprintf(&b, "  k%d: 1\n", i)
	}
	require.Less(t, b.Len(), MaxFileSize)
	before := suggestions.Load()
	objs, errs := decodeString(t, b.String())
	require.Empty(t, objs)
	require.LessOrEqual(t, suggestions.Load()-before, int64(maxViolationsPerDocument))
	require.LessOrEqual(t, len(errs), maxViolationsPerDocument+1)
	require.Contains(t, errs[0].Msg, `unknown field "k0"`)
}

func TestPolicyFileLargerThanTheLimitIsRefused(t *testing.T) {
	data := backendDoc("  hostname: x.internal\n") + "# " + strings.Repeat("x", MaxFileSize) + "\n"
	before := suggestions.Load()
	objs, errs := decodeString(t, data)
	require.Empty(t, objs)
	require.Equal(t, int64(0), suggestions.Load()-before)
	require.Equal(t, []string{fmt.Sprintf("policy.yaml: is %d bytes, more than the 4194304 bytes (4 MiB) a policy file may hold: split it into several files", len(data))}, rendered(errs))
}
