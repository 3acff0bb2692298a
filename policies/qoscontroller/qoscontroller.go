// Package qoscontroller is the QoSController: how a gateway's Envoys judge
// the health of one backend (passive outlier detection, optional active
// health checks) and how much load and how many concurrent retries they
// allow it (circuit breakers, retry budget).
//
// Fail-over between providers is the HTTPRoute's business (backendRefs
// priority, retries); this policy decides when a backend counts as failed,
// which is what moves traffic on. Its defaults suit AI providers: few
// hosts (one, for a DNS backend), long streamed responses, and 429 as a
// refusal of one request rather than a sick host.
package qoscontroller

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/policies/policy"
)

// KindName is the YAML kind.
const KindName = "QoSController"

// Kind registers the policy.
var Kind = policy.Kind{
	Name:   KindName,
	New:    func() model.Object { return &QoSController{} },
	Scopes: []string{model.KindBackend},
	ScopeReason: "health, ejection and load limits belong to one destination's hosts; " +
		"fail-over between destinations is set by the HTTPRoute's backendRefs priority",
	Lower: lower,
}

// Defaults. The outlier thresholds eject a provider that is down or
// overloaded within a few requests, without reacting to one bad answer.
const (
	// DefaultConsecutive5xx is Envoy's own default: a provider's single
	// 500 is often about the request (a model error), five in a row are
	// not.
	DefaultConsecutive5xx = 5
	// DefaultConsecutiveGatewayFailures: 502, 503 and 504 mean overloaded
	// or unavailable; three in a row is enough to move on.
	DefaultConsecutiveGatewayFailures = 3
	// DefaultConsecutiveLocalOriginFailures: connect, TLS, reset and
	// timeout failures Envoy sees itself.
	DefaultConsecutiveLocalOriginFailures = 3
	DefaultInterval                       = 10 * time.Second
	DefaultBaseEjectionTime               = 30 * time.Second
	// DefaultMaxEjectionTime is Envoy's: a repeatedly ejected host stays
	// out at most this long (or BaseEjectionTime, if longer).
	DefaultMaxEjectionTime = 300 * time.Second
	// DefaultMaxEjectionPercent is 100, not Envoy's 10: a DNS backend is a
	// single host, and 10% of one host is none, so it could never be
	// ejected and fail-over to the next priority would never happen.
	DefaultMaxEjectionPercent = 100

	DefaultSuccessRateMinimumHosts  = 5
	DefaultSuccessRateRequestVolume = 100
	DefaultSuccessRateStdevFactor   = 1.9

	DefaultRetryBudgetPercent       = 20.0
	DefaultRetryMinRetryConcurrency = 3

	DefaultHealthCheckInterval           = 30 * time.Second
	DefaultHealthCheckTimeout            = 5 * time.Second
	DefaultHealthCheckUnhealthyThreshold = 3
	DefaultHealthCheckHealthyThreshold   = 2
	// MinHealthCheckInterval keeps a fleet of Envoys from hammering a
	// provider: every Envoy of the gateway probes every host.
	MinHealthCheckInterval = time.Second
)

// DefaultExpectedStatuses are the healthy answers to a health check.
var DefaultExpectedStatuses = []uint32{200}

// QoSController sets how a gateway judges and protects the backends it
// targets.
type QoSController struct {
	model.Base `yaml:",inline"`
	Spec       Spec `yaml:"spec"`
}

// Spec of a QoSController. A policy with targetRefs only turns outlier
// detection on with the defaults.
type Spec struct {
	// TargetRefs are Backends.
	TargetRefs []model.TargetRef `yaml:"targetRefs"`
	// OutlierDetection ejects a host of the backend after consecutive
	// failures of real requests (passive health checking). On by default
	// with the defaults above; set the three counts to 0 to turn it off.
	OutlierDetection *OutlierDetection `yaml:"outlierDetection,omitempty"`
	// CircuitBreakers cap what one Envoy sends to the backend; beyond them
	// requests fail fast with 503 (and retries are not attempted). Unset
	// fields keep the EgressPolicy's connectionLimits or Envoy's defaults;
	// a field set here and in the EgressPolicy is refused.
	CircuitBreakers *CircuitBreakers `yaml:"circuitBreakers,omitempty"`
	// HealthCheck probes every host of the backend (active health
	// checking). Off unless set: many providers do not want probe traffic,
	// and probes carry no credential.
	HealthCheck *HealthCheck `yaml:"healthCheck,omitempty"`
}

// OutlierDetection is passive ejection. A count of 0 turns that detector
// off. 429 is never a failure here: a provider's rate limit refuses one
// request (which the route's retries move on), it does not make the host
// sick, and Envoy counts it as a success.
type OutlierDetection struct {
	// Consecutive5xx ejects after this many 5xx responses in a row (any
	// other response resets the count). Default 5.
	Consecutive5xx *uint32 `yaml:"consecutive5xx,omitempty"`
	// ConsecutiveGatewayFailures ejects after this many 502, 503 or 504
	// responses in a row. Default 3.
	ConsecutiveGatewayFailures *uint32 `yaml:"consecutiveGatewayFailures,omitempty"`
	// ConsecutiveLocalOriginFailures ejects after this many failures that
	// Envoy sees itself, in a row: connect and TLS failures, resets,
	// timeouts. Default 3.
	ConsecutiveLocalOriginFailures *uint32 `yaml:"consecutiveLocalOriginFailures,omitempty"`
	// Interval is how often Envoy returns hosts whose ejection is over
	// (and runs success-rate analysis). Default 10s.
	Interval *model.Duration `yaml:"interval,omitempty"`
	// BaseEjectionTime is how long the first ejection lasts; the n-th
	// lasts n times as long. Default 30s.
	BaseEjectionTime *model.Duration `yaml:"baseEjectionTime,omitempty"`
	// MaxEjectionTime caps an ejection. Default 300s, or baseEjectionTime
	// if that is longer.
	MaxEjectionTime *model.Duration `yaml:"maxEjectionTime,omitempty"`
	// MaxEjectionPercent caps the share of the backend's hosts ejected at
	// once, 1 to 100. Default 100, so a single-host backend can be ejected.
	MaxEjectionPercent *uint32 `yaml:"maxEjectionPercent,omitempty"`
	// SuccessRate also ejects hosts whose success rate is far below their
	// peers'. Off unless set; it needs several hosts (static addresses),
	// so it never acts on a DNS backend.
	SuccessRate *SuccessRate `yaml:"successRate,omitempty"`
}

// SuccessRate is statistical ejection across the backend's hosts.
type SuccessRate struct {
	// MinimumHosts with enough traffic for the analysis to run. Default 5.
	MinimumHosts *uint32 `yaml:"minimumHosts,omitempty"`
	// RequestVolume a host needs in one interval to be judged. Default 100.
	RequestVolume *uint32 `yaml:"requestVolume,omitempty"`
	// StdevFactor: a host below mean - stdevFactor × stdev is ejected.
	// Default 1.9; at most three decimals count.
	StdevFactor *float64 `yaml:"stdevFactor,omitempty"`
}

// CircuitBreakers are per-Envoy limits on the backend's cluster. Unset
// fields keep Envoy's defaults: 1024 connections, pending requests and
// requests, 3 concurrent retries.
type CircuitBreakers struct {
	MaxConnections     *uint32 `yaml:"maxConnections,omitempty"`
	MaxPendingRequests *uint32 `yaml:"maxPendingRequests,omitempty"`
	MaxRequests        *uint32 `yaml:"maxRequests,omitempty"`
	// MaxRetries caps concurrent retries to the backend; 0 allows none.
	MaxRetries *uint32 `yaml:"maxRetries,omitempty"`
	// RetryBudget caps concurrent retries as a share of active requests
	// instead of maxRetries (Envoy ignores maxRetries when a budget is
	// set, so setting both is refused).
	RetryBudget *RetryBudget `yaml:"retryBudget,omitempty"`
}

// RetryBudget limits retries relative to load.
type RetryBudget struct {
	// BudgetPercent of active and pending requests that may be retries,
	// above 0 and at most 100. Default 20.
	BudgetPercent *float64 `yaml:"budgetPercent,omitempty"`
	// MinRetryConcurrency is how many concurrent retries are always
	// allowed, whatever the load. Default 3.
	MinRetryConcurrency *uint32 `yaml:"minRetryConcurrency,omitempty"`
}

// HealthCheck is an active HTTP health check. Probes go to every host of
// the backend over the backend's own TLS, with Host set to the backend's
// hostname, and without any credential (CredentialInjector acts on
// requests, not probes).
type HealthCheck struct {
	// Path requested with GET, e.g. /health. Required.
	Path string `yaml:"path"`
	// Interval between probes, at least 1s. Default 30s.
	Interval *model.Duration `yaml:"interval,omitempty"`
	// Timeout of one probe, at most interval. Default 5s.
	Timeout *model.Duration `yaml:"timeout,omitempty"`
	// UnhealthyThreshold failed probes in a row mark a host unhealthy.
	// Default 3. An answer outside expectedStatuses marks it at once.
	UnhealthyThreshold *uint32 `yaml:"unhealthyThreshold,omitempty"`
	// HealthyThreshold passed probes in a row mark it healthy again.
	// Default 2.
	HealthyThreshold *uint32 `yaml:"healthyThreshold,omitempty"`
	// ExpectedStatuses are the healthy response codes, 100 to 599.
	// Default [200]. A provider's API without a credential answers 401:
	// list 401 to probe reachability of an authenticated path.
	ExpectedStatuses []uint32 `yaml:"expectedStatuses,omitempty"`
}

// Targets implements model.Policy.
func (p *QoSController) Targets() []model.TargetRef { return p.Spec.TargetRefs }

// Validate implements model.Object.
func (p *QoSController) Validate(v *model.Validator) {
	s := &p.Spec
	model.ValidateTargetRefs(v, s.TargetRefs)
	if o := s.OutlierDetection; o != nil {
		validateOutlierDetection(v, o)
	}
	if c := s.CircuitBreakers; c != nil {
		validateCircuitBreakers(v, c)
	}
	if h := s.HealthCheck; h != nil {
		validateHealthCheck(v, h)
	}
}

// positive checks a duration Envoy requires to be above zero, in whole
// milliseconds (Envoy's resolution for these fields).
func positive(v *model.Validator, path string, d *model.Duration) bool {
	switch {
	case d == nil:
		return true
	case d.Duration <= 0:
		v.Errorf(path, "must be positive")
	case d.Duration%time.Millisecond != 0:
		v.Errorf(path, "must be whole milliseconds")
	default:
		return true
	}
	return false
}

func validateOutlierDetection(v *model.Validator, o *OutlierDetection) {
	const p = "spec.outlierDetection"
	positive(v, p+".interval", o.Interval)
	baseOK := positive(v, p+".baseEjectionTime", o.BaseEjectionTime)
	if positive(v, p+".maxEjectionTime", o.MaxEjectionTime) && baseOK && o.MaxEjectionTime != nil {
		base := DefaultBaseEjectionTime
		if o.BaseEjectionTime != nil {
			base = o.BaseEjectionTime.Duration
		}
		if o.MaxEjectionTime.Duration < base {
			v.Errorf(p+".maxEjectionTime", "%s must not be shorter than baseEjectionTime (%s): Envoy refuses such a cluster", o.MaxEjectionTime.Duration, base)
		}
	}
	if m := o.MaxEjectionPercent; m != nil && (*m < 1 || *m > 100) {
		v.Errorf(p+".maxEjectionPercent", "%d must be between 1 and 100 (to turn ejection off, set the consecutive counts to 0)", *m)
	}
	if sr := o.SuccessRate; sr != nil {
		if sr.MinimumHosts != nil && *sr.MinimumHosts == 0 {
			v.Errorf(p+".successRate.minimumHosts", "must be at least 1")
		}
		if sr.RequestVolume != nil && *sr.RequestVolume == 0 {
			v.Errorf(p+".successRate.requestVolume", "must be at least 1")
		}
		if f := sr.StdevFactor; f != nil && (*f < 0.001 || *f > 1000) {
			v.Errorf(p+".successRate.stdevFactor", "%g must be between 0.001 and 1000", *f)
		}
	}
}

func validateCircuitBreakers(v *model.Validator, c *CircuitBreakers) {
	const p = "spec.circuitBreakers"
	for _, f := range []struct {
		name string
		val  *uint32
	}{{"maxConnections", c.MaxConnections}, {"maxPendingRequests", c.MaxPendingRequests}, {"maxRequests", c.MaxRequests}} {
		if f.val != nil && *f.val == 0 {
			v.Errorf(p+"."+f.name, "must be at least 1 (0 would refuse every request)")
		}
	}
	if b := c.RetryBudget; b != nil {
		if c.MaxRetries != nil {
			v.Errorf(p+".maxRetries", "set maxRetries or retryBudget, not both: Envoy ignores maxRetries when a retry budget is set")
		}
		if pct := b.BudgetPercent; pct != nil && (*pct <= 0 || *pct > 100) {
			v.Errorf(p+".retryBudget.budgetPercent", "%g must be above 0 and at most 100", *pct)
		}
	}
}

func validateHealthCheck(v *model.Validator, h *HealthCheck) {
	const p = "spec.healthCheck"
	switch {
	case h.Path == "":
		v.Errorf(p+".path", "is required, such as /health")
	case !strings.HasPrefix(h.Path, "/") || strings.ContainsFunc(h.Path, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		v.Errorf(p+".path", "%q must start with / and contain no spaces or control characters", h.Path)
	}
	interval := DefaultHealthCheckInterval
	intervalOK := positive(v, p+".interval", h.Interval)
	if intervalOK && h.Interval != nil {
		interval = h.Interval.Duration
		if interval < MinHealthCheckInterval {
			v.Errorf(p+".interval", "%s must be at least %s: every Envoy of the gateway probes every host", interval, MinHealthCheckInterval)
			intervalOK = false
		}
	}
	if positive(v, p+".timeout", h.Timeout) && intervalOK && h.Timeout != nil && h.Timeout.Duration > interval {
		v.Errorf(p+".timeout", "%s must not be longer than the interval (%s)", h.Timeout.Duration, interval)
	}
	if t := h.UnhealthyThreshold; t != nil && *t == 0 {
		v.Errorf(p+".unhealthyThreshold", "must be at least 1")
	}
	if t := h.HealthyThreshold; t != nil && *t == 0 {
		v.Errorf(p+".healthyThreshold", "must be at least 1")
	}
	if h.ExpectedStatuses != nil && len(h.ExpectedStatuses) == 0 {
		v.Errorf(p+".expectedStatuses", "must list at least one status (leave it out for the default, 200)")
	}
	seen := map[uint32]int{}
	for i, code := range h.ExpectedStatuses {
		path := fmt.Sprintf("%s.expectedStatuses[%d]", p, i)
		if code < 100 || code > 599 {
			v.Errorf(path, "%d must be an HTTP status between 100 and 599", code)
			continue
		}
		if j, dup := seen[code]; dup {
			v.Errorf(path, "%d is already listed at expectedStatuses[%d]", code, j)
			continue
		}
		seen[code] = i
	}
}

func lower(ctx policy.Context, pol model.Policy, target model.Ref) {
	p := pol.(*QoSController)
	b := ctx.Index.Backends[target]
	q := &model.QoSSettings{Policy: model.RefOf(p)}
	q.OutlierDetection = outlierDetection(p.Spec.OutlierDetection)
	if c := p.Spec.CircuitBreakers; c != nil {
		q.CircuitBreakers = model.QoSCircuitBreakers{
			MaxConnections:     c.MaxConnections,
			MaxPendingRequests: c.MaxPendingRequests,
			MaxRequests:        c.MaxRequests,
			MaxRetries:         c.MaxRetries,
		}
		if rb := c.RetryBudget; rb != nil {
			q.CircuitBreakers.RetryBudget = &model.QoSRetryBudget{
				BudgetPercent:       orDefault(rb.BudgetPercent, DefaultRetryBudgetPercent),
				MinRetryConcurrency: orDefault(rb.MinRetryConcurrency, DefaultRetryMinRetryConcurrency),
			}
		}
		checkEgressOverlap(ctx, b, c)
	}
	if h := p.Spec.HealthCheck; h != nil {
		q.HealthCheck = &model.QoSHealthCheck{
			Path:               h.Path,
			Interval:           durationOr(h.Interval, DefaultHealthCheckInterval),
			Timeout:            durationOr(h.Timeout, DefaultHealthCheckTimeout),
			UnhealthyThreshold: orDefault(h.UnhealthyThreshold, DefaultHealthCheckUnhealthyThreshold),
			HealthyThreshold:   orDefault(h.HealthyThreshold, DefaultHealthCheckHealthyThreshold),
			ExpectedStatuses:   slices.Clone(DefaultExpectedStatuses),
		}
		if h.ExpectedStatuses != nil {
			q.HealthCheck.ExpectedStatuses = slices.Compact(slices.Sorted(slices.Values(h.ExpectedStatuses)))
		}
	}
	b.QoS = q
}

// outlierDetection applies the defaults; nil when every detector is off.
func outlierDetection(o *OutlierDetection) *model.QoSOutlierDetection {
	if o == nil {
		o = &OutlierDetection{}
	}
	base := durationOr(o.BaseEjectionTime, DefaultBaseEjectionTime)
	out := &model.QoSOutlierDetection{
		Consecutive5xx:                 orDefault(o.Consecutive5xx, DefaultConsecutive5xx),
		ConsecutiveGatewayFailures:     orDefault(o.ConsecutiveGatewayFailures, DefaultConsecutiveGatewayFailures),
		ConsecutiveLocalOriginFailures: orDefault(o.ConsecutiveLocalOriginFailures, DefaultConsecutiveLocalOriginFailures),
		Interval:                       durationOr(o.Interval, DefaultInterval),
		BaseEjectionTime:               base,
		// Envoy's own rule: its default maximum, or the base if longer.
		MaxEjectionTime:    durationOr(o.MaxEjectionTime, max(DefaultMaxEjectionTime, base)),
		MaxEjectionPercent: orDefault(o.MaxEjectionPercent, DefaultMaxEjectionPercent),
	}
	if sr := o.SuccessRate; sr != nil {
		out.SuccessRate = &model.QoSSuccessRate{
			MinimumHosts:  orDefault(sr.MinimumHosts, DefaultSuccessRateMinimumHosts),
			RequestVolume: orDefault(sr.RequestVolume, DefaultSuccessRateRequestVolume),
			StdevFactor:   orDefault(sr.StdevFactor, DefaultSuccessRateStdevFactor),
		}
	}
	if out.Consecutive5xx == 0 && out.ConsecutiveGatewayFailures == 0 && out.ConsecutiveLocalOriginFailures == 0 && out.SuccessRate == nil {
		return nil
	}
	return out
}

// checkEgressOverlap refuses a limit that the backend's EgressPolicy sets
// too. Both policies sit at the same scope, so no precedence rule says
// which one an operator meant, and a silent winner would hide the other's
// number; the violation names both places.
func checkEgressOverlap(ctx policy.Context, b *model.BackendConfig, c *CircuitBreakers) {
	e := b.Egress
	if e.Policy == nil {
		return
	}
	for _, f := range []struct {
		name        string
		qos, egress *uint32
	}{
		{"maxConnections", c.MaxConnections, e.MaxConnections},
		{"maxPendingRequests", c.MaxPendingRequests, e.MaxPendingRequests},
		{"maxRequests", c.MaxRequests, e.MaxRequests},
	} {
		if f.qos == nil || f.egress == nil {
			continue
		}
		field := "spec.connectionLimits." + f.name
		ctx.Validator.Errorf("spec.circuitBreakers."+f.name, "is also set by %s (%s, %s): set each limit in one policy only",
			*e.Policy, field, where(ctx.Config, *e.Policy, field))
	}
}

// where renders file:line of a field of the object ref.
func where(cfg *model.Config, ref model.Ref, field string) string {
	for _, o := range cfg.Objects {
		if model.RefOf(o) != ref {
			continue
		}
		src := o.GetSource()
		if src.File == "" {
			return "an API object"
		}
		return fmt.Sprintf("%s:%d", src.File, src.LineOf(field))
	}
	return "an unknown place"
}

func orDefault[T any](v *T, def T) T {
	if v == nil {
		return def
	}
	return *v
}

func durationOr(d *model.Duration, def time.Duration) time.Duration {
	if d == nil {
		return def
	}
	return d.Duration
}
