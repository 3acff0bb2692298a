package translate_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/translate"
)

// TestNoRetryCanDuplicateInference fails if any retry policy generated for
// a golden case or an example can retry a request that may have reached a
// provider — 5xx, gateway-error, reset, retriable-4xx — unless the
// GuardRailsPolicy that set it opted in with allowUnsafeRetries.
func TestNoRetryCanDuplicateInference(t *testing.T) {
	checked, optedIn, refusalMarks := 0, 0, 0
	for name, cfg := range credentialSources(t) {
		out, err := translate.Translate(cfg)
		require.NoError(t, err, name)
		for _, g := range cfg.Gateways {
			gr := out.Gateway(model.GatewayKey(g.Ref))
			routes := map[string]*model.RouteConfig{}
			for _, l := range g.Listeners {
				for _, r := range l.Routes {
					routes["httproute/"+r.Ref.Namespace+"/"+r.Ref.Name+"/"] = r
				}
			}
			for _, rc := range gr.Routes {
				for _, vh := range rc.GetVirtualHosts() {
					for _, r := range vh.GetRoutes() {
						rp := r.GetRoute().GetRetryPolicy()
						if rp == nil {
							continue
						}
						checked++
						var unsafe []string
						for _, cond := range strings.Split(rp.GetRetryOn(), ",") {
							if cond == "retriable-headers" {
								// Safe only as the mark of a hop's own refusals.
								require.Len(t, rp.GetRetriableHeaders(), 1, "%s: route %s", name, r.GetName())
								require.Equal(t, translate.RefusalHeader, rp.GetRetriableHeaders()[0].GetName(), "%s: route %s", name, r.GetName())
								refusalMarks++
								continue
							}
							if !slices.Contains(model.SafeRetryOn, cond) {
								unsafe = append(unsafe, cond)
							}
						}
						if len(unsafe) == 0 {
							continue
						}
						var owner *model.RouteConfig
						for prefix, mr := range routes {
							if strings.HasPrefix(r.GetName(), prefix) {
								owner = mr
							}
						}
						require.NotNil(t, owner, "%s: route %s", name, r.GetName())
						eff := translate.EffectiveRetry(g, owner)
						require.True(t, eff.AllowUnsafe, "%s: route %s retries on %v, which may duplicate an inference, without allowUnsafeRetries", name, r.GetName(), unsafe)
						optedIn++
						for _, cond := range unsafe {
							require.Contains(t, model.UnsafeRetryOn, cond, "%s: unknown retry condition %q", name, cond)
						}
					}
				}
			}
		}
	}
	require.NotZero(t, checked, "no retry policy was checked")
	// Each branch of the check must have had a case, or it holds
	// vacuously: an unsafe retry that was opted into, and a hop's mark.
	require.NotZero(t, optedIn, "no route retries on an unsafe condition with allowUnsafeRetries: the opt-in is never checked")
	require.NotZero(t, refusalMarks, "no route retries on a hop's refusal mark")
}

// TestDefaultRetryPolicyIsSafe pins the default: only conditions under
// which nothing reached the provider, or it refused (429); a provider's 503
// may come after it ran the request and is not retried by default.
func TestDefaultRetryPolicyIsSafe(t *testing.T) {
	eff := translate.EffectiveRetry(&model.GatewayConfig{}, &model.RouteConfig{})
	single := translate.RetryPolicy(eff, false, false)
	require.Equal(t, "connect-failure,refused-stream,reset-before-request,retriable-status-codes", single.GetRetryOn())
	require.Equal(t, []uint32{429}, single.GetRetriableStatusCodes())
	require.Nil(t, single.GetPerTryTimeout(), "a per-try timeout would end an attempt that may be generating")
	require.Equal(t, "retry-after", single.GetRateLimitedRetryBackOff().GetResetHeaders()[0].GetName())
	require.Nil(t, single.GetRetryPriority())
	require.Empty(t, single.GetRetriableHeaders())

	// With fail-over the retry goes to another backend: it does not wait
	// for the refusing provider's Retry-After.
	failover := translate.RetryPolicy(eff, true, false)
	require.Equal(t, single.GetRetryOn(), failover.GetRetryOn())
	require.Nil(t, failover.GetRateLimitedRetryBackOff(), "a fail-over would wait for the refusing provider's Retry-After")
	require.Equal(t, "envoy.retry_priorities.previous_priorities", failover.GetRetryPriority().GetName())

	// Through hops, Envoy's own refusals behind the hop are retried too,
	// recognised by the mark the hop puts on them, and nothing else.
	hops := translate.RetryPolicy(eff, true, true)
	require.Equal(t, "connect-failure,refused-stream,reset-before-request,retriable-status-codes,retriable-headers", hops.GetRetryOn())
	require.Len(t, hops.GetRetriableHeaders(), 1)
	require.Equal(t, translate.RefusalHeader, hops.GetRetriableHeaders()[0].GetName())
	require.Equal(t, model.SafeRetryOn, eff.RetryOn, "RetryPolicy must not change the settings it reads")
}
