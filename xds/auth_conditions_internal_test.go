package xds

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestIdentityBoundNamesEveryEntryThatGrantsNoGateway: an exact identity
// or a pattern whose gateways are all missing from the configuration gets
// IdentityBound=False; an entry with one existing gateway does not.
func TestIdentityBoundNamesEveryEntryThatGrantsNoGateway(t *testing.T) {
	a, err := NewAuthorizer([]IdentityBinding{
		{Identity: "spiffe://corp.example/gateway/egress/*", Gateways: []string{"egress"}},
		{Identity: "spiffe://corp.example/gateway/egres/*", Gateways: []string{"egres"}},
		{Identity: "spiffe://corp.example/gateway/canary", Gateways: []string{"egress-canary"}},
		{Identity: "spiffe://corp.example/gateway/both", Gateways: []string{"egress", "gone"}},
	})
	require.NoError(t, err)
	conds := a.patternConditions(func(gw string) bool { return gw == "egress" })
	var objects []string
	for _, c := range conds {
		require.Equal(t, ConditionIdentityBound, c.Type)
		require.False(t, c.Status)
		require.Equal(t, ReasonNoSuchGateway, c.Reason)
		objects = append(objects, c.Object)
	}
	require.Equal(t, []string{
		"xds-identities/spiffe://corp.example/gateway/canary",
		"xds-identities/spiffe://corp.example/gateway/egres/*",
	}, objects)
}
