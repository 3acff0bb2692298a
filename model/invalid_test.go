package model

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseRefReadsWhatRefStringWrites(t *testing.T) {
	for _, r := range []Ref{
		{Kind: KindBackend, Namespace: DefaultNamespace, Name: "openai"},
		{Kind: KindGateway, Namespace: "team-a", Name: "egress"},
	} {
		got, ok := ParseRef(r.String())
		require.True(t, ok)
		require.Equal(t, r, got)
	}
	_, ok := ParseRef("Backend/")
	require.False(t, ok)
	_, ok = ParseRef("")
	require.False(t, ok)
}

// A route that refers to a Backend which failed its own validation says
// nothing about it: the Backend's violation is the root cause.
func TestReferenceToAnInvalidObjectIsNotReportedAsMissing(t *testing.T) {
	objs, errs := decodeString(t, backendDoc("  hostname: x.internal\n  port: 0\n")+"---\n"+
		gatewayDoc("  listeners: [{name: http, port: 80, protocol: HTTP}]\n")+"---\n"+
		routeDoc("  parentRefs: [{name: gw}]\n  rules: [{backendRefs: [{name: be}, {name: gone}]}]\n"))
	require.Len(t, errs, 1)
	_, vs := BuildConfigWithInvalid(objs, Settings{}, errs.InvalidObjects())
	require.Equal(t, []string{`policy.yaml:22: HTTPRoute/rt: spec.rules[0].backendRefs[1].name: Backend/gone does not exist`}, rendered(vs))
	_, vs = BuildConfig(objs, Settings{})
	require.Len(t, vs, 2, "without the invalid set both references dangle")
}
