package guardrails_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/policies"
)

func backoff(retryOn string, allowUnsafe bool) string {
	return fmt.Sprintf(`apiVersion: tollgate.dev/v1alpha1
kind: GuardRailsPolicy
metadata: {name: g}
spec:
  targetRefs: [{kind: Gateway, name: egress}]
  backoff:
    retryOn: [%s]
    allowUnsafeRetries: %t
`, retryOn, allowUnsafe)
}

// TestUnsafeRetryConditionsNeedAllowUnsafeRetries guards the promise that
// no retry can duplicate an inference unless the operator says the API is
// idempotent: each condition under which the provider may already have
// run the request is refused without allowUnsafeRetries, on its own field,
// and accepted with it; the safe ones need no opt-in.
func TestUnsafeRetryConditionsNeedAllowUnsafeRetries(t *testing.T) {
	require.NotEmpty(t, model.UnsafeRetryOn)
	for _, cond := range model.UnsafeRetryOn {
		t.Run(cond, func(t *testing.T) {
			_, errs := policies.NewScheme().Decode("p.yaml", []byte(backoff("connect-failure, "+cond, false)))
			require.Len(t, errs, 1, "%q accepted without allowUnsafeRetries", cond)
			require.Equal(t, "spec.backoff.retryOn[1]", errs[0].Field)
			require.Contains(t, errs[0].Msg, fmt.Sprintf("%q may retry a request the provider already received", cond))

			_, errs = policies.NewScheme().Decode("p.yaml", []byte(backoff(cond, true)))
			require.Empty(t, errs, "%q refused with allowUnsafeRetries", cond)
		})
	}
	for _, cond := range model.SafeRetryOn {
		_, errs := policies.NewScheme().Decode("p.yaml", []byte(backoff(cond, false)))
		require.Empty(t, errs, "safe condition %q refused", cond)
	}
	_, errs := policies.NewScheme().Decode("p.yaml", []byte(backoff("sometimes", true)))
	require.Len(t, errs, 1)
	require.Contains(t, errs[0].Msg, `"sometimes" is not a retry condition`)
}
