package model

import (
	"cmp"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// Config is the resolved, validated policy set that translate consumes. It is
// immutable once built: every later stage may share its pointers.
type Config struct {
	// Gateways, sorted by namespace and name.
	Gateways []*GatewayConfig
	// Backends, sorted by namespace and name.
	Backends []*BackendConfig
	// Objects is every object the Config was built from, sorted by identity.
	Objects []Object
	// Settings are tollgate-wide settings that shape the output.
	Settings Settings
	// Conditions report policy outcomes that are not errors (a policy that
	// lost a conflict, a backend that failed verification).
	Conditions []Condition
	// Invalid are objects that exist but failed their own validation (and
	// so are not in Objects). A reference to one is not reported as
	// dangling: the object's own violations are the root cause, reported
	// once, instead of once more by every object that refers to it.
	Invalid map[Ref]bool
}

// InvalidObjects lists the objects the violations are about, for
// BuildConfigWithInvalid.
func (vs Violations) InvalidObjects() map[Ref]bool {
	out := map[Ref]bool{}
	for _, v := range vs {
		if r, ok := ParseRef(v.Object); ok {
			out[r] = true
		}
	}
	return out
}

// ParseRef reads what Ref.String writes: Kind/name (default namespace) or
// Kind/namespace/name.
func ParseRef(s string) (Ref, bool) {
	parts := strings.Split(s, "/")
	switch len(parts) {
	case 2:
		return Ref{Kind: parts[0], Namespace: DefaultNamespace, Name: parts[1]}, parts[1] != ""
	case 3:
		return Ref{Kind: parts[0], Namespace: parts[1], Name: parts[2]}, parts[2] != ""
	}
	return Ref{}, false
}

// missing reports a reference to an object that is not in the config,
// unless the object exists but is invalid (see Config.Invalid).
func (c *Config) missing(v *Validator, path string, ref Ref) {
	if c.Invalid[ref] {
		return
	}
	v.Errorf(path, "%s does not exist", ref)
}

// Settings are the parts of tollgate's own configuration that translation
// needs. They come from `tollgate serve` flags, not from policy files.
type Settings struct {
	// SystemCABundle is the path, on the Envoy hosts, of the operating
	// system's trust bundle, used to verify providers when no policy names a
	// CA.
	SystemCABundle string
}

// DefaultSystemCABundle is where Debian, Ubuntu and Alpine keep the system
// trust bundle (RHEL: /etc/pki/tls/certs/ca-bundle.crt).
const DefaultSystemCABundle = "/etc/ssl/certs/ca-certificates.crt"

// GatewayConfig is a Gateway with the routes attached to each listener.
type GatewayConfig struct {
	Ref       Ref
	Gateway   *Gateway
	Listeners []*ListenerConfig
	// Retry are the gateway's retry defaults (GuardRailsPolicy backoff).
	Retry *RetrySettings
	// Parent is how a Parent-mode gateway reaches its parent; nil in
	// Endpoint mode (see parent.go).
	Parent *ParentHop
	// Children are the Parent-mode gateways whose parent this is, sorted.
	Children []Ref
	// RegionAllowList is the gateway's RegionAllowListPolicy, or nil.
	RegionAllowList *RegionAllowList
	// RegionRefused are the backends of the gateway's routes that its
	// RegionAllowListPolicy refuses, by backend (see region.go).
	RegionRefused map[Ref]*RegionRefusal
	// RateLimitService is the gateway's rate limit service; nil when no
	// RateLimitPolicy names one (only local limits are then possible).
	RateLimitService *RateLimitService
	// RateLimits are the gateway-scope RateLimitPolicy's settings.
	RateLimits *RateLimitSettings
	// GuardRails are the gateway-scope GuardRailsPolicy's content
	// settings (model lists, output cap, prompt patterns, body size).
	GuardRails *GuardRailSettings
	// DNSPolicy is the gateway-scope DNSPolicy whose defaults the
	// gateway's backends carry (BackendDNS.Gateways), or nil: what a
	// version requirement of those defaults names.
	DNSPolicy *Ref
}

// ListenerConfig is one listener and the routes attached to it, sorted by
// route identity.
type ListenerConfig struct {
	Listener
	Routes []*RouteConfig
	// Identity is how the SPIFFE IDs of the workloads this listener
	// verifies name them (the zero value is DefaultIdentityPattern).
	Identity IdentityPattern
	// TLS is set for an HTTPS listener.
	TLS *ListenerTLSConfig
	// Observability is the gateway's ObservabilityPolicy; nil means none.
	Observability *ObservabilitySettings
}

// RouteConfig is an HTTPRoute with its references resolved.
type RouteConfig struct {
	Ref       Ref
	Route     *HTTPRoute
	Hostnames []string
	Rules     []*RuleConfig
	// Retry overrides the gateway's retry defaults, field by field
	// (GuardRailsPolicy backoff on the route).
	Retry *RetrySettings
	// ExternalAuth admits or refuses clients of the route; nil means no
	// ExternalAuth targets it (see externalauth.go).
	ExternalAuth *ExternalAuthSettings
	// RateLimits are the route-scope RateLimitPolicy's settings.
	RateLimits *RateLimitSettings
	// GuardRails are the route-scope GuardRailsPolicy's content settings,
	// overriding the gateway's field by field (see guardrails.go).
	GuardRails *GuardRailSettings
	// Processors are the PayloadProcessors of the route, in order (see
	// payloadprocessor.go).
	Processors []*ProcessorSettings
}

// RetrySettings say when and how a gateway retries. Unset fields fall back
// to the next scope (route → gateway → tollgate's defaults).
type RetrySettings struct {
	// Policy is the GuardRailsPolicy this comes from.
	Policy Ref
	// NumRetries caps the retries (attempts = retries + 1).
	NumRetries *uint32
	// RetryOn are the conditions, from SafeRetryOn (and UnsafeRetryOn when
	// AllowUnsafe).
	RetryOn []string
	// RetriableStatusCodes are the provider refusals retried, e.g. 429, 503.
	RetriableStatusCodes []uint32
	BaseInterval         *time.Duration
	MaxInterval          *time.Duration
	// PerTryTimeout bounds one attempt. With safe retries an attempt that
	// times out is not retried (it may be generating).
	PerTryTimeout *time.Duration
	// HonorRetryAfter backs off as the provider's Retry-After says.
	HonorRetryAfter *bool
	// BufferLimit is how much of a request body Envoy keeps to send it again
	// on a retry or fail-over.
	BufferLimit *uint64
	// AllowUnsafe permits retry conditions under which the provider may
	// already have received, and be running, the request.
	AllowUnsafe bool
}

// DefaultRetryBaseInterval is the retry back-off's base interval when no
// GuardRailsPolicy sets one (translate.DefaultBaseInterval is the same).
const DefaultRetryBaseInterval = 250 * time.Millisecond

// SafeRetryOn are the retry conditions under which the request cannot have
// reached the provider, or the provider refused it: a retry duplicates no
// inference.
var SafeRetryOn = []string{"connect-failure", "refused-stream", "reset-before-request", "retriable-status-codes"}

// UnsafeRetryOn are retry conditions that may repeat a request the provider
// already received (a timed-out or reset completion is billed twice).
var UnsafeRetryOn = []string{"5xx", "gateway-error", "reset", "retriable-4xx"}

// RuleConfig is one rule of a route with defaults applied.
type RuleConfig struct {
	// Index is the rule's position in spec.rules.
	Index    int
	Name     string
	Matches  []RouteMatch
	Backends []WeightedBackend
	// Timeout is the whole-request timeout; 0 disables it.
	Timeout time.Duration
	// TimeoutSet is true when the rule sets its own timeout, which then
	// wins over the backends' EgressPolicy.
	TimeoutSet bool
	// StreamIdleTimeout, when set, bounds the time without any byte in
	// either direction (from the backends' EgressPolicy).
	StreamIdleTimeout *time.Duration
	// AllowedSources lists, per restricted backend of the rule, the CIDRs a
	// client must come from: a request may reach any backend of the rule, so
	// it must satisfy all of them.
	AllowedSources []SourceRestriction
}

// WeightedBackend is a resolved backendRef.
type WeightedBackend struct {
	Backend  *BackendConfig
	Weight   uint32
	Priority uint32
}

// BackendConfig is a Backend with every default applied.
type BackendConfig struct {
	Ref      Ref
	Backend  *Backend
	Hostname string
	Port     uint32
	// Addresses are the endpoints Envoy connects to, served over EDS: the
	// static ones, or those that passed reverse DNS. Empty means Envoy
	// resolves Hostname.
	Addresses []Address
	TLS       bool
	Protocol  string
	Region    string
	Provider  string

	// TLSPolicy is the BackendTLSPolicy's effect; nil means the defaults
	// (system trust bundle, SAN = hostname).
	TLSPolicy *BackendTLS
	// Credential is what the gateway injects on requests to this backend.
	Credential *Credential
	// Egress are the EgressPolicy's settings.
	Egress EgressSettings
	// DNS are the DNSPolicies' settings: how each gateway's Envoys resolve
	// Hostname, and the reverse-DNS check, if any.
	DNS BackendDNS
	// QoS are the QoSController's settings (outlier detection, circuit
	// breakers, health checks); nil means none targets the backend.
	QoS *QoSSettings
	// RateLimits are the backend-scope RateLimitPolicy's settings: they
	// apply to every rule that may send a request to the backend.
	RateLimits *RateLimitSettings
	// Schema is the API the backend speaks (see schema.go).
	Schema string
	// ModelMap renames the models clients ask for, on requests to this
	// backend (From → To), in spec order.
	ModelMap []ModelMapping
	// ClientSchemas are the schemas of clients whose rules can send a
	// request to this backend although it speaks another one: requests
	// and responses are translated on the way (see schema.go). Sorted.
	ClientSchemas []string
	// Unavailable, when set, says why the backend is not served (e.g. its
	// reverse DNS did not verify): it gets no cluster, routes leave it out
	// of their weighted clusters and answer 503 with this reason when no
	// other backend remains.
	Unavailable string
}

// BackendTLS is the effective TLS client configuration of a backend.
type BackendTLS struct {
	// Policy is the BackendTLSPolicy this comes from.
	Policy Ref
	// SNI sent to the backend.
	SNI string
	// SANs the certificate must carry (any of them).
	SANs []SAN
	// CA is a PEM bundle; nil means the system trust bundle.
	CA []byte
	// CRL is a PEM CRL list, or nil.
	CRL []byte
	// CRLLeafOnly checks only the leaf certificate against the CRLs.
	CRLLeafOnly bool
	// SPKIPins are base64 SHA-256 SPKI hashes; CertHashes hex SHA-256
	// certificate hashes. When both are set, either may match (Envoy's
	// semantics).
	SPKIPins   []string
	CertHashes []string
	// MinVersion is TLSv1_2 or TLSv1_3.
	MinVersion string
	// ALPN overrides the protocols offered.
	ALPN []string
	// ClientCert and ClientKey are PEM, for mTLS to the backend.
	ClientCert []byte
	ClientKey  []byte
}

// SAN is a subject alternative name to match.
type SAN struct {
	Type  string // DNS or URI
	Value string
}

// Credential kinds.
const (
	CredentialAPIKey   = "APIKey"
	CredentialOAuth2   = "OAuth2"
	CredentialAWSSigV4 = "AWSSigV4"
)

// WorkloadCredentialHeaders are the headers workloads use for their own
// provider credentials (including an AWS SDK's session token). A gateway
// strips them from requests to a backend with a CredentialInjector, so that
// a workload's key never reaches a provider — in particular not a different
// provider than it was meant for.
var WorkloadCredentialHeaders = []string{"authorization", "x-api-key", "api-key", "x-goog-api-key", "x-amz-security-token"}

// WorkloadCredentialQueryParams are query parameters that carry credentials
// (Google APIs accept ?key=); they are stripped likewise.
var WorkloadCredentialQueryParams = []string{"key"}

// Credential is what a CredentialInjector makes the gateway add to every
// request sent to one backend.
type Credential struct {
	// Policy is the CredentialInjector this comes from.
	Policy Ref
	Kind   string
	// Header, Prefix and Secret: an API key sent as Header: Prefix+Secret.
	Header string
	Prefix string
	Secret []byte
	// DefaultHeaders are non-secret headers the provider requires (e.g.
	// anthropic-version), added when the workload did not send them.
	DefaultHeaders map[string]string
	// StaticHeaders are non-secret headers the operator set; they replace
	// the workload's.
	StaticHeaders map[string]string
	OAuth2        *OAuth2Credential
	AWS           *AWSCredential
}

// OAuth2Credential is an OAuth2 client-credentials grant.
type OAuth2Credential struct {
	TokenHost    string
	TokenPort    uint32
	TokenURL     string
	ClientID     string
	ClientSecret []byte
	Scopes       []string
}

// AWSCredential signs requests with AWS SigV4.
type AWSCredential struct {
	Region  string
	Service string
	// AccessKeyID and SecretAccessKey are nil when Envoy uses its host's
	// credential chain (environment, instance profile, web identity).
	AccessKeyID     []byte
	SecretAccessKey []byte
	SessionToken    []byte
}

// EgressSettings are a backend's EgressPolicy settings; nil means Envoy's or
// tollgate's default.
type EgressSettings struct {
	Policy             *Ref
	ConnectTimeout     *time.Duration
	RequestTimeout     *time.Duration
	IdleTimeout        *time.Duration
	StreamIdleTimeout  *time.Duration
	MaxConnections     *uint32
	MaxPendingRequests *uint32
	MaxRequests        *uint32
	// AllowedSourceCIDRs restricts which workloads may use the backend.
	AllowedSourceCIDRs []string
}

// Address is an IP and port.
type Address struct {
	IP   string
	Port uint32
}

// Gateway returns the config of the gateway with the key (see GatewayKey),
// or nil.
func (c *Config) Gateway(key string) *GatewayConfig {
	for _, g := range c.Gateways {
		if GatewayKey(g.Ref) == key {
			return g
		}
	}
	return nil
}

// BuildConfig resolves objects into a Config. It reports duplicate names and
// dangling references; each object is assumed to have passed its own
// Validate already (the decoder does that).
func BuildConfig(objs []Object, settings Settings) (*Config, Violations) {
	return BuildConfigWithInvalid(objs, settings, nil)
}

// BuildConfigWithInvalid is BuildConfig for a set whose objects in invalid
// were left out for failing their own validation: references to them are
// not reported again (see Config.Invalid).
func BuildConfigWithInvalid(objs []Object, settings Settings, invalid map[Ref]bool) (*Config, Violations) {
	if settings.SystemCABundle == "" {
		settings.SystemCABundle = DefaultSystemCABundle
	}
	var errs Violations
	objs = append([]Object(nil), objs...)
	// Order by source so that "already defined" points at the first one
	// read. The store hands them over in that order already, which the
	// check finds in one pass.
	bySource := func(x, y Object) int {
		a, b := x.GetSource(), y.GetSource()
		if c := strings.Compare(a.File, b.File); c != 0 {
			return c
		}
		return cmp.Compare(a.Line, b.Line)
	}
	if !slices.IsSortedFunc(objs, bySource) {
		slices.SortStableFunc(objs, bySource)
	}
	byRef := make(map[Ref]Object, len(objs))
	unique := make([]Object, 0, len(objs))
	for _, o := range objs {
		r := RefOf(o)
		if first, dup := byRef[r]; dup {
			NewValidator(o, &errs).Errorf("metadata.name", "%q is already defined at %s", r.Name, where(first))
			continue
		}
		byRef[r] = o
		unique = append(unique, o)
	}
	SortObjects(unique)

	cfg := &Config{Objects: unique, Settings: settings, Invalid: invalid}
	backends := map[Ref]*BackendConfig{}
	gateways := map[Ref]*GatewayConfig{}
	for _, o := range unique {
		switch o := o.(type) {
		case *Backend:
			bc := resolveBackend(o)
			backends[bc.Ref] = bc
			cfg.Backends = append(cfg.Backends, bc)
		case *Gateway:
			gc := &GatewayConfig{Ref: RefOf(o), Gateway: o}
			for _, l := range o.Spec.Listeners {
				gc.Listeners = append(gc.Listeners, &ListenerConfig{Listener: l, TLS: resolveListenerTLS(gc.Ref, l), Identity: listenerIdentity(l)})
			}
			gateways[gc.Ref] = gc
			cfg.Gateways = append(cfg.Gateways, gc)
		}
	}
	for _, o := range unique {
		r, ok := o.(*HTTPRoute)
		if !ok {
			continue
		}
		v := NewValidator(r, &errs)
		rc := cfg.resolveRoute(r, backends, v)
		// Attach even a route with dangling backends, so that its parent
		// references are checked too; any violation stops the whole
		// config from being served anyway.
		cfg.attach(rc, gateways, v)
	}
	cfg.resolveParents(gateways, &errs)
	cfg.resolveSchemas(&errs) // schema.go
	if len(errs) > 0 {
		errs.Sort()
		return nil, errs
	}
	return cfg, nil
}

func where(o Object) string {
	s := o.GetSource()
	if s.File == "" {
		return "an earlier object"
	}
	return fmt.Sprintf("%s:%d", s.File, s.Line)
}

func resolveBackend(b *Backend) *BackendConfig {
	bc := &BackendConfig{
		Ref:      RefOf(b),
		Backend:  b,
		Hostname: b.EffectiveHostname(),
		Port:     b.EffectivePort(),
		TLS:      b.TLSEnabled(),
		Protocol: b.EffectiveProtocol(),
		Region:   b.Spec.Region,
		Provider: b.Spec.Provider,
		Schema:   b.EffectiveSchema(),
		ModelMap: b.Spec.ModelMap,
	}
	for _, a := range b.Spec.Addresses {
		port := a.Port
		if port == 0 {
			port = bc.Port
		}
		bc.Addresses = append(bc.Addresses, Address{IP: a.IP, Port: port})
	}
	return bc
}

func (c *Config) resolveRoute(r *HTTPRoute, backends map[Ref]*BackendConfig, v *Validator) *RouteConfig {
	ns := RefOf(r).Namespace
	rc := &RouteConfig{Ref: RefOf(r), Route: r, Hostnames: r.Spec.Hostnames}
	for i, rule := range r.Spec.Rules {
		rule := rule
		timeout, set := DefaultRequestTimeout, false
		if rule.Timeouts != nil && rule.Timeouts.Request != nil {
			timeout, set = rule.Timeouts.Request.Duration, true
		}
		resolved := &RuleConfig{Index: i, Name: rule.Name, Matches: rule.Matches, Timeout: timeout, TimeoutSet: set}
		seen := map[Ref]int{}
		for j, br := range rule.BackendRefs {
			ref := LocalRef{Name: br.Name, Namespace: br.Namespace}.Resolve(KindBackend, ns)
			if k, dup := seen[ref]; dup {
				v.Errorf(fmt.Sprintf("spec.rules[%d].backendRefs[%d].name", i, j), "%s is already listed at backendRefs[%d]: give it one entry with the combined weight", ref, k)
				continue
			}
			seen[ref] = j
			b, found := backends[ref]
			if !found {
				c.missing(v, fmt.Sprintf("spec.rules[%d].backendRefs[%d].name", i, j), ref)
				continue
			}
			resolved.Backends = append(resolved.Backends, WeightedBackend{Backend: b, Weight: br.EffectiveWeight(), Priority: br.EffectivePriority()})
		}
		rc.Rules = append(rc.Rules, resolved)
	}
	return rc
}

func (c *Config) attach(rc *RouteConfig, gateways map[Ref]*GatewayConfig, v *Validator) {
	ns := rc.Ref.Namespace
	for i, p := range rc.Route.Spec.ParentRefs {
		ref := LocalRef{Name: p.Name, Namespace: p.Namespace}.Resolve(KindGateway, ns)
		g, found := gateways[ref]
		if !found {
			c.missing(v, fmt.Sprintf("spec.parentRefs[%d].name", i), ref)
			continue
		}
		matched := false
		for _, l := range g.Listeners {
			if p.SectionName == "" || p.SectionName == l.Name {
				if len(l.Routes) == 0 || l.Routes[len(l.Routes)-1] != rc {
					l.Routes = append(l.Routes, rc)
				}
				matched = true
			}
		}
		if !matched {
			v.Errorf(fmt.Sprintf("spec.parentRefs[%d].sectionName", i), "%s has no listener named %q", ref, p.SectionName)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// GatewayKey is the value an Envoy of the gateway sets as its bootstrap
// node.cluster: the name for gateways in the default namespace,
// namespace/name otherwise.
func GatewayKey(r Ref) string {
	if r.Namespace == DefaultNamespace || r.Namespace == "" {
		return r.Name
	}
	return r.Namespace + "/" + r.Name
}
