package model

import (
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestIdentityPatternMatchesOnlyItsIDs(t *testing.T) {
	p, err := ParseIdentityPattern("")
	require.NoError(t, err)
	require.Equal(t, DefaultIdentityPattern, p.String())

	td, ns, sa, ok := p.Parse("spiffe://corp.example/ns/ml/sa/trainer")
	require.True(t, ok)
	require.Equal(t, []string{"corp.example", "ml", "trainer"}, []string{td, ns, sa})

	for _, id := range []string{
		"spiffe://corp.example/ns/ml/sa/trainer/extra",
		"spiffe://corp.example/ns/ml",
		"spiffe://corp.example/ns//sa/trainer",
		"http://corp.example/ns/ml/sa/trainer",
		"spiffe://corp.example/ns/ml/sa/trainer\n",
	} {
		_, _, _, ok := p.Parse(id)
		require.False(t, ok, id)
	}

	re := regexp.MustCompile(p.Regex("corp.example", "ml", ""))
	require.True(t, re.MatchString("spiffe://corp.example/ns/ml/sa/any-one"))
	require.False(t, re.MatchString("spiffe://corpXexample/ns/ml/sa/any-one"), "the trust domain's dots are literal")
	require.False(t, re.MatchString("spiffe://corp.example/ns/ml2/sa/any-one"))

	custom, err := ParseIdentityPattern("spiffe://{trustDomain}/workload/{namespace}/{serviceAccount}")
	require.NoError(t, err)
	_, ns, sa, ok = custom.Parse("spiffe://corp.example/workload/ml/trainer")
	require.True(t, ok)
	require.Equal(t, []string{"ml", "trainer"}, []string{ns, sa})
}

func TestIdentityPatternRefusesAmbiguity(t *testing.T) {
	for _, s := range []string{
		"spiffe://corp.example/ns/{namespace}/sa/{serviceAccount}",
		"spiffe://{trustDomain}/ns/{namespace}",
		"spiffe://{trustDomain}/ns/{namespace}/sa/{serviceAccount}/{namespace}",
		"spiffe://{trustDomain}/ns-{namespace}/sa/{serviceAccount}",
		"spiffe://{trustDomain}/ns/{namespace}/sa/*",
		"spiffe://{trustDomain}//{namespace}/{serviceAccount}",
	} {
		_, err := ParseIdentityPattern(s)
		require.Error(t, err, s)
	}
}
