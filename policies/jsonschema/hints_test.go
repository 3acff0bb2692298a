package jsonschema

import (
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	yaml "go.yaml.in/yaml/v3"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/policies"
)

// site is one place a field appears: the kind, and the field's path as
// violations name it (the first item of each list).
type site struct {
	kind, path string
	f          yamlField
}

// sites lists every field of every kind, the way the decoder reaches them.
func sites() []site {
	g := newGenerator("")
	s := policies.NewScheme()
	var out []site
	var walk func(kind string, t reflect.Type, path string)
	walk = func(kind string, t reflect.Type, path string) {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if reflect.PointerTo(t).Implements(scalarDecoderType) {
			return
		}
		switch t.Kind() {
		case reflect.Slice:
			walk(kind, t.Elem(), path+"[0]")
			return
		case reflect.Struct:
		default:
			return
		}
		for _, f := range g.fields(t) {
			p := f.name
			if path != "" {
				p = path + "." + f.name
			}
			out = append(out, site{kind, p, f})
			walk(kind, f.field.Type, p)
		}
	}
	for _, kind := range s.Kinds() {
		obj, _ := s.New(kind)
		walk(kind, reflect.TypeOf(obj), "")
	}
	return out
}

// bases are the specs probes start from: what makes the validators look
// at the fields the probes set (an HTTPS listener's TLS is checked only
// on an HTTPS listener). A policy's spec targets its first scope.
var bases = map[string]string{
	model.KindGateway: `{listeners: [{name: https, port: 10443, protocol: HTTPS,
		tls: {spiffe: {}, clientValidation: {spiffe: {trustDomains: [corp.example]}}}}]}`,
	model.KindBackend:   `{hostname: api.example.com}`,
	model.KindHTTPRoute: `{parentRefs: [{name: egress}], rules: [{backendRefs: [{name: b}]}]}`,
}

func baseDoc(t *testing.T, kind string) map[string]any {
	t.Helper()
	src, ok := bases[kind]
	if !ok {
		for _, k := range policies.Kinds {
			if k.Name == kind {
				src = fmt.Sprintf("{targetRefs: [{kind: %s, name: x}]}", k.Scopes[0])
			}
		}
	}
	var spec any
	require.NoError(t, yaml.Unmarshal([]byte(src), &spec))
	return map[string]any{"apiVersion": model.APIVersion, "kind": kind, "metadata": map[string]any{"name": "probe"}, "spec": spec}
}

var indexRE = regexp.MustCompile(`\[(\d+)\]`)

// put sets (or, with del, removes) the value at path in node, making the
// mappings and lists on the way.
func put(node any, path []any, value any, del bool) any {
	if len(path) == 0 {
		return value
	}
	switch tok := path[0].(type) {
	case string:
		m, _ := node.(map[string]any)
		if m == nil {
			m = map[string]any{}
		}
		if len(path) == 1 && del {
			delete(m, tok)
			return m
		}
		m[tok] = put(m[tok], path[1:], value, del)
		return m
	default:
		i := tok.(int)
		l, _ := node.([]any)
		for len(l) <= i {
			l = append(l, map[string]any{})
		}
		if len(path) == 1 && del {
			return slices.Delete(l, i, i+1)
		}
		l[i] = put(l[i], path[1:], value, del)
		return l
	}
}

func tokens(path string) []any {
	var out []any
	for _, part := range strings.Split(path, ".") {
		name, _, _ := strings.Cut(part, "[")
		out = append(out, name)
		for _, m := range indexRE.FindAllStringSubmatch(part, -1) {
			i, _ := strconv.Atoi(m[1])
			out = append(out, i)
		}
	}
	return out
}

// probe decodes the kind's base document with path set to value (removed
// with del) and returns the violations.
func probe(t *testing.T, kind, path string, value any, del bool) model.Violations {
	t.Helper()
	doc := put(baseDoc(t, kind), tokens(path), value, del)
	data, err := json.Marshal(doc)
	require.NoError(t, err)
	_, vs := policies.NewScheme().Decode("probe.yaml", data)
	return vs
}

func at(vs model.Violations, path string) []model.Violation {
	var out []model.Violation
	for _, v := range vs {
		if v.Field == path {
			out = append(out, v)
		}
	}
	return out
}

func atOrUnder(vs model.Violations, path string) bool {
	for _, v := range vs {
		if v.Field == path || strings.HasPrefix(v.Field, path+".") || strings.HasPrefix(v.Field, path+"[") {
			return true
		}
	}
	return false
}

const bogus = "zz-not-a-value"

// refusedValue is the validators' message for a value not in an enum:
// `"value" is not ...: use A, B or C`.
func refusedValue(vs []model.Violation, value string) (model.Violation, bool) {
	for _, v := range vs {
		if strings.HasPrefix(v.Msg, strconv.Quote(value)+" is not") {
			return v, true
		}
	}
	return model.Violation{}, false
}

var parenRE = regexp.MustCompile(`\s*\([^)]*\)`)

// listedValues are the values a refusal lists after "use", when it lists
// them plainly.
func listedValues(msg string) ([]string, bool) {
	_, list, ok := strings.Cut(msg, ": use ")
	if !ok {
		return nil, false
	}
	list = strings.TrimPrefix(list, "one of ")
	list = parenRE.ReplaceAllString(list, "")
	list = strings.ReplaceAll(list, " or ", ", ")
	var out []string
	for _, v := range strings.Split(list, ",") {
		v = strings.TrimSpace(v)
		if v == "" || strings.ContainsAny(v, " []") {
			return nil, false
		}
		out = append(out, v)
	}
	return out, len(out) > 0
}

// unlistedEnums are enums whose refusal does not list the values plainly,
// with why the hint is still complete.
var unlistedEnums = map[string]string{
	"GuardRailsPolicy spec.backoff.retryOn": "the message lists model.SafeRetryOn and, with allowUnsafeRetries, model.UnsafeRetryOn as Go lists; the hint is both",
	// The hint is credentialinjector.Presets, the table Validate looks the
	// preset up in; the message is written out by hand and lists five of
	// its seven presets (not bedrock and vertex).
	"CredentialInjector spec.apiKey.preset": "the hint is credentialinjector.Presets, which Validate checks; its message names only some of them",
}

// TestHints checks every hint against the decoder at every place its field
// appears: see hint.
func TestHints(t *testing.T) {
	probed := map[fieldKey]int{}
	checks := 0
	for _, s := range sites() {
		key := fieldKey{s.f.owner, s.f.field.Name}
		h, ok := hints[key]
		targetRefs := s.f.field.Type == targetRefsType && s.path == "spec.targetRefs"
		if !ok && !targetRefs {
			continue
		}
		if targetRefs {
			h = hint{required: true, minItems: 1}
		}
		probed[key]++
		name := s.kind + " " + s.path
		list := s.f.field.Type.Kind() == reflect.Slice
		value := s.path // where values go: the list's first item
		if list {
			value += "[0]"
		}
		t.Run(name, func(t *testing.T) {
			if h.required {
				checks++
				require.True(t, atOrUnder(probe(t, s.kind, s.path, nil, true), s.path), "%s is not refused when left out: it is not required", name)
			}
			if h.minItems > 0 {
				checks++
				require.True(t, atOrUnder(probe(t, s.kind, s.path, []any{}, false), s.path), "%s is not refused when empty: drop minItems", name)
			}
			if len(h.enum) > 0 {
				checks++
				for _, v := range h.enum {
					vs := probe(t, s.kind, value, v, false)
					if bad, refused := refusedValue(at(vs, value), v); refused {
						t.Fatalf("%s: %q is in the schema's enum and the decoder refuses it: %s", name, v, bad.Msg)
					}
				}
				bad, refused := refusedValue(at(probe(t, s.kind, value, bogus, false), value), bogus)
				require.True(t, refused, "%s: the decoder accepts %q: it is no enum", name, bogus)
				if why, ok := unlistedEnums[name]; ok {
					t.Logf("%s: %s", name, why)
				} else {
					listed, ok := listedValues(bad.Msg)
					require.True(t, ok, "%s: cannot read the values of %q: list it in unlistedEnums with why the hint is complete", name, bad.Msg)
					require.ElementsMatch(t, listed, h.enum, "%s: the decoder's message lists other values than the schema's enum", name)
				}
			}
			if h.pattern != "" {
				checks++
				require.Empty(t, at(probe(t, s.kind, value, "a1", false), value), "%s: %q refused", name, "a1")
				require.NotEmpty(t, at(probe(t, s.kind, value, "-Bad_", false), value), "%s: %q accepted", name, "-Bad_")
			}
			if h.maxLength > 0 {
				checks++
				require.Empty(t, at(probe(t, s.kind, value, strings.Repeat("a", h.maxLength), false), value), "%s: %d characters refused", name, h.maxLength)
				require.NotEmpty(t, at(probe(t, s.kind, value, strings.Repeat("a", h.maxLength+1), false), value), "%s: %d characters accepted", name, h.maxLength+1)
			}
			elem := s.f.field.Type
			for elem.Kind() == reflect.Pointer || elem.Kind() == reflect.Slice {
				elem = elem.Elem()
			}
			float := elem.Kind() == reflect.Float64
			step := func(n string, by int) json.Number {
				if float {
					f, _ := strconv.ParseFloat(n, 64)
					return json.Number(strconv.FormatFloat(f+float64(by)*1e-6, 'g', -1, 64))
				}
				i, err := strconv.ParseInt(n, 10, 64)
				require.NoError(t, err)
				return json.Number(strconv.FormatInt(i+int64(by), 10))
			}
			accepts := func(n json.Number) {
				require.Empty(t, at(probe(t, s.kind, value, n, false), value), "%s: %s is in range and refused", name, n)
			}
			refuses := func(n json.Number) {
				require.NotEmpty(t, at(probe(t, s.kind, value, n, false), value), "%s: %s is out of range and accepted", name, n)
			}
			if h.min != "" {
				checks++
				accepts(json.Number(h.min))
				refuses(step(h.min, -1))
			}
			if h.exclusiveMin != "" {
				checks++
				refuses(json.Number(h.exclusiveMin))
				accepts(step(h.exclusiveMin, 1))
			}
			if h.max != "" {
				checks++
				accepts(json.Number(h.max))
				refuses(step(h.max, 1))
			}
		})
	}
	for key := range hints {
		require.NotZero(t, probed[key], "hint for %s.%s was not probed", key.typ, key.field)
	}
	places := 0
	for _, n := range probed {
		places += n
	}
	t.Logf("%d hints (and every policy's targetRefs) checked at %d places: %d checks", len(hints), places, checks)
}
