package store_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tollgate-dev/tollgate/policies"
	"github.com/tollgate-dev/tollgate/store"
)

func regionSet(regions, openaiRegion string) string {
	return fmt.Sprintf(`apiVersion: tollgate.dev/v1alpha1
kind: Gateway
metadata: {name: eu-egress}
spec:
  listeners: [{name: http, port: 10080, protocol: HTTP}]
---
apiVersion: tollgate.dev/v1alpha1
kind: RegionAllowListPolicy
metadata: {name: eu}
spec:
  targetRefs: [{kind: Gateway, name: eu-egress}]
  regions: [%s]
---
apiVersion: tollgate.dev/v1alpha1
kind: Backend
metadata: {name: openai}
spec: {provider: openai, region: %s}
---
apiVersion: tollgate.dev/v1alpha1
kind: HTTPRoute
metadata: {name: chat}
spec:
  parentRefs: [{name: eu-egress}]
  rules:
  - backendRefs: [{name: openai}]
`, regions, openaiRegion)
}

// TestRegionRefusalsAreAuditedOncePerChange checks that the store logs one
// audit line when a gateway's set of refused backends changes, and none
// when a change or reload leaves it as it was.
func TestRegionRefusalsAreAuditedOncePerChange(t *testing.T) {
	var buf bytes.Buffer
	st, err := store.New(store.Options{Log: slog.New(slog.NewTextHandler(&buf, nil))})
	require.NoError(t, err)
	apply := func(doc string) []string {
		t.Helper()
		buf.Reset()
		objs, errs := policies.NewScheme().Decode("p.yaml", []byte(doc))
		require.Empty(t, errs)
		_, err := st.Replace("test", objs, nil)
		require.NoError(t, err)
		var lines []string
		for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
			if strings.Contains(l, "region allow list") {
				lines = append(lines, l)
			}
		}
		return lines
	}

	lines := apply(regionSet("eu-west-1", "us-east-1"))
	require.Len(t, lines, 1)
	require.Contains(t, lines[0], "audit=true gateway=Gateway/eu-egress policy=RegionAllowListPolicy/eu")
	require.Contains(t, lines[0], `refused="Backend/openai (us-east-1)" added="Backend/openai (us-east-1)" removed=""`)

	require.Empty(t, apply(regionSet("eu-west-1", "us-east-1")), "an unchanged set is logged again")
	require.Empty(t, st.Reload())
	require.NotContains(t, buf.String(), "region allow list", "a reload that changes nothing is logged")

	lines = apply(regionSet("eu-west-1", "us-west-2"))
	require.Len(t, lines, 1, "a backend that moved region is a change")
	require.Contains(t, lines[0], `added="Backend/openai (us-west-2)" removed="Backend/openai (us-east-1)"`)

	lines = apply(regionSet("eu-west-1, us-west-2", "us-west-2"))
	require.Len(t, lines, 1)
	require.Contains(t, lines[0], `refused="" added="" removed="Backend/openai (us-west-2)"`)
}
