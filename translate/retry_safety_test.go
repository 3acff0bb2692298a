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
	checked := 0
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
						for _, cond := range unsafe {
							require.Contains(t, model.UnsafeRetryOn, cond, "%s: unknown retry condition %q", name, cond)
						}
					}
				}
			}
		}
	}
	require.NotZero(t, checked, "no retry policy was checked")
}

// TestDefaultRetryPolicyIsSafe pins the default: only conditions under
// which nothing reached the provider, or it refused.
func TestDefaultRetryPolicyIsSafe(t *testing.T) {
	rp := translate.RetryPolicy(translate.EffectiveRetry(&model.GatewayConfig{}, &model.RouteConfig{}), true)
	require.Equal(t, "connect-failure,refused-stream,reset-before-request,retriable-status-codes", rp.GetRetryOn())
	require.Equal(t, []uint32{429, 503}, rp.GetRetriableStatusCodes())
	require.Nil(t, rp.GetPerTryTimeout(), "a per-try timeout would end an attempt that may be generating")
	require.Equal(t, "retry-after", rp.GetRateLimitedRetryBackOff().GetResetHeaders()[0].GetName())
	require.Equal(t, "envoy.retry_priorities.previous_priorities", rp.GetRetryPriority().GetName())
}
