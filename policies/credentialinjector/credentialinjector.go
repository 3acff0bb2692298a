// Package credentialinjector is the CredentialInjector: the provider
// credential a gateway adds to every request it sends to one backend. It
// may only target a Backend: a credential scoped to a gateway or a route
// would be sent to whichever provider a request ends up at, after a
// fail-over too, and leak there.
package credentialinjector

import (
	"maps"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/policies/policy"
)

// KindName is the YAML kind.
const KindName = "CredentialInjector"

// Kind registers the policy.
var Kind = policy.Kind{
	Name:   KindName,
	New:    func() model.Object { return &CredentialInjector{} },
	Scopes: []string{model.KindBackend},
	ScopeReason: "a credential is valid for one destination; attached to a Gateway or HTTPRoute it would " +
		"reach every provider the traffic can go to, fail-overs included, and leak",
	Lower: lower,
}

// CredentialInjector injects a provider credential on requests to a backend.
type CredentialInjector struct {
	model.Base `yaml:",inline"`
	Spec       Spec `yaml:"spec"`
}

// Spec of a CredentialInjector: exactly one of APIKey, OAuth2, AWSSigV4.
type Spec struct {
	// TargetRefs are Backends.
	TargetRefs []model.TargetRef `yaml:"targetRefs"`
	// APIKey sends a static key in a header.
	APIKey *APIKey `yaml:"apiKey,omitempty"`
	// OAuth2 fetches tokens with the client-credentials grant and sends
	// them as bearer tokens.
	OAuth2 *OAuth2 `yaml:"oauth2,omitempty"`
	// AWSSigV4 signs requests (Bedrock).
	AWSSigV4 *AWSSigV4 `yaml:"awsSigV4,omitempty"`
}

// APIKey is a static key.
type APIKey struct {
	// Preset sets header, prefix and required extra headers for a
	// provider: openai, openai-compatible, anthropic, azure-openai,
	// gemini, vertex (express-mode API keys) or bedrock (API keys).
	// Defaults to the backend's provider when it has one of these.
	Preset string `yaml:"preset,omitempty"`
	// Header carries the key; overrides the preset.
	Header string `yaml:"header,omitempty"`
	// Prefix precedes the key in the header, e.g. "Bearer ".
	Prefix *string `yaml:"prefix,omitempty"`
	// Secret is where the key is read from.
	Secret model.SecretSource `yaml:"secret"`
	// Headers are non-secret headers the provider needs (e.g.
	// anthropic-version); they add to the preset's.
	Headers map[string]string `yaml:"headers,omitempty"`
}

// OAuth2 is a client-credentials grant.
type OAuth2 struct {
	// TokenURL is the https token endpoint.
	TokenURL     string             `yaml:"tokenURL"`
	ClientID     string             `yaml:"clientID"`
	ClientSecret model.SecretSource `yaml:"clientSecret"`
	Scopes       []string           `yaml:"scopes,omitempty"`
}

// AWSSigV4 signs requests with AWS Signature Version 4.
type AWSSigV4 struct {
	// Region to sign for; defaults to the backend's region.
	Region string `yaml:"region,omitempty"`
	// Service to sign for; defaults to bedrock.
	Service string `yaml:"service,omitempty"`
	// Credentials are static keys. Leave unset to use the credential
	// chain of the Envoy host (environment, instance profile, web
	// identity): no secret then leaves tollgate at all, which is what AWS
	// recommends.
	Credentials *AWSKeys `yaml:"credentials,omitempty"`
}

// AWSKeys are static AWS credentials.
type AWSKeys struct {
	AccessKeyID     model.SecretSource  `yaml:"accessKeyID"`
	SecretAccessKey model.SecretSource  `yaml:"secretAccessKey"`
	SessionToken    *model.SecretSource `yaml:"sessionToken,omitempty"`
}

// Preset is how a provider expects its API key.
type Preset struct {
	Header  string
	Prefix  string
	Headers map[string]string
}

// Presets are the API key conventions of the providers tollgate knows.
var Presets = map[string]Preset{
	"openai":            {Header: "Authorization", Prefix: "Bearer "},
	"openai-compatible": {Header: "Authorization", Prefix: "Bearer "},
	"anthropic":         {Header: "x-api-key", Headers: map[string]string{"anthropic-version": "2023-06-01"}},
	"azure-openai":      {Header: "api-key"},
	"gemini":            {Header: "x-goog-api-key"},
	// Vertex AI express mode takes Google API keys.
	"vertex": {Header: "x-goog-api-key"},
	// Bedrock API keys are bearer tokens.
	"bedrock": {Header: "Authorization", Prefix: "Bearer "},
}

// Targets implements model.Policy.
func (c *CredentialInjector) Targets() []model.TargetRef { return c.Spec.TargetRefs }

// Materials implements model.MaterialUser.
func (c *CredentialInjector) Materials() []model.SecretSource {
	s := &c.Spec
	switch {
	case s.APIKey != nil:
		return []model.SecretSource{s.APIKey.Secret}
	case s.OAuth2 != nil:
		return []model.SecretSource{s.OAuth2.ClientSecret}
	case s.AWSSigV4 != nil && s.AWSSigV4.Credentials != nil:
		k := s.AWSSigV4.Credentials
		out := []model.SecretSource{k.AccessKeyID, k.SecretAccessKey}
		if k.SessionToken != nil {
			out = append(out, *k.SessionToken)
		}
		return out
	}
	return nil
}

// headerNames lists spec.apiKey.headers in the order they are written
// (then by name), so that everything derived from the map is
// deterministic.
func (c *CredentialInjector) headerNames() []string {
	if c.Spec.APIKey == nil {
		return nil
	}
	names := make([]string, 0, len(c.Spec.APIKey.Headers))
	for name := range c.Spec.APIKey.Headers {
		names = append(names, name)
	}
	line := func(name string) int { return c.Src.LineOf("spec.apiKey.headers." + name) }
	slices.SortFunc(names, func(a, b string) int {
		if la, lb := line(a), line(b); la != lb {
			return la - lb
		}
		return strings.Compare(a, b)
	})
	return names
}

// Validate implements model.Object.
func (c *CredentialInjector) Validate(v *model.Validator) {
	s := &c.Spec
	model.ValidateTargetRefs(v, s.TargetRefs)
	n := 0
	for _, set := range []bool{s.APIKey != nil, s.OAuth2 != nil, s.AWSSigV4 != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		v.Errorf("spec", "set exactly one of apiKey, oauth2 or awsSigV4")
	}
	if k := s.APIKey; k != nil {
		if k.Preset != "" {
			if _, ok := Presets[k.Preset]; !ok {
				v.Errorf("spec.apiKey.preset", "%q is not a preset: use one of %s", k.Preset, strings.Join(slices.Sorted(maps.Keys(Presets)), ", "))
			}
		}
		if k.Header != "" && !model.ValidHeaderName(k.Header) {
			v.Errorf("spec.apiKey.header", "%q is not a valid header name", k.Header)
		}
		if k.Prefix != nil {
			// The prefix is sent verbatim before the key: a line break in it
			// would end the header and start another one.
			if msg := model.HeaderValueProblem(*k.Prefix); msg != "" {
				v.Errorf("spec.apiKey.prefix", "%s", msg)
			}
		}
		k.Secret.Validate(v, "spec.apiKey.secret", true)
		// Header names are case-insensitive: two spellings of one name would
		// both be lowered to it, and which value wins would change from run
		// to run. Report the later one, pointing at the first.
		seen := map[string]string{}
		for _, name := range c.headerNames() {
			path := "spec.apiKey.headers." + name
			if msg := model.HeaderNameProblem(name); msg != "" {
				v.Errorf(path, "%s", msg)
				continue
			}
			if first, dup := seen[strings.ToLower(name)]; dup {
				v.Errorf(path, "%q is already set as %q (line %d): header names are case-insensitive, keep one", name, first, c.Src.LineOf("spec.apiKey.headers."+first))
				continue
			}
			seen[strings.ToLower(name)] = name
			if slices.Contains(model.WorkloadCredentialHeaders, strings.ToLower(name)) || strings.EqualFold(name, k.Header) {
				v.Errorf(path, "%q carries credentials: put the key in spec.apiKey.secret, never in plain policy text", name)
				continue
			}
			if msg := model.HeaderValueProblem(k.Headers[name]); msg != "" {
				v.Errorf(path, "%s", msg)
			}
		}
	}
	if o := s.OAuth2; o != nil {
		u, err := url.Parse(o.TokenURL)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			v.Errorf("spec.oauth2.tokenURL", "%q must be an https:// URL", o.TokenURL)
		} else if p := u.Port(); p != "" {
			if n, err := strconv.ParseUint(p, 10, 32); err != nil || n < 1 || n > 65535 {
				v.Errorf("spec.oauth2.tokenURL", "%q: port %s must be between 1 and 65535", o.TokenURL, p)
			}
		}
		if o.ClientID == "" {
			v.Errorf("spec.oauth2.clientID", "is required")
		}
		o.ClientSecret.Validate(v, "spec.oauth2.clientSecret", true)
	}
	if a := s.AWSSigV4; a != nil && a.Credentials != nil {
		a.Credentials.AccessKeyID.Validate(v, "spec.awsSigV4.credentials.accessKeyID", true)
		a.Credentials.SecretAccessKey.Validate(v, "spec.awsSigV4.credentials.secretAccessKey", true)
		if a.Credentials.SessionToken != nil {
			a.Credentials.SessionToken.Validate(v, "spec.awsSigV4.credentials.sessionToken", true)
		}
	}
}

func lower(ctx policy.Context, pol model.Policy, target model.Ref) {
	c := pol.(*CredentialInjector)
	b := ctx.Index.Backends[target]
	v := ctx.Validator
	if !b.TLS {
		v.Errorf(ctx.Path, "%s does not use TLS: a credential must not travel in clear text (set tls: true on the backend)", target)
		return
	}
	cred := &model.Credential{Policy: model.RefOf(c)}
	s := &c.Spec
	switch {
	case s.APIKey != nil:
		k := s.APIKey
		preset := k.Preset
		if preset == "" {
			preset = b.Provider
		}
		p, ok := Presets[preset]
		if !ok && k.Header == "" {
			v.Errorf("spec.apiKey.header", "is required: %s has no provider preset that says which header carries the key (or set spec.apiKey.preset)", target)
			return
		}
		cred.Kind, cred.Header, cred.Prefix = model.CredentialAPIKey, p.Header, p.Prefix
		if k.Header != "" {
			cred.Header = k.Header
		}
		if k.Prefix != nil {
			cred.Prefix = *k.Prefix
		}
		// A preset's headers are defaults the workload may override (say, a
		// newer anthropic-version); the policy's own headers are the
		// operator's decision and win.
		cred.DefaultHeaders = map[string]string{}
		for h, val := range p.Headers {
			cred.DefaultHeaders[h] = val
		}
		cred.StaticHeaders = map[string]string{}
		for _, h := range c.headerNames() {
			cred.StaticHeaders[strings.ToLower(h)] = k.Headers[h]
			delete(cred.DefaultHeaders, strings.ToLower(h))
		}
		cred.Secret = secretValue(ctx, c, k.Secret, "spec.apiKey.secret")
		if cred.Secret == nil {
			return
		}
	case s.OAuth2 != nil:
		o := s.OAuth2
		u, _ := url.Parse(o.TokenURL)
		host, port := u.Hostname(), uint32(443)
		if p := u.Port(); p != "" {
			n, _ := strconv.ParseUint(p, 10, 16)
			port = uint32(n)
		}
		if net.ParseIP(host) == nil && !model.ValidHostname(host) {
			v.Errorf("spec.oauth2.tokenURL", "%q: host %q is not a DNS name or IP", o.TokenURL, host)
			return
		}
		cred.Kind = model.CredentialOAuth2
		cred.OAuth2 = &model.OAuth2Credential{TokenHost: host, TokenPort: port, TokenURL: o.TokenURL, ClientID: o.ClientID, Scopes: o.Scopes}
		cred.OAuth2.ClientSecret = secretValue(ctx, c, o.ClientSecret, "spec.oauth2.clientSecret")
		if cred.OAuth2.ClientSecret == nil {
			return
		}
	case s.AWSSigV4 != nil:
		a := s.AWSSigV4
		aws := &model.AWSCredential{Region: a.Region, Service: a.Service}
		if aws.Region == "" {
			aws.Region = b.Region
		}
		if aws.Region == "" {
			v.Errorf("spec.awsSigV4.region", "is required: %s has no region to sign for", target)
			return
		}
		if aws.Service == "" {
			aws.Service = "bedrock"
		}
		if k := a.Credentials; k != nil {
			aws.AccessKeyID = secretValue(ctx, c, k.AccessKeyID, "spec.awsSigV4.credentials.accessKeyID")
			aws.SecretAccessKey = secretValue(ctx, c, k.SecretAccessKey, "spec.awsSigV4.credentials.secretAccessKey")
			if k.SessionToken != nil {
				aws.SessionToken = secretValue(ctx, c, *k.SessionToken, "spec.awsSigV4.credentials.sessionToken")
			}
			if aws.AccessKeyID == nil || aws.SecretAccessKey == nil {
				return
			}
		}
		cred.Kind, cred.AWS = model.CredentialAWSSigV4, aws
	}
	b.Credential = cred
}

// maxSecretSize bounds a credential: real keys and tokens are well under a
// kilobyte (an AWS session token is about 1 KiB).
const maxSecretSize = 64 << 10

// secretValue reads a secret and trims the newline files usually end with.
// Control characters inside would break the header; the message says so
// without showing the value.
func secretValue(ctx policy.Context, c *CredentialInjector, src model.SecretSource, path string) []byte {
	field := path + ".file"
	if src.Env != "" {
		field = path + ".env"
	}
	data := ctx.Material(c, src, field)
	if data == nil {
		return nil
	}
	if len(data) > maxSecretSize {
		ctx.Validator.Errorf(field, "%s is %d bytes, more than the %d KiB a credential may be: is it the right file?", src.Describe(), len(data), maxSecretSize>>10)
		return nil
	}
	val := strings.TrimRight(string(data), "\r\n")
	for _, r := range val {
		if r < 0x20 || r == 0x7f {
			ctx.Validator.Errorf(field, "%s contains control characters (line breaks inside the value?); it must hold the secret alone", src.Describe())
			return nil
		}
	}
	if val == "" {
		ctx.Validator.Errorf(field, "%s is empty", src.Describe())
		return nil
	}
	return []byte(val)
}
