package translate

import (
	"slices"
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
	// DefaultBufferLimit is how much of a request body Envoy keeps for a
	// retry or fail-over by default. Envoy's own default is the listener's
	// 1 MiB connection buffer, which long-context and image prompts
	// exceed; Anthropic documents 32 MB as its largest request.
	DefaultBufferLimit = 32 << 20
	// DefaultMaxRetryAfter is the longest Retry-After honoured; a provider
	// asking for more gets no retry and the client sees its answer.
	DefaultMaxRetryAfter = 60 * time.Second
)

// DefaultRetriableStatusCodes are the provider answers retried by default.
// A 429 is a refusal: the provider did not run the request. A provider's
// 503 is not retried unless a policy lists it: some providers answer 503
// for an overloaded model after they accepted, and maybe ran, the request.
// Envoy's own 503s (no healthy host, a full circuit breaker, a failed
// connection) are told apart: behind a hop they carry RefusalHeader.
var DefaultRetriableStatusCodes = []uint32{429}

// EffectiveRetry merges the route's settings over the gateway's over
// tollgate's defaults, field by field.
func EffectiveRetry(g *model.GatewayConfig, r *model.RouteConfig) model.RetrySettings {
	n := uint32(DefaultNumRetries)
	base, honor, buffer := DefaultBaseInterval, true, uint64(DefaultBufferLimit)
	eff := model.RetrySettings{
		BufferLimit:          &buffer,
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
		if s.BufferLimit != nil {
			eff.BufferLimit = s.BufferLimit
		}
		eff.Policy = s.Policy
	}
	return eff
}

// RetryPolicy is the Envoy retry policy of a route; nil when retries are
// off. With fail-over, a retry goes to another priority (the next backend in
// the aggregate) and to another host, and Retry-After is not honoured: it is
// the refusing provider's wish, and the retry goes elsewhere. Envoy cannot
// wait for one provider and not another: RetryStateImpl::shouldRetryHeaders
// (source/common/router/retry_state_impl.cc) arms the rate-limited back-off
// from the response before the retry picks its host. With hops, Envoy's own
// refusals behind a hop (RefusalHeader) are retried too.
func RetryPolicy(s model.RetrySettings, failover, hops bool) *routev3.RetryPolicy {
	if s.NumRetries == nil || *s.NumRetries == 0 {
		return nil
	}
	retryOn := s.RetryOn
	if hops {
		retryOn = append(slices.Clip(retryOn), "retriable-headers")
	}
	rp := &routev3.RetryPolicy{
		RetryOn:                       strings.Join(retryOn, ","),
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
	if hops {
		rp.RetriableHeaders = []*routev3.HeaderMatcher{refusalMatcher()}
	}
	if s.HonorRetryAfter != nil && *s.HonorRetryAfter && !failover {
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
