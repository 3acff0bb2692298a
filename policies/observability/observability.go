// Package observability is the ObservabilityPolicy: who called which
// provider and model, and how many tokens it cost (story 12, outbound
// attribution). It says where a gateway's Envoys write their access logs
// (a JSON file or stream, an OTLP collector), whether they count requests
// and tokens in their own stats, and where they send traces.
//
// Every attribution fact it records comes from the tollgate dynamic
// metadata (translate/metadata.go) that the listener's own filters write
// from verified sources only: the identity from the client certificate
// the listener verified, the models and token counts from the request and
// the provider's response. Headers a workload sends never name a caller:
// the listener removes x-tollgate-* request headers before anything reads
// them.
package observability

import (
	"fmt"
	"maps"
	"path"
	"regexp"
	"slices"
	"strings"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/policies/policy"
)

// KindName is the YAML kind.
const KindName = "ObservabilityPolicy"

// Kind registers the policy.
var Kind = policy.Kind{
	Name:   KindName,
	New:    func() model.Object { return &ObservabilityPolicy{} },
	Scopes: []string{model.KindGateway},
	ScopeReason: "access logs, stats and traces are configured once per Envoy listener, and every request through a gateway " +
		"must be attributed the same way: a route or backend cannot opt out",
	Lower: lower,
}

// ObservabilityPolicy configures the access logs, metrics and traces of
// the gateways it targets.
type ObservabilityPolicy struct {
	model.Base `yaml:",inline"`
	Spec       Spec `yaml:"spec"`
}

// Spec of an ObservabilityPolicy.
type Spec struct {
	// TargetRefs are Gateways.
	TargetRefs []model.TargetRef `yaml:"targetRefs"`
	// AccessLog replaces the gateway's default stdout log with these
	// sinks; unset keeps the default log.
	AccessLog *AccessLog `yaml:"accessLog,omitempty"`
	// Metrics counts requests and tokens in the Envoys' own stats.
	Metrics *Metrics `yaml:"metrics,omitempty"`
	// Tracing sends OpenTelemetry traces to a collector.
	Tracing *Tracing `yaml:"tracing,omitempty"`
}

// AccessLog lists the sinks; both may be set, with the same fields.
type AccessLog struct {
	// JSON writes one JSON object per request.
	JSON *JSONSink `yaml:"json,omitempty"`
	// OpenTelemetry sends one OTLP log record per request.
	OpenTelemetry *OpenTelemetrySink `yaml:"openTelemetry,omitempty"`
}

// JSONSink is a JSON access log file on each Envoy host.
type JSONSink struct {
	// Path is absolute: /dev/stdout, /dev/stderr or a file such as
	// /var/log/envoy/access.json.
	Path string `yaml:"path"`
}

// OpenTelemetrySink is an OTLP/gRPC logs collector.
type OpenTelemetrySink struct {
	// CollectorRef names the Backend of the collector; it must speak
	// HTTP/2 (gRPC).
	CollectorRef model.LocalRef `yaml:"collectorRef"`
	// LogName is the log's name (default tollgate).
	LogName string `yaml:"logName,omitempty"`
	// ResourceAttributes are added to every record's resource.
	ResourceAttributes map[string]string `yaml:"resourceAttributes,omitempty"`
}

// Metrics turns on the counters.
type Metrics struct {
	// Enabled must be true to count; false keeps the block without effect.
	Enabled bool `yaml:"enabled"`
}

// Tracing is OpenTelemetry tracing.
type Tracing struct {
	// CollectorRef names the Backend of the OTLP/gRPC trace collector; it
	// must speak HTTP/2.
	CollectorRef model.LocalRef `yaml:"collectorRef"`
	// SamplingPercent of requests are traced, 0 to 100 (default 1). A
	// request whose W3C traceparent is sampled is traced regardless.
	SamplingPercent *float64 `yaml:"samplingPercent,omitempty"`
	// ServiceName of the spans (default: the gateway's name).
	ServiceName string `yaml:"serviceName,omitempty"`
}

// Targets implements model.Policy.
func (p *ObservabilityPolicy) Targets() []model.TargetRef { return p.Spec.TargetRefs }

var (
	// nameRE is what a log name, service name or resource attribute key
	// may hold: printable, no spaces or format characters (%).
	nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/:-]*$`)
	// pathRE keeps file paths to characters no shell, log rotation or
	// Envoy format parsing reads differently.
	pathRE = regexp.MustCompile(`^/[A-Za-z0-9._/@+-]*$`)
)

// maxNameLen bounds names and attribute keys, which end up in every record.
const maxNameLen = 255

// Validate implements model.Object.
func (p *ObservabilityPolicy) Validate(v *model.Validator) {
	s := &p.Spec
	model.ValidateTargetRefs(v, s.TargetRefs)
	if s.AccessLog == nil && s.Metrics == nil && s.Tracing == nil {
		v.Errorf("spec", "set accessLog, metrics, tracing or several (an ObservabilityPolicy without any changes nothing)")
	}
	if a := s.AccessLog; a != nil {
		if a.JSON == nil && a.OpenTelemetry == nil {
			v.Errorf("spec.accessLog", "set json, openTelemetry or both (to keep the default stdout log, remove accessLog)")
		}
		if j := a.JSON; j != nil {
			validatePath(v, "spec.accessLog.json.path", j.Path)
		}
		if o := a.OpenTelemetry; o != nil {
			validateRef(v, "spec.accessLog.openTelemetry.collectorRef", o.CollectorRef)
			validateName(v, "spec.accessLog.openTelemetry.logName", o.LogName)
			for _, k := range slices.Sorted(maps.Keys(o.ResourceAttributes)) {
				ap := "spec.accessLog.openTelemetry.resourceAttributes." + k
				switch {
				case !nameRE.MatchString(k) || len(k) > maxNameLen:
					v.Errorf(ap, "%q is not an attribute name: letters, digits, '.', '_', '-', '/' and ':', starting with a letter or digit, at most %d characters", k, maxNameLen)
				case o.ResourceAttributes[k] == "":
					v.Errorf(ap, "is empty: give it a value or remove it")
				default:
					if msg := model.HeaderValueProblem(o.ResourceAttributes[k]); msg != "" {
						v.Errorf(ap, "%s", strings.Replace(msg, "a header value", "an attribute value", 1))
					}
				}
			}
		}
	}
	if m := s.Metrics; m != nil && !m.Enabled {
		v.Errorf("spec.metrics.enabled", "is false: set it to true to count requests and tokens, or remove metrics")
	}
	if t := s.Tracing; t != nil {
		validateRef(v, "spec.tracing.collectorRef", t.CollectorRef)
		if sp := t.SamplingPercent; sp != nil && !(*sp >= 0 && *sp <= 100) {
			v.Errorf("spec.tracing.samplingPercent", "%v is out of range: a percentage from 0 to 100 (default %v)", *sp, model.DefaultSamplingPercent)
		}
		validateName(v, "spec.tracing.serviceName", t.ServiceName)
	}
}

func validateRef(v *model.Validator, p string, r model.LocalRef) {
	if r.Name == "" {
		v.Errorf(p+".name", "is required: the Backend of an OTLP/gRPC collector")
	}
}

func validateName(v *model.Validator, p, s string) {
	if s != "" && (!nameRE.MatchString(s) || len(s) > maxNameLen) {
		v.Errorf(p, "%q must be letters, digits, '.', '_', '-', '/' and ':', starting with a letter or digit, at most %d characters", s, maxNameLen)
	}
}

// validatePath refuses what Envoy would open somewhere else than written,
// or not at all: a relative path is relative to each Envoy's working
// directory, which nobody chose.
func validatePath(v *model.Validator, p, s string) {
	switch {
	case s == "":
		v.Errorf(p, "is required: /dev/stdout, /dev/stderr or an absolute file path such as /var/log/envoy/access.json")
	case !strings.HasPrefix(s, "/"):
		v.Errorf(p, "%q is relative, so each Envoy would resolve it against its own working directory: give an absolute path such as /var/log/envoy/%s", s, path.Base(s))
	case !pathRE.MatchString(s):
		v.Errorf(p, "%q holds characters a file path here may not: letters, digits and . _ / @ + - only", s)
	case path.Clean(s) != s || strings.HasSuffix(s, "/"):
		v.Errorf(p, "%q is not a clean file path (no '..', '.', '//' or trailing '/'): write %s", s, path.Clean(s))
	case s == "/dev/null":
		v.Errorf(p, "is /dev/null, which discards the log: remove accessLog.json instead")
	}
}

func lower(ctx policy.Context, pol model.Policy, target model.Ref) {
	p := pol.(*ObservabilityPolicy)
	ref := model.RefOf(p)
	g := ctx.Index.Gateways[target]
	s := &model.ObservabilitySettings{Policy: ref, Gateway: target}
	ok := true
	off := map[model.Ref][]string{} // unserved collector → what is off
	var offOrder []*model.BackendConfig
	use := func(p string, r model.LocalRef, what string) *model.BackendConfig {
		b, found := collector(ctx, ref, g, p, r, what)
		switch {
		case !found:
			ok = false
			return nil
		case b.Unavailable != "":
			if off[b.Ref] == nil {
				offOrder = append(offOrder, b)
			}
			off[b.Ref] = append(off[b.Ref], what)
			return nil
		}
		return b
	}
	if a := p.Spec.AccessLog; a != nil {
		if j := a.JSON; j != nil {
			s.JSONLog = &model.JSONAccessLog{Path: j.Path}
		}
		if o := a.OpenTelemetry; o != nil {
			if b := use("spec.accessLog.openTelemetry", o.CollectorRef, "OpenTelemetry logs"); b != nil {
				s.OpenTelemetryLog = &model.OpenTelemetryAccessLog{
					Collector:          b,
					LogName:            o.LogName,
					ResourceAttributes: maps.Clone(o.ResourceAttributes),
				}
				if s.OpenTelemetryLog.LogName == "" {
					s.OpenTelemetryLog.LogName = model.DefaultOpenTelemetryLogName
				}
			}
		}
	}
	s.Metrics = p.Spec.Metrics != nil && p.Spec.Metrics.Enabled
	if t := p.Spec.Tracing; t != nil {
		if b := use("spec.tracing", t.CollectorRef, "traces"); b != nil {
			s.Tracing = &model.TracingSettings{Collector: b, SamplingPercent: model.DefaultSamplingPercent, ServiceName: t.ServiceName}
			if t.SamplingPercent != nil {
				s.Tracing.SamplingPercent = *t.SamplingPercent
			}
			if s.Tracing.ServiceName == "" {
				s.Tracing.ServiceName = model.GatewayKey(target)
			}
		}
	}
	if !ok {
		return
	}
	for _, b := range offOrder {
		ctx.Config.Conditions = append(ctx.Config.Conditions, model.Condition{
			Object: ref.String(), Type: "Programmed", Status: false, Reason: "CollectorUnavailable",
			Message: fmt.Sprintf("%s is not served (%s): %s of %s are off until it is; the other settings apply",
				b.Ref, b.Unavailable, strings.Join(off[b.Ref], " and "), g.Ref),
		})
	}
	for _, l := range g.Listeners {
		l.Observability = s
	}
}

// collector resolves the Backend of an OTLP collector, the way
// ExternalAuth resolves a gRPC authorization service: it must exist and
// speak HTTP/2. found is false after a violation. A backend that is not
// served (b.Unavailable: a failed reverse-DNS check) is no violation: the
// feature is off, with a condition, until it is served.
func collector(ctx policy.Context, ref model.Ref, g *model.GatewayConfig, p string, r model.LocalRef, what string) (b *model.BackendConfig, found bool) {
	if g.Parent != nil {
		ctx.Validator.Errorf(p, "%s is a Parent-mode gateway, whose Envoys reach nothing but their parent, so they cannot send %s to a collector: keep accessLog.json and metrics here, and send %s from the parent gateway's ObservabilityPolicy", g.Ref, what, what)
		return nil, false
	}
	bref := r.Resolve(model.KindBackend, ref.Namespace)
	b = ctx.Index.Backends[bref]
	if b == nil {
		if !ctx.Config.Invalid[bref] {
			ctx.Validator.Errorf(p+".collectorRef.name", "%s does not exist", bref)
		}
		return nil, false
	}
	if b.Protocol == model.ProtocolHTTP1 {
		ctx.Validator.Errorf(p+".collectorRef.name", "%s speaks HTTP/1.1, but OTLP/gRPC needs HTTP/2: set its protocol to HTTP/2 (or auto, with TLS)", bref)
		return nil, false
	}
	return b, true
}
