package model

import (
	"fmt"
	"net"
	"regexp"
	"strings"
	"time"
)

// Kind names of the core objects.
const (
	KindGateway   = "Gateway"
	KindBackend   = "Backend"
	KindHTTPRoute = "HTTPRoute"
)

// Duration is a time.Duration written as a Go duration string ("30s", "5m").
type Duration struct{ time.Duration }

// Ptr returns the duration as a *time.Duration, nil when d is nil (unset):
// effective settings keep "unset" distinct from zero.
func (d *Duration) Ptr() *time.Duration {
	if d == nil {
		return nil
	}
	x := d.Duration
	return &x
}

// DecodeScalar implements the decoder's scalar hook.
func (d *Duration) DecodeScalar(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a duration: write it like \"30s\" or \"5m\"", s)
	}
	if v < 0 {
		return fmt.Errorf("%q must not be negative", s)
	}
	d.Duration = v
	return nil
}

// Patterns of names, exported for the JSON Schema (policies/jsonschema):
// ObjectNamePattern is metadata.name's, DNSLabelPattern that of namespaces,
// listener and rule names and regions.
const (
	DNSLabelPattern   = `^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	ObjectNamePattern = `^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
)

var (
	dns1123Label = regexp.MustCompile(DNSLabelPattern)
	objectName   = regexp.MustCompile(ObjectNamePattern)
	hostnameRE   = regexp.MustCompile(`^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	headerNameRE = regexp.MustCompile(`^[A-Za-z0-9!#$%&'*+\-.^_|~` + "`" + `]+$`)
)

func validateMeta(v *Validator, m *ObjectMeta) {
	if len(m.Name) > 253 || !objectName.MatchString(m.Name) {
		v.Errorf("metadata.name", "%q must be lowercase letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters", m.Name)
	}
	if m.Namespace != "" && (len(m.Namespace) > 63 || !dns1123Label.MatchString(m.Namespace)) {
		v.Errorf("metadata.namespace", "%q must be lowercase letters, digits and '-', at most 63 characters", m.Namespace)
	}
}

// ValidHostname reports whether h is a DNS name (no wildcard, no port).
func ValidHostname(h string) bool {
	return len(h) <= 253 && hostnameRE.MatchString(h) && !strings.HasPrefix(h, "*.")
}

// ValidHeaderName reports whether h is a valid HTTP header name (no
// pseudo-headers).
func ValidHeaderName(h string) bool { return headerNameRE.MatchString(h) }

// ---- Gateway ----------------------------------------------------------------

// Gateway modes.
const (
	ModeEndpoint = "Endpoint"
	ModeParent   = "Parent"
)

// Gateway is a fleet of Envoys that share one configuration. An Envoy joins
// the gateway whose name its bootstrap sets as node.cluster.
type Gateway struct {
	Base `yaml:",inline"`
	Spec GatewaySpec `yaml:"spec"`
}

// GatewaySpec describes a Gateway.
type GatewaySpec struct {
	// Mode is Endpoint (connect to backends directly, the default) or Parent
	// (forward every route to the parent gateway named by parentRef, which
	// applies its own routing, credentials, TLS and fail-over).
	Mode string `yaml:"mode,omitempty"`
	// ParentRef names the parent Gateway in Parent mode, and how to reach
	// it.
	ParentRef *GatewayParentRef `yaml:"parentRef,omitempty"`
	// Addresses are where the gateway's Envoys can be reached by child
	// gateways (Parent mode): DNS names or IPs, on the port of the listener
	// a child names. Only a gateway that is a parent needs them.
	Addresses []GatewayAddress `yaml:"addresses,omitempty"`
	// Listeners are the ports the gateway's Envoys accept workload traffic on.
	Listeners []Listener `yaml:"listeners"`
}

// GatewayParentRef names a Parent-mode gateway's parent: another Gateway
// the same tollgate serves.
type GatewayParentRef struct {
	// Name of the parent Gateway.
	Name string `yaml:"name"`
	// Namespace of the parent Gateway; defaults to this gateway's.
	Namespace string `yaml:"namespace,omitempty"`
	// SectionName is the parent's listener this gateway sends to; it may
	// be left out when the parent has a single listener.
	SectionName string `yaml:"sectionName,omitempty"`
	// Port overrides the listener's port, for a load balancer or TLS
	// terminator in front of the parent that listens on another one.
	Port uint32 `yaml:"port,omitempty"`
	// TLS secures the hop to the parent; unset means plain HTTP.
	TLS *ParentTLS `yaml:"tls,omitempty"`
}

// ParentTLS is TLS (or mutual TLS) from a child gateway's Envoys to its
// parent. Files are paths on the child's Envoy hosts, read by Envoy: the
// client key is the child Envoy's own credential, as its xDS client
// certificate is, and never passes through tollgate.
type ParentTLS struct {
	// Hostname is the SNI and the default SAN; defaults to the parent's
	// first hostname address.
	Hostname string `yaml:"hostname,omitempty"`
	// CAFile is the PEM bundle the parent's certificate must chain to;
	// defaults to the system trust bundle (serve --system-ca-bundle).
	CAFile string `yaml:"caFile,omitempty"`
	// SubjectAltNames the parent's certificate must carry (any one);
	// default: DNS = hostname.
	SubjectAltNames []ParentSAN `yaml:"subjectAltNames,omitempty"`
	// CertificateFile and PrivateKeyFile are the client certificate (leaf
	// first, then intermediates) and key for mutual TLS.
	CertificateFile string `yaml:"certificateFile,omitempty"`
	PrivateKeyFile  string `yaml:"privateKeyFile,omitempty"`
	// SPIFFE secures the hop with SPIFFE identities from the child Envoys'
	// SPIRE agents instead of files: the child presents its own SVID and
	// accepts only the parent's SPIFFE ID, verified against its trust
	// domain's bundle. Excludes the file and subjectAltNames fields.
	SPIFFE *ParentSPIFFE `yaml:"spiffe,omitempty"`
}

// ParentSPIFFE is mutual TLS to the parent with SVIDs.
type ParentSPIFFE struct {
	// ID is the parent's SPIFFE ID, e.g.
	// spiffe://corp.example/gateway/inference; its trust domain names the
	// bundle asked of the agent.
	ID string `yaml:"id"`
	// SVIDName is the agent's SDS name of the SVID the child presents;
	// default "default".
	SVIDName string `yaml:"svidName,omitempty"`
}

// ParentSAN is a subject alternative name the parent's certificate may
// carry.
type ParentSAN struct {
	// Type is DNS or URI (SPIFFE IDs are URIs).
	Type  string `yaml:"type"`
	Value string `yaml:"value"`
}

// GatewayAddress is one address where a gateway's Envoys can be reached:
// exactly one of Hostname and IP.
type GatewayAddress struct {
	// Hostname is a DNS name the child's Envoys resolve (all its addresses
	// are used).
	Hostname string `yaml:"hostname,omitempty"`
	// IP is an IPv4 or IPv6 address.
	IP string `yaml:"ip,omitempty"`
}

// Listener is one port of a Gateway.
type Listener struct {
	// Name is unique within the gateway; routes select it with sectionName.
	Name string `yaml:"name"`
	// Address to bind; defaults to 0.0.0.0.
	Address string `yaml:"address,omitempty"`
	// Port to bind, 1–65535.
	Port uint32 `yaml:"port"`
	// Protocol is HTTP (plain HTTP from workloads) or HTTPS (TLS, with
	// optional client certificate verification: see TLS).
	Protocol string `yaml:"protocol"`
	// TLS is the server certificate and client validation of an HTTPS
	// listener (see listenertls.go).
	TLS *ListenerTLS `yaml:"tls,omitempty"`
}

// Validate implements Object.
func (g *Gateway) Validate(v *Validator) {
	switch g.Spec.Mode {
	case "", ModeEndpoint:
		if g.Spec.ParentRef != nil {
			v.Errorf("spec.parentRef", "is only allowed with mode: Parent")
		}
	case ModeParent:
		if g.Spec.ParentRef == nil {
			v.Errorf("spec.parentRef", "is required with mode: Parent: name the gateway this one forwards to")
		}
	default:
		v.Errorf("spec.mode", "%q is not a mode: use Endpoint or Parent", g.Spec.Mode)
	}
	if p := g.Spec.ParentRef; p != nil {
		validateGatewayParentRef(v, p)
	}
	for i, a := range g.Spec.Addresses {
		p := fmt.Sprintf("spec.addresses[%d]", i)
		switch {
		case a.Hostname != "" && a.IP != "":
			v.Errorf(p, "set hostname or ip, not both")
		case a.Hostname != "":
			if !ValidHostname(a.Hostname) {
				v.Errorf(p+".hostname", "%q must be a DNS name without scheme, port or wildcard", a.Hostname)
			}
		case a.IP != "":
			if net.ParseIP(a.IP) == nil {
				v.Errorf(p+".ip", "%q must be an IPv4 or IPv6 address", a.IP)
			}
		default:
			v.Errorf(p, "set hostname or ip")
		}
	}
	if len(g.Spec.Listeners) == 0 {
		v.Errorf("spec.listeners", "at least one listener is required")
	}
	names := map[string]int{}
	ports := map[string]int{}
	for i, l := range g.Spec.Listeners {
		p := fmt.Sprintf("spec.listeners[%d]", i)
		if !dns1123Label.MatchString(l.Name) || len(l.Name) > 63 {
			v.Errorf(p+".name", "%q must be lowercase letters, digits and '-', at most 63 characters", l.Name)
		} else if j, dup := names[l.Name]; dup {
			v.Errorf(p+".name", "%q is already used by spec.listeners[%d]", l.Name, j)
		} else {
			names[l.Name] = i
		}
		validatePort(v, p+".port", l.Port, true)
		if l.Address != "" && net.ParseIP(l.Address) == nil {
			v.Errorf(p+".address", "%q must be an IP address", l.Address)
		}
		addr := net.JoinHostPort(l.BindAddress(), fmt.Sprint(l.Port))
		if j, dup := ports[addr]; dup {
			v.Errorf(p+".port", "%s is already used by spec.listeners[%d]", addr, j)
		} else {
			ports[addr] = i
		}
		validateListenerProtocol(v, p, l)
	}
}

// validateGatewayParentRef checks what a parentRef says on its own; the
// parent itself is checked when the config is resolved (see parent.go).
func validateGatewayParentRef(v *Validator, p *GatewayParentRef) {
	if p.Name == "" {
		v.Errorf("spec.parentRef.name", "is required")
	}
	if p.SectionName != "" && !dns1123Label.MatchString(p.SectionName) {
		v.Errorf("spec.parentRef.sectionName", "%q must be a listener name: lowercase letters, digits and '-'", p.SectionName)
	}
	validatePort(v, "spec.parentRef.port", p.Port, false)
	t := p.TLS
	if t == nil {
		return
	}
	if t.Hostname != "" && !ValidHostname(t.Hostname) {
		v.Errorf("spec.parentRef.tls.hostname", "%q must be a DNS name", t.Hostname)
	}
	for _, f := range []struct{ path, value string }{
		{"spec.parentRef.tls.caFile", t.CAFile},
		{"spec.parentRef.tls.certificateFile", t.CertificateFile},
		{"spec.parentRef.tls.privateKeyFile", t.PrivateKeyFile},
	} {
		if f.value != "" && !strings.HasPrefix(f.value, "/") {
			v.Errorf(f.path, "%q must be an absolute path: Envoy reads it on the child's hosts", f.value)
		}
	}
	if (t.CertificateFile == "") != (t.PrivateKeyFile == "") {
		v.Errorf("spec.parentRef.tls", "certificateFile and privateKeyFile go together (mutual TLS needs both)")
	}
	if sp := t.SPIFFE; sp != nil {
		if t.CAFile != "" || t.CertificateFile != "" || t.PrivateKeyFile != "" || len(t.SubjectAltNames) > 0 {
			v.Errorf("spec.parentRef.tls.spiffe", "excludes caFile, certificateFile, privateKeyFile and subjectAltNames: the agent provides the bundle and the SVID, and the parent's SPIFFE ID is the SAN")
		}
		if _, ok := SPIFFETrustDomain(sp.ID); !ok || strings.HasSuffix(sp.ID, "/") || strings.ContainsAny(sp.ID, "?#*") {
			v.Errorf("spec.parentRef.tls.spiffe.id", "%q must be a SPIFFE ID: spiffe://<trust domain>/<path>, e.g. spiffe://corp.example/gateway/inference", sp.ID)
		}
	}
	for i, san := range t.SubjectAltNames {
		sp := fmt.Sprintf("spec.parentRef.tls.subjectAltNames[%d]", i)
		switch san.Type {
		case "DNS", "URI":
		default:
			v.Errorf(sp+".type", "%q is not supported: use DNS or URI", san.Type)
		}
		switch {
		case san.Value == "":
			v.Errorf(sp+".value", "is required")
		case san.Type == "URI" && !strings.Contains(san.Value, ":"):
			v.Errorf(sp+".value", "%q is not a URI (a SPIFFE ID looks like spiffe://trust.domain/path)", san.Value)
		}
	}
}

// validatePort checks a port field. An optional port left out takes its
// default; written out as 0 it is refused like any other out-of-range
// value, since Envoy would read 0 as "unset" or as "any port" depending on
// where it lands.
func validatePort(v *Validator, path string, port uint32, required bool) {
	switch {
	case port == 0 && !v.Has(path):
		if required {
			v.Errorf(path, "is required: a port between 1 and 65535")
		}
	case port == 0 || port > 65535:
		v.Errorf(path, "%d must be between 1 and 65535", port)
	}
}

// BindAddress returns the address the listener binds to.
func (l Listener) BindAddress() string {
	if l.Address == "" {
		return "0.0.0.0"
	}
	return l.Address
}

// ---- Backend ----------------------------------------------------------------

// Backend protocols.
const (
	ProtocolAuto  = "auto"
	ProtocolHTTP1 = "HTTP/1.1"
	ProtocolHTTP2 = "HTTP/2"
)

// Backend is a destination outside the gateway: an AI provider, another
// cluster's gateway or an in-house model server.
type Backend struct {
	Base `yaml:",inline"`
	Spec BackendSpec `yaml:"spec"`
}

// BackendSpec describes a Backend.
type BackendSpec struct {
	// Provider is an optional preset (see Providers) that fills in defaults
	// such as the hostname.
	Provider string `yaml:"provider,omitempty"`
	// Hostname is the backend's DNS name. Envoy resolves it unless
	// addresses are given; with TLS it is also the SNI, the name verified in
	// the certificate and the Host header sent upstream.
	Hostname string `yaml:"hostname,omitempty"`
	// Port defaults to 443.
	Port uint32 `yaml:"port,omitempty"`
	// Addresses pins the backend to static IP addresses instead of DNS.
	Addresses []BackendAddress `yaml:"addresses,omitempty"`
	// Protocol upstream: auto (ALPN, h2 preferred; needs TLS), HTTP/1.1 or
	// HTTP/2. Defaults to auto with TLS and HTTP/1.1 without.
	Protocol string `yaml:"protocol,omitempty"`
	// TLS turns TLS origination on or off; it defaults to on for port 443
	// and off otherwise.
	TLS *bool `yaml:"tls,omitempty"`
	// Region the backend serves from, e.g. us-east-1 or eu-west.
	Region string `yaml:"region,omitempty"`
	// Schema is the API the backend speaks: openai (chat completions),
	// anthropic (messages), bedrock-converse or gemini. Provider presets
	// set it; see schema.go.
	Schema string `yaml:"schema,omitempty"`
	// ModelMap renames models for this backend: a request for From that
	// goes to this backend (also as a fail-over) asks for To instead.
	ModelMap []ModelMapping `yaml:"modelMap,omitempty"`
}

// ModelMapping is one model rename of a backend.
type ModelMapping struct {
	// From is the model name clients send, e.g. gpt-4o.
	From string `yaml:"from"`
	// To is this backend's name for it, e.g. an Azure deployment name or a
	// Bedrock model id.
	To string `yaml:"to"`
}

// BackendAddress is one static address of a Backend.
type BackendAddress struct {
	// IP is an IPv4 or IPv6 address.
	IP string `yaml:"ip"`
	// Port defaults to the Backend's port.
	Port uint32 `yaml:"port,omitempty"`
}

// Provider is a preset for a well-known AI provider.
type Provider struct {
	// Hostname is the default hostname; empty means the user must set one.
	Hostname string
	// RegionalHostname derives the hostname from spec.region when set.
	RegionalHostname func(region string) string
	// HostnameHint tells the user what to write when a hostname is needed.
	HostnameHint string
}

// Providers are the presets spec.provider accepts.
var Providers = map[string]Provider{
	"openai":            {Hostname: "api.openai.com"},
	"anthropic":         {Hostname: "api.anthropic.com"},
	"gemini":            {Hostname: "generativelanguage.googleapis.com"},
	"azure-openai":      {HostnameHint: "<resource>.openai.azure.com"},
	"openai-compatible": {HostnameHint: "the server's hostname"},
	"bedrock": {
		HostnameHint:     "bedrock-runtime.<region>.amazonaws.com, or set spec.region",
		RegionalHostname: func(r string) string { return "bedrock-runtime." + r + ".amazonaws.com" },
	},
	"vertex": {
		HostnameHint:     "<region>-aiplatform.googleapis.com, or set spec.region",
		RegionalHostname: func(r string) string { return r + "-aiplatform.googleapis.com" },
	},
}

// ProviderNames lists the presets in order, for messages.
func ProviderNames() []string {
	return sortedKeys(Providers)
}

// Validate implements Object.
func (b *Backend) Validate(v *Validator) {
	s := &b.Spec
	var preset Provider
	if s.Provider != "" {
		p, ok := Providers[s.Provider]
		if !ok {
			v.Errorf("spec.provider", "%q is not a known provider: use one of %s", s.Provider, strings.Join(ProviderNames(), ", "))
		}
		preset = p
	}
	host := b.EffectiveHostname()
	hostnameOK := true
	switch {
	case s.Hostname != "" && !ValidHostname(s.Hostname):
		hostnameOK = false
		v.Errorf("spec.hostname", "%q must be a DNS name without scheme, port or wildcard", s.Hostname)
	case host == "" && len(s.Addresses) == 0:
		hostnameOK = false
		if preset.HostnameHint != "" {
			v.Errorf("spec.hostname", "is required for provider %q: %s", s.Provider, preset.HostnameHint)
		} else {
			v.Errorf("spec.hostname", "is required unless spec.addresses is set")
		}
	}
	validatePort(v, "spec.port", s.Port, false)
	for i, a := range s.Addresses {
		p := fmt.Sprintf("spec.addresses[%d]", i)
		if net.ParseIP(a.IP) == nil {
			v.Errorf(p+".ip", "%q must be an IPv4 or IPv6 address", a.IP)
		}
		validatePort(v, p+".port", a.Port, false)
	}
	switch s.Protocol {
	case "", ProtocolHTTP1, ProtocolHTTP2:
	case ProtocolAuto:
		if !b.TLSEnabled() {
			v.Errorf("spec.protocol", "auto needs TLS, since the protocol is negotiated with ALPN: use HTTP/1.1 or HTTP/2 for a plaintext backend")
		}
	default:
		v.Errorf("spec.protocol", "%q is not supported: use auto, HTTP/1.1 or HTTP/2", s.Protocol)
	}
	if b.TLSEnabled() && host == "" && hostnameOK {
		v.Errorf("spec.hostname", "is required with TLS: it is the SNI and the name verified in the certificate (or set tls: false)")
	}
	if s.Region != "" && !dns1123Label.MatchString(s.Region) {
		v.Errorf("spec.region", "%q must be lowercase letters, digits and '-'", s.Region)
	}
	b.validateSchema(v)   // schema.go
	b.validateModelMap(v) // modelmatch.go
}

// EffectivePort is the port, defaulted to 443.
func (b *Backend) EffectivePort() uint32 {
	if b.Spec.Port == 0 {
		return 443
	}
	return b.Spec.Port
}

// EffectiveHostname is the hostname, defaulted from the provider preset.
func (b *Backend) EffectiveHostname() string {
	if b.Spec.Hostname != "" {
		return b.Spec.Hostname
	}
	p := Providers[b.Spec.Provider]
	if p.Hostname != "" {
		return p.Hostname
	}
	if p.RegionalHostname != nil && b.Spec.Region != "" {
		return p.RegionalHostname(b.Spec.Region)
	}
	return ""
}

// TLSEnabled says whether Envoy originates TLS to the backend.
func (b *Backend) TLSEnabled() bool {
	if b.Spec.TLS != nil {
		return *b.Spec.TLS
	}
	return b.EffectivePort() == 443
}

// EffectiveProtocol is the protocol, defaulted from TLS.
func (b *Backend) EffectiveProtocol() string {
	if b.Spec.Protocol != "" {
		return b.Spec.Protocol
	}
	if b.TLSEnabled() {
		return ProtocolAuto
	}
	return ProtocolHTTP1
}

// ---- HTTPRoute --------------------------------------------------------------

// Match types.
const (
	MatchExact             = "Exact"
	MatchPathPrefix        = "PathPrefix"
	MatchRegularExpression = "RegularExpression"
)

// HTTPRoute sends matching HTTP requests arriving at gateways to backends.
type HTTPRoute struct {
	Base `yaml:",inline"`
	Spec HTTPRouteSpec `yaml:"spec"`
}

// HTTPRouteSpec describes an HTTPRoute.
type HTTPRouteSpec struct {
	// ParentRefs are the gateways (and optionally their listeners) the route
	// attaches to.
	ParentRefs []ParentRef `yaml:"parentRefs"`
	// Hostnames are the Host header values the route answers; empty means
	// any host. A leading "*." matches any subdomain.
	Hostnames []string `yaml:"hostnames,omitempty"`
	// Rules are tried in Gateway API precedence order.
	Rules []RouteRule `yaml:"rules"`
}

// ParentRef attaches a route to a Gateway.
type ParentRef struct {
	// Name of the Gateway.
	Name string `yaml:"name"`
	// Namespace of the Gateway; defaults to the route's.
	Namespace string `yaml:"namespace,omitempty"`
	// SectionName restricts the route to one listener of the Gateway.
	SectionName string `yaml:"sectionName,omitempty"`
}

// RouteRule is a set of matches and the backends that serve them.
type RouteRule struct {
	// Name is optional and shows up in Envoy's route names and stats.
	Name string `yaml:"name,omitempty"`
	// Matches are ORed; no match means every request.
	Matches []RouteMatch `yaml:"matches,omitempty"`
	// BackendRefs share the traffic by weight.
	BackendRefs []BackendRef `yaml:"backendRefs"`
	// Timeouts of the rule.
	Timeouts *RouteTimeouts `yaml:"timeouts,omitempty"`
}

// RouteMatch is ANDed: every condition must hold.
type RouteMatch struct {
	Path        *PathMatch   `yaml:"path,omitempty"`
	Headers     []ValueMatch `yaml:"headers,omitempty"`
	QueryParams []ValueMatch `yaml:"queryParams,omitempty"`
	// Method is an HTTP method such as POST.
	Method string `yaml:"method,omitempty"`
	// Model matches the model the request asks for: the body's model field
	// (OpenAI, Anthropic, Gemini) or, for Bedrock, the model id in the path.
	// A request without one matches only rules without a model condition.
	Model *ModelMatch `yaml:"model,omitempty"`
}

// ModelMatch matches a request's model.
type ModelMatch struct {
	// Type is Exact (default), Prefix or RegularExpression (RE2, whole
	// name).
	Type  string `yaml:"type,omitempty"`
	Value string `yaml:"value"`
}

// MatchPrefix is a plain string prefix (model names have no segments).
const MatchPrefix = "Prefix"

// PathMatch matches the request path.
type PathMatch struct {
	// Type is PathPrefix (default; whole path segments), Exact or
	// RegularExpression (RE2, whole path).
	Type  string `yaml:"type,omitempty"`
	Value string `yaml:"value"`
}

// ValueMatch matches a header or query parameter.
type ValueMatch struct {
	// Type is Exact (default) or RegularExpression.
	Type  string `yaml:"type,omitempty"`
	Name  string `yaml:"name"`
	Value string `yaml:"value"`
}

// BackendRef points a rule at a Backend.
type BackendRef struct {
	Name      string `yaml:"name"`
	Namespace string `yaml:"namespace,omitempty"`
	// Weight defaults to 1; 0 sends no traffic to this backend unless the
	// others of its priority fail.
	Weight *uint32 `yaml:"weight,omitempty"`
	// Priority defaults to 0. Backends of the lowest priority number share
	// the traffic by weight; a higher number is used only when every
	// backend of the lower ones is unhealthy, ejected or refusing.
	Priority *uint32 `yaml:"priority,omitempty"`
}

// EffectivePriority is the priority, defaulted to 0.
func (b BackendRef) EffectivePriority() uint32 {
	if b.Priority == nil {
		return 0
	}
	return *b.Priority
}

// EffectiveWeight is the weight, defaulted to 1.
func (b BackendRef) EffectiveWeight() uint32 {
	if b.Weight == nil {
		return 1
	}
	return *b.Weight
}

// RouteTimeouts bounds a request.
type RouteTimeouts struct {
	// Request is the whole request, until the response is complete (also
	// streamed ones). 0s disables it. Defaults to DefaultRequestTimeout.
	Request *Duration `yaml:"request,omitempty"`
}

// DefaultRequestTimeout is long because completions stream for minutes;
// Envoy's own default of 15s would cut most of them off.
const DefaultRequestTimeout = 300 * time.Second

var methods = map[string]bool{"GET": true, "HEAD": true, "POST": true, "PUT": true, "DELETE": true, "CONNECT": true, "OPTIONS": true, "TRACE": true, "PATCH": true}

// Validate implements Object.
func (r *HTTPRoute) Validate(v *Validator) {
	s := &r.Spec
	if len(s.ParentRefs) == 0 {
		v.Errorf("spec.parentRefs", "at least one parent Gateway is required")
	}
	for i, p := range s.ParentRefs {
		if p.Name == "" {
			v.Errorf(fmt.Sprintf("spec.parentRefs[%d].name", i), "is required")
		}
	}
	for i, h := range s.Hostnames {
		if len(h) > 253 || !hostnameRE.MatchString(h) {
			v.Errorf(fmt.Sprintf("spec.hostnames[%d]", i), "%q must be a DNS name, optionally starting with \"*.\", without port", h)
		}
	}
	if len(s.Rules) == 0 {
		v.Errorf("spec.rules", "at least one rule is required")
	}
	for i, rule := range s.Rules {
		rp := fmt.Sprintf("spec.rules[%d]", i)
		if rule.Name != "" && !dns1123Label.MatchString(rule.Name) {
			v.Errorf(rp+".name", "%q must be lowercase letters, digits and '-'", rule.Name)
		}
		for j, m := range rule.Matches {
			validateMatch(v, fmt.Sprintf("%s.matches[%d]", rp, j), m)
		}
		if len(rule.BackendRefs) == 0 {
			v.Errorf(rp+".backendRefs", "at least one backend is required")
		}
		var total uint64
		for j, b := range rule.BackendRefs {
			if b.Name == "" {
				v.Errorf(fmt.Sprintf("%s.backendRefs[%d].name", rp, j), "is required")
			}
			total += uint64(b.EffectiveWeight())
		}
		if len(rule.BackendRefs) > 0 && total == 0 {
			v.Errorf(rp+".backendRefs", "weights add up to 0: at least one backend needs a positive weight")
		}
		if total > math32 {
			v.Errorf(rp+".backendRefs", "weights add up to %d, more than 4294967295", total)
		}
	}
}

const math32 = 1<<32 - 1

func validateMatch(v *Validator, p string, m RouteMatch) {
	if m.Path != nil {
		switch m.Path.Type {
		case "", MatchPathPrefix, MatchExact:
			if !strings.HasPrefix(m.Path.Value, "/") {
				v.Errorf(p+".path.value", "%q must start with '/'", m.Path.Value)
			} else if strings.ContainsAny(m.Path.Value, "?#") {
				v.Errorf(p+".path.value", "%q must not contain '?' or '#'", m.Path.Value)
			} else if strings.Contains(m.Path.Value, "//") {
				v.Errorf(p+".path.value", "%q must not contain '//'", m.Path.Value)
			}
		case MatchRegularExpression:
			if msg := regexProblem(m.Path.Value); msg != "" {
				v.Errorf(p+".path.value", "%s", msg)
			}
		default:
			v.Errorf(p+".path.type", "%q is not supported: use PathPrefix, Exact or RegularExpression", m.Path.Type)
		}
	}
	for k, h := range m.Headers {
		validateValueMatch(v, fmt.Sprintf("%s.headers[%d]", p, k), h, true)
	}
	for k, q := range m.QueryParams {
		validateValueMatch(v, fmt.Sprintf("%s.queryParams[%d]", p, k), q, false)
	}
	if m.Model != nil {
		validateModelMatch(v, p+".model", *m.Model)
	}
	if m.Method != "" && !methods[m.Method] {
		v.Errorf(p+".method", "%q is not an HTTP method: use one of CONNECT, DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT, TRACE", m.Method)
	}
}

func validateValueMatch(v *Validator, p string, m ValueMatch, header bool) {
	switch {
	case m.Name == "":
		v.Errorf(p+".name", "is required")
	case header && strings.HasPrefix(m.Name, ":"):
		v.Errorf(p+".name", "%q: pseudo-headers cannot be matched here (use path, method or the route's hostnames)", m.Name)
	case header && !headerNameRE.MatchString(m.Name):
		v.Errorf(p+".name", "%q is not a valid header name", m.Name)
	}
	switch m.Type {
	case "", MatchExact:
	case MatchRegularExpression:
		if msg := regexProblem(m.Value); msg != "" {
			v.Errorf(p+".value", "%s", msg)
		}
	default:
		v.Errorf(p+".type", "%q is not supported: use Exact or RegularExpression", m.Type)
	}
}
