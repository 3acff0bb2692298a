package translate

import (
	"strings"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	previoushostsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/host/previous_hosts/v3"
	previousprioritiesv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/priority/previous_priorities/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/tollgate-dev/tollgate/model"
)

// Retries must never duplicate an inference. By default tollgate retries
// only when the request cannot have reached the provider (connection
// failure, refused stream, reset before the request was sent) or when the
// provider refused it (429, 503), honouring Retry-After. It never retries a
// timed-out attempt, a reset after the request was sent, or any response
// whose bytes reached the client: those may be completions the provider ran
// and billed. The unsafe conditions need GuardRailsPolicy's
// allowUnsafeRetries.

// Retry defaults.
const (
	DefaultNumRetries   = 2
	DefaultBaseInterval = 250 * time.Millisecond
	// DefaultMaxRetryAfter is the longest Retry-After honoured; a provider
	// asking for more gets no retry and the client sees its answer.
	DefaultMaxRetryAfter = 60 * time.Second
)

// DefaultRetriableStatusCodes are the provider refusals retried.
var DefaultRetriableStatusCodes = []uint32{429, 503}

// EffectiveRetry merges the route's settings over the gateway's over
// tollgate's defaults, field by field.
func EffectiveRetry(g *model.GatewayConfig, r *model.RouteConfig) model.RetrySettings {
	n := uint32(DefaultNumRetries)
	base, honor := DefaultBaseInterval, true
	eff := model.RetrySettings{
		NumRetries:           &n,
		RetryOn:              model.SafeRetryOn,
		RetriableStatusCodes: DefaultRetriableStatusCodes,
		BaseInterval:         &base,
		HonorRetryAfter:      &honor,
	}
	for _, s := range []*model.RetrySettings{g.Retry, r.Retry} {
		if s == nil {
			continue
		}
		if s.NumRetries != nil {
			eff.NumRetries = s.NumRetries
		}
		if len(s.RetryOn) > 0 {
			// An unsafe condition is allowed only by the policy that asks
			// for it.
			eff.RetryOn, eff.AllowUnsafe = s.RetryOn, s.AllowUnsafe
		}
		if len(s.RetriableStatusCodes) > 0 {
			eff.RetriableStatusCodes = s.RetriableStatusCodes
		}
		if s.BaseInterval != nil {
			eff.BaseInterval = s.BaseInterval
		}
		if s.MaxInterval != nil {
			eff.MaxInterval = s.MaxInterval
		}
		if s.PerTryTimeout != nil {
			eff.PerTryTimeout = s.PerTryTimeout
		}
		if s.HonorRetryAfter != nil {
			eff.HonorRetryAfter = s.HonorRetryAfter
		}
		eff.Policy = s.Policy
	}
	return eff
}

// RetryPolicy is the Envoy retry policy of a route; nil when retries are
// off. With fail-over, a retry goes to another priority (the next backend in
// the aggregate) and to another host.
func RetryPolicy(s model.RetrySettings, failover bool) *routev3.RetryPolicy {
	if s.NumRetries == nil || *s.NumRetries == 0 {
		return nil
	}
	rp := &routev3.RetryPolicy{
		RetryOn:                       strings.Join(s.RetryOn, ","),
		NumRetries:                    wrapperspb.UInt32(*s.NumRetries),
		RetriableStatusCodes:          s.RetriableStatusCodes,
		HostSelectionRetryMaxAttempts: 3,
		RetryHostPredicate: []*routev3.RetryPolicy_RetryHostPredicate{{
			Name:       "envoy.retry_host_predicates.previous_hosts",
			ConfigType: &routev3.RetryPolicy_RetryHostPredicate_TypedConfig{TypedConfig: mustAny(&previoushostsv3.PreviousHostsPredicate{})},
		}},
	}
	if s.BaseInterval != nil {
		bo := &routev3.RetryPolicy_RetryBackOff{BaseInterval: durationpb.New(*s.BaseInterval)}
		if s.MaxInterval != nil {
			bo.MaxInterval = durationpb.New(*s.MaxInterval)
		}
		rp.RetryBackOff = bo
	}
	if s.HonorRetryAfter != nil && *s.HonorRetryAfter {
		rp.RateLimitedRetryBackOff = &routev3.RetryPolicy_RateLimitedRetryBackOff{
			ResetHeaders: []*routev3.RetryPolicy_ResetHeader{{Name: "retry-after", Format: routev3.RetryPolicy_SECONDS}},
			MaxInterval:  durationpb.New(DefaultMaxRetryAfter),
		}
	}
	if s.PerTryTimeout != nil {
		rp.PerTryTimeout = durationpb.New(*s.PerTryTimeout)
	}
	if failover {
		rp.RetryPriority = &routev3.RetryPolicy_RetryPriority{
			Name: "envoy.retry_priorities.previous_priorities",
			ConfigType: &routev3.RetryPolicy_RetryPriority_TypedConfig{TypedConfig: mustAny(&previousprioritiesv3.PreviousPrioritiesConfig{
				UpdateFrequency: 1,
			})},
		}
	}
	return rp
}
