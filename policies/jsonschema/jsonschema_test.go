package jsonschema

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	sjs "github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/require"
	yaml "go.yaml.in/yaml/v3"
	k8syaml "sigs.k8s.io/yaml"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/policies"
)

// modeline is the first line of every example policy file, with the path of
// the schema relative to the file's folder.
const modelinePrefix = "# yaml-language-server: $schema="

func root(t *testing.T) string {
	t.Helper()
	r, err := ModuleRoot(".")
	require.NoError(t, err)
	return r
}

// TestSchemaIsCurrent is how CI (go test ./...) fails on a stale schema.
func TestSchemaIsCurrent(t *testing.T) {
	want, err := Generate(root(t))
	require.NoError(t, err)
	got, err := os.ReadFile(FileName)
	require.NoError(t, err)
	if !bytes.Equal(got, want) {
		t.Fatal("the committed JSON Schema is stale: run go generate ./policies/jsonschema")
	}
}

var (
	compileOnce sync.Once
	compiled    *sjs.Schema
	compileErr  error
)

// validator is the committed schema, compiled by a real JSON Schema
// validator.
func validator(t *testing.T) *sjs.Schema {
	t.Helper()
	compileOnce.Do(func() {
		data, err := os.ReadFile(FileName)
		if err != nil {
			compileErr = err
			return
		}
		doc, err := sjs.UnmarshalJSON(bytes.NewReader(data))
		if err != nil {
			compileErr = err
			return
		}
		c := sjs.NewCompiler()
		if compileErr = c.AddResource(FileName, doc); compileErr != nil {
			return
		}
		compiled, compileErr = c.Compile(FileName)
	})
	require.NoError(t, compileErr)
	return compiled
}

// document is one YAML document of a file, as the decoder and the schema
// validator each read it.
type document struct {
	where string // file:line
	yaml  []byte // the document alone
}

// documents splits a YAML file into its documents (empty ones, which the
// decoder skips, are left out).
func documents(t *testing.T, file string, data []byte) []document {
	t.Helper()
	var out []document
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return out
		}
		require.NoError(t, err, file)
		if len(n.Content) == 0 || (n.Content[0].Kind == yaml.ScalarNode && n.Content[0].ShortTag() == "!!null") {
			continue
		}
		b, err := yaml.Marshal(&n)
		require.NoError(t, err, file)
		out = append(out, document{where: fmt.Sprintf("%s:%d", file, n.Content[0].Line), yaml: b})
	}
}

// schemaErr validates one YAML document against the schema, converted to
// JSON as the brief of an editor would (sigs.k8s.io/yaml).
func schemaErr(t *testing.T, doc []byte) error {
	t.Helper()
	js, err := k8syaml.YAMLToJSON(doc)
	require.NoError(t, err)
	inst, err := sjs.UnmarshalJSON(bytes.NewReader(js))
	require.NoError(t, err)
	return validator(t).Validate(inst)
}

// decode runs one document through the real decoder.
func decode(doc []byte) ([]model.Object, model.Violations) {
	return policies.NewScheme().Decode("doc.yaml", doc)
}

// examplePolicyFiles are the YAML files under examples/ that hold policy
// objects (a document with tollgate's apiVersion), and the others.
func examplePolicyFiles(t *testing.T) (policy, other []string) {
	t.Helper()
	dir := filepath.Join(root(t), "examples")
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || (filepath.Ext(path) != ".yaml" && filepath.Ext(path) != ".yml") {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if holdsPolicies(data) {
			policy = append(policy, path)
		} else {
			other = append(other, path)
		}
		return nil
	})
	require.NoError(t, err)
	return policy, other
}

func holdsPolicies(data []byte) bool {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc struct {
			APIVersion string `yaml:"apiVersion"`
		}
		if err := dec.Decode(&doc); err != nil {
			return false
		}
		if doc.APIVersion == model.APIVersion {
			return true
		}
	}
}

// TestExamplesCarryTheModeline: every example policy file starts with the
// modeline naming the committed schema by its path relative to the file;
// files that are not policies (tollgate's serve config, a token file) do
// not name it.
func TestExamplesCarryTheModeline(t *testing.T) {
	r := root(t)
	schemaPath := filepath.Join(r, "policies", "jsonschema", FileName)
	policyFiles, others := examplePolicyFiles(t)
	require.NotEmpty(t, policyFiles)
	for _, f := range policyFiles {
		rel, err := filepath.Rel(filepath.Dir(f), schemaPath)
		require.NoError(t, err)
		want := modelinePrefix + filepath.ToSlash(rel)
		data, err := os.ReadFile(f)
		require.NoError(t, err)
		first, _, _ := strings.Cut(string(data), "\n")
		name, _ := filepath.Rel(r, f)
		require.Equal(t, want, first, "%s must start with the modeline", name)
		_, err = os.Stat(filepath.Join(filepath.Dir(f), filepath.FromSlash(strings.TrimPrefix(first, modelinePrefix))))
		require.NoError(t, err, "%s: the modeline's schema does not exist", name)
	}
	for _, f := range others {
		data, err := os.ReadFile(f)
		require.NoError(t, err)
		name, _ := filepath.Rel(r, f)
		require.NotContains(t, string(data), FileName, "%s holds no policy object: it must not name the policy schema", name)
		t.Logf("not a policy file, no modeline: %s", name)
	}
	t.Logf("%d example policy files carry the modeline", len(policyFiles))
}

// TestValidInputsValidate: every document of the example policy files and
// of the golden inputs that the decoder accepts (translate/testdata/in:
// those whose decoding reports no violation; the others are deliberately
// invalid) is valid by the schema.
//
// The documents of the invalid files are checked one by one too: one the
// decoder accepts on its own must be valid by the schema, unless what the
// schema refuses is only a targetRefs kind outside the policy kind's
// scopes, which lowering refuses (policies.Lower: "cannot target"), and
// the schema knows from policy.Kind.Scopes. Documents the decoder refuses
// and the schema accepts break rules across fields (see
// TestSemanticRulesAreTheDecoders); they are counted.
func TestValidInputsValidate(t *testing.T) {
	r := root(t)
	files, _ := examplePolicyFiles(t)
	require.NotEmpty(t, files)
	golden, err := filepath.Glob(filepath.Join(r, "translate", "testdata", "in", "*.yaml"))
	require.NoError(t, err)
	require.NotEmpty(t, golden)
	files = append(files, golden...)
	var validFiles, invalidFiles, valid, scoped, refused, refusedBySchema int
	for _, f := range files {
		data, err := os.ReadFile(f)
		require.NoError(t, err)
		name, _ := filepath.Rel(r, f)
		_, fileViolations := policies.NewScheme().Decode(name, data)
		if len(fileViolations) == 0 {
			validFiles++
		} else {
			invalidFiles++
		}
		for _, doc := range documents(t, name, data) {
			objs, vs := decode(doc.yaml)
			err := schemaErr(t, doc.yaml)
			switch {
			case len(vs) > 0:
				refused++
				if err != nil {
					refusedBySchema++
				}
			case err == nil:
				require.Len(t, objs, 1)
				valid++
			case len(fileViolations) > 0 && onlyScopes(err):
				scoped++
				t.Logf("%s: the decoder accepts it, the schema refuses its target kind (lowering does too): %v", doc.where, leaves(err))
			default:
				t.Fatalf("%s: the decoder accepts this document, the schema must too: %v", doc.where, err)
			}
		}
	}
	require.NotZero(t, valid, "no valid document was checked")
	t.Logf("%d files (%d valid, %d deliberately invalid): %d documents the decoder accepts are valid by the schema; %d more it accepts target a kind outside the scopes; of %d it refuses, the schema refuses %d (the rest break rules across fields)",
		len(files), validFiles, invalidFiles, valid, scoped, refused, refusedBySchema)
}

// leaves are the innermost errors of a validation error: where and what.
func leaves(err error) []string {
	var ve *sjs.ValidationError
	if !errors.As(err, &ve) {
		return []string{err.Error()}
	}
	var out []string
	var walk func(e *sjs.ValidationError)
	walk = func(e *sjs.ValidationError) {
		if len(e.Causes) == 0 {
			out = append(out, "/"+strings.Join(e.InstanceLocation, "/")+": "+e.Error())
		}
		for _, c := range e.Causes {
			walk(c)
		}
	}
	walk(ve)
	return out
}

var scopeErrRE = regexp.MustCompile(`^/spec/targetRefs/\d+/kind: `)

// onlyScopes reports whether every error is a targetRefs kind.
func onlyScopes(err error) bool {
	for _, l := range leaves(err) {
		if !scopeErrRE.MatchString(l) {
			return false
		}
	}
	return true
}

// TestRefusedByBoth: inputs the decoder refuses for their shape, which the
// schema must refuse as well. The decoder's refusal is asserted too, so
// that the table cannot rot.
func TestRefusedByBoth(t *testing.T) {
	const gw = "apiVersion: tollgate.dev/v1alpha1\nkind: Gateway\nmetadata: {name: egress}\n"
	const be = "apiVersion: tollgate.dev/v1alpha1\nkind: Backend\nmetadata: {name: openai}\n"
	const rt = "apiVersion: tollgate.dev/v1alpha1\nkind: HTTPRoute\nmetadata: {name: chat}\n"
	const listeners = "spec:\n  listeners:\n  - {name: http, port: 10080, protocol: HTTP}\n"
	for _, tc := range []struct{ name, doc string }{
		{"unknown top-level field", gw + listeners + "status: {}\n"},
		{"unknown field in metadata", "apiVersion: tollgate.dev/v1alpha1\nkind: Gateway\nmetadata: {name: egress, owner: me}\n" + listeners},
		{"unknown field in spec", be + "spec: {hostname: api.openai.com, hostName: api.openai.com}\n"},
		{"unknown nested field", gw + "spec:\n  listeners:\n  - {name: http, port: 10080, protocol: HTTP, tsl: {}}\n"},
		{"unknown field deep in a policy", "apiVersion: tollgate.dev/v1alpha1\nkind: EgressPolicy\nmetadata: {name: e}\nspec:\n  targetRefs: [{kind: Backend, name: openai}]\n  timeouts: {connect: 5s, read: 5s}\n"},
		{"string for a list", rt + "spec:\n  parentRefs: [{name: egress}]\n  hostnames: api.openai.com\n  rules: [{backendRefs: [{name: openai}]}]\n"},
		{"mapping for a list", gw + "spec:\n  listeners: {name: http, port: 10080, protocol: HTTP}\n"},
		{"number for a string", be + "spec: {hostname: 42}\n"},
		{"boolean for a string", be + "spec: {hostname: api.openai.com, region: true}\n"},
		{"string for a number", gw + "spec:\n  listeners:\n  - {name: http, port: \"10080\", protocol: HTTP}\n"},
		{"fraction for an integer", gw + "spec:\n  listeners:\n  - {name: http, port: 10080.5, protocol: HTTP}\n"},
		{"string for a boolean", be + "spec: {hostname: api.openai.com, tls: \"true\"}\n"},
		{"list for a mapping", "apiVersion: tollgate.dev/v1alpha1\nkind: Gateway\nmetadata: {name: egress, labels: [a, b]}\n" + listeners},
		{"number for a label value", "apiVersion: tollgate.dev/v1alpha1\nkind: Gateway\nmetadata: {name: egress, labels: {tier: 1}}\n" + listeners},
		{"negative integer for an unsigned one", rt + "spec:\n  parentRefs: [{name: egress}]\n  rules: [{backendRefs: [{name: openai, weight: -1}]}]\n"},
		{"integer out of range", rt + "spec:\n  parentRefs: [{name: egress}]\n  rules: [{backendRefs: [{name: openai, weight: 4294967296}]}]\n"},
		{"port out of range", gw + "spec:\n  listeners:\n  - {name: http, port: 70000, protocol: HTTP}\n"},
		{"bad enum value", gw + "spec:\n  listeners:\n  - {name: http, port: 10080, protocol: TCP}\n"},
		{"bad gateway mode", gw + "spec:\n  mode: Child\n" + strings.TrimPrefix(listeners, "spec:\n")},
		{"bad backend schema", be + "spec: {hostname: api.openai.com, schema: soap}\n"},
		{"bad provider", be + "spec: {provider: openia}\n"},
		{"bad enum in a list", "apiVersion: tollgate.dev/v1alpha1\nkind: BackendTLSPolicy\nmetadata: {name: t}\nspec:\n  targetRefs: [{kind: Backend, name: openai}]\n  alpn: [h3]\n"},
		{"bad rate limit unit", "apiVersion: tollgate.dev/v1alpha1\nkind: RateLimitPolicy\nmetadata: {name: r}\nspec:\n  targetRefs: [{kind: Gateway, name: egress}]\n  limits: [{name: l, requests: 10, per: Week}]\n"},
		{"duration without a unit", rt + "spec:\n  parentRefs: [{name: egress}]\n  rules: [{backendRefs: [{name: openai}], timeouts: {request: 30}}]\n"},
		{"duration in words", rt + "spec:\n  parentRefs: [{name: egress}]\n  rules: [{backendRefs: [{name: openai}], timeouts: {request: 5 minutes}}]\n"},
		{"negative duration", rt + "spec:\n  parentRefs: [{name: egress}]\n  rules: [{backendRefs: [{name: openai}], timeouts: {request: -5s}}]\n"},
		{"duration with a bad unit", rt + "spec:\n  parentRefs: [{name: egress}]\n  rules: [{backendRefs: [{name: openai}], timeouts: {request: 5d}}]\n"},
		{"duration as a mapping", rt + "spec:\n  parentRefs: [{name: egress}]\n  rules: [{backendRefs: [{name: openai}], timeouts: {request: {seconds: 5}}}]\n"},
		{"bad byte size", "apiVersion: tollgate.dev/v1alpha1\nkind: GuardRailsPolicy\nmetadata: {name: g}\nspec:\n  targetRefs: [{kind: Gateway, name: egress}]\n  maxRequestBodySize: 1GB\n"},
		{"missing apiVersion", "kind: Gateway\nmetadata: {name: egress}\n" + listeners},
		{"wrong apiVersion", "apiVersion: v1\nkind: Gateway\nmetadata: {name: egress}\n" + listeners},
		{"missing kind", "apiVersion: tollgate.dev/v1alpha1\nmetadata: {name: egress}\n" + listeners},
		{"unknown kind", "apiVersion: tollgate.dev/v1alpha1\nkind: Gateways\nmetadata: {name: egress}\n" + listeners},
		{"missing metadata", "apiVersion: tollgate.dev/v1alpha1\nkind: Gateway\n" + listeners},
		{"missing name", "apiVersion: tollgate.dev/v1alpha1\nkind: Gateway\nmetadata: {namespace: team-a}\n" + listeners},
		{"bad name", "apiVersion: tollgate.dev/v1alpha1\nkind: Gateway\nmetadata: {name: Egress_1}\n" + listeners},
		{"bad namespace", "apiVersion: tollgate.dev/v1alpha1\nkind: Gateway\nmetadata: {name: egress, namespace: team.a}\n" + listeners},
		{"missing spec", gw},
		{"missing required field", gw + "spec:\n  listeners:\n  - {name: http, protocol: HTTP}\n"},
		{"empty required list", gw + "spec:\n  listeners: []\n"},
		{"policy without targets", "apiVersion: tollgate.dev/v1alpha1\nkind: EgressPolicy\nmetadata: {name: e}\nspec:\n  targetRefs: []\n"},
		{"a list, not a mapping", "- apiVersion: tollgate.dev/v1alpha1\n  kind: Gateway\n"},
		{"a scalar, not a mapping", "Gateway\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs, vs := decode([]byte(tc.doc))
			require.NotEmpty(t, vs, "the decoder accepts this: it does not belong in the table")
			require.Empty(t, objs)
			require.Error(t, schemaErr(t, []byte(tc.doc)), "the decoder refuses this (%s), the schema must too", vs[0].Error())
		})
	}
}

// TestSemanticRulesAreTheDecoders lists inputs the schema accepts and the
// decoder refuses: rules across fields (one of two fields, mutually
// exclusive settings, sums, duplicates) and checks that need parsing (IP
// addresses, CIDRs, regular expressions, URLs), which the decoder's
// validation checks and the schema does not express. Should the schema
// learn one, move it to TestRefusedByBoth.
func TestSemanticRulesAreTheDecoders(t *testing.T) {
	const gw = "apiVersion: tollgate.dev/v1alpha1\nkind: Gateway\nmetadata: {name: egress}\n"
	const be = "apiVersion: tollgate.dev/v1alpha1\nkind: Backend\nmetadata: {name: b}\n"
	const rt = "apiVersion: tollgate.dev/v1alpha1\nkind: HTTPRoute\nmetadata: {name: chat}\nspec:\n  parentRefs: [{name: egress}]\n"
	for _, tc := range []struct{ name, doc string }{
		{"parent mode without parentRef", gw + "spec:\n  mode: Parent\n  listeners: [{name: http, port: 10080, protocol: HTTP}]\n"},
		{"two listeners on one port", gw + "spec:\n  listeners: [{name: a, port: 10080, protocol: HTTP}, {name: b, port: 10080, protocol: HTTP}]\n"},
		{"HTTPS listener without tls", gw + "spec:\n  listeners: [{name: https, port: 10443, protocol: HTTPS}]\n"},
		{"backend without hostname or addresses", be + "spec: {port: 8080, tls: false}\n"},
		{"auto protocol without TLS", be + "spec: {hostname: models.internal, port: 8080, protocol: auto}\n"},
		{"address that is no IP", be + "spec:\n  addresses: [{ip: models.internal}]\n  tls: false\n"},
		{"weights adding up to 0", rt + "  rules: [{backendRefs: [{name: b, weight: 0}]}]\n"},
		{"path not starting with /", rt + "  rules: [{matches: [{path: {value: v1}}], backendRefs: [{name: b}]}]\n"},
		{"secret from a file and env", "apiVersion: tollgate.dev/v1alpha1\nkind: CredentialInjector\nmetadata: {name: k}\nspec:\n  targetRefs: [{kind: Backend, name: b}]\n  apiKey: {secret: {file: k, env: K}}\n"},
		{"two credentials", "apiVersion: tollgate.dev/v1alpha1\nkind: CredentialInjector\nmetadata: {name: k}\nspec:\n  targetRefs: [{kind: Backend, name: b}]\n  apiKey: {secret: {env: K}}\n  oauth2: {tokenURL: https://idp.example/token, clientID: c, clientSecret: {env: S}}\n"},
		{"a CIDR that is no CIDR", "apiVersion: tollgate.dev/v1alpha1\nkind: EgressPolicy\nmetadata: {name: e}\nspec:\n  targetRefs: [{kind: Backend, name: b}]\n  allowedSources: {cidrs: [10.0.0.0]}\n"},
		{"a DNSPolicy that sets nothing", "apiVersion: tollgate.dev/v1alpha1\nkind: DNSPolicy\nmetadata: {name: d}\nspec:\n  targetRefs: [{kind: Backend, name: b}]\n"},
		{"a limit with requests and tokens", "apiVersion: tollgate.dev/v1alpha1\nkind: RateLimitPolicy\nmetadata: {name: r}\nspec:\n  targetRefs: [{kind: Gateway, name: egress}]\n  limits: [{name: l, requests: 1, tokens: {total: 1}, per: Minute}]\n"},
		{"a zero connect timeout", "apiVersion: tollgate.dev/v1alpha1\nkind: EgressPolicy\nmetadata: {name: e}\nspec:\n  targetRefs: [{kind: Backend, name: b}]\n  timeouts: {connect: 0s}\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs, vs := decode([]byte(tc.doc))
			require.NotEmpty(t, vs, "the decoder accepts this")
			require.Empty(t, objs)
			require.NoError(t, schemaErr(t, []byte(tc.doc)), "the schema refuses this now: move it to TestRefusedByBoth")
		})
	}
}

// TestStricterThanTheDecoder lists what the schema refuses and decoding
// alone accepts, on purpose: an explicit null (the decoder reads it as
// unset; leave the key out), an empty string for an optional enum (the
// decoder reads the default), a negative zero duration, and a target kind
// outside the policy kind's scopes, which lowering refuses (policies.Lower),
// so that tollgate validate refuses it too.
func TestStricterThanTheDecoder(t *testing.T) {
	const be = "apiVersion: tollgate.dev/v1alpha1\nkind: Backend\nmetadata: {name: b}\n"
	const gw = "apiVersion: tollgate.dev/v1alpha1\nkind: Gateway\nmetadata: {name: egress}\n"
	for _, tc := range []struct{ name, doc string }{
		{"explicit null", be + "spec: {hostname: api.example.com, region: null}\n"},
		{"key without a value", be + "spec:\n  hostname: api.example.com\n  modelMap:\n"},
		{"empty optional enum", gw + "spec:\n  mode: \"\"\n  listeners: [{name: http, port: 10080, protocol: HTTP}]\n"},
		{"negative zero duration", "apiVersion: tollgate.dev/v1alpha1\nkind: HTTPRoute\nmetadata: {name: r}\nspec:\n  parentRefs: [{name: egress}]\n  rules: [{backendRefs: [{name: b}], timeouts: {request: -0s}}]\n"},
		{"target kind outside the scopes", "apiVersion: tollgate.dev/v1alpha1\nkind: ExternalAuth\nmetadata: {name: a}\nspec:\n  targetRefs: [{kind: Backend, name: b}]\n  rules: [{action: Allow, from: [{namespace: team-a}]}]\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs, vs := decode([]byte(tc.doc))
			require.Empty(t, vs, "the decoder refuses this: move it to TestRefusedByBoth")
			require.Len(t, objs, 1)
			require.Error(t, schemaErr(t, []byte(tc.doc)))
		})
	}
}

// TestSpecIsRequired: the schema requires spec of every kind because every
// kind's Validate refuses an object without one.
func TestSpecIsRequired(t *testing.T) {
	s := policies.NewScheme()
	for _, kind := range s.Kinds() {
		doc := fmt.Sprintf("apiVersion: %s\nkind: %s\nmetadata: {name: x}\n", model.APIVersion, kind)
		_, vs := decode([]byte(doc))
		require.NotEmpty(t, vs, "%s without spec is valid: the schema must not require spec", kind)
		require.Error(t, schemaErr(t, []byte(doc)), kind)
	}
}

// TestScalarPatterns runs samples through each scalar type's DecodeScalar
// and the schema's pattern: they must agree, so that a change to what a
// scalar accepts shows here.
func TestScalarPatterns(t *testing.T) {
	// What the patterns cannot see: values too large for the type.
	overflows := []string{"9999999999h", "9999999999999999999", "9999999999Gi"}
	// What the patterns refuse and DecodeScalar accepts: a negative zero.
	negativeZero := []string{"-0", "-0s", "-0.0m"}
	samples := []string{
		"", "0", "+0", "00", "0s", "30s", "5m", "1m30s", "1h2m3.5s", "1.5h", ".5s", "5.s", "1ms", "10us", "10µs", "10μs", "100ns",
		"-5s", "5", "s", "5 s", "5S", "5d", "5sec", " 5s", "5s ", "1h-5m", ".s", "5..5s", "1e3s", "0x10s", "PT5S",
		"1", "512", "512Ki", "32Mi", "1Gi", "1Ti", "1K", "1KB", "1Kib", "1ki", "-1", "+1", "1_000", "0x10", "1.5Mi", "Mi", " 1", "1 Mi",
	}
	samples = append(samples, overflows...)
	samples = append(samples, negativeZero...)
	for typ, mk := range scalarSchemas {
		re := mustCompile(t, mk().Pattern)
		for _, s := range samples {
			err := reflect.New(typ).Interface().(interface{ DecodeScalar(string) error }).DecodeScalar(s)
			if slices.Contains(overflows, s) && err != nil && re.MatchString(s) {
				continue
			}
			if slices.Contains(negativeZero, s) && err == nil {
				require.False(t, re.MatchString(s), "%s %q", typ, s)
				continue
			}
			require.Equal(t, err == nil, re.MatchString(s), "%s %q: DecodeScalar says %v, the pattern %s", typ, s, err, re)
		}
	}
	// The patterns go to editors too, which read them as ECMAScript: they
	// use only what both read alike.
	for _, mk := range scalarSchemas {
		require.NotContains(t, mk().Pattern, `\d`)
		require.NotContains(t, mk().Pattern, `(?`)
	}
}

func mustCompile(t *testing.T, pattern string) *regexp.Regexp {
	t.Helper()
	re, err := regexp.Compile(pattern)
	require.NoError(t, err)
	return re
}
