package jsonschema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/policies"
	"github.com/tollgate-dev/tollgate/policies/policy"
)

// modulePath is the module whose sources the doc comments are read from.
const modulePath = "github.com/tollgate-dev/tollgate"

// Schema is one node of a JSON Schema (draft-07); the fields are in the
// order the keys are written.
type Schema struct {
	Schema      string `json:"$schema,omitempty"`
	Comment     string `json:"$comment,omitempty"`
	Ref         string `json:"$ref,omitempty"`
	Title       string `json:"title,omitempty"`
	Description string `json:"description,omitempty"`
	// Type is a JSON type name or a list of them.
	Type    any             `json:"type,omitempty"`
	Const   json.RawMessage `json:"const,omitempty"`
	Enum    []string        `json:"enum,omitempty"`
	Pattern string          `json:"pattern,omitempty"`
	// PatternErrorMessage is what yaml-language-server (and VS Code) say
	// when the pattern does not match; validators ignore it.
	PatternErrorMessage string      `json:"patternErrorMessage,omitempty"`
	MaxLength           *int        `json:"maxLength,omitempty"`
	Minimum             json.Number `json:"minimum,omitempty"`
	ExclusiveMinimum    json.Number `json:"exclusiveMinimum,omitempty"`
	Maximum             json.Number `json:"maximum,omitempty"`
	MinItems            *int        `json:"minItems,omitempty"`
	Items               *Schema     `json:"items,omitempty"`
	Required            []string    `json:"required,omitempty"`
	Properties          Properties  `json:"properties,omitempty"`
	// AdditionalProperties is false (unknown fields are refused) or the
	// schema of a map's values.
	AdditionalProperties any                `json:"additionalProperties,omitempty"`
	AnyOf                []*Schema          `json:"anyOf,omitempty"`
	AllOf                []*Schema          `json:"allOf,omitempty"`
	If                   *Schema            `json:"if,omitempty"`
	Then                 *Schema            `json:"then,omitempty"`
	Definitions          map[string]*Schema `json:"definitions,omitempty"`
}

// Property is one named property, in declaration order.
type Property struct {
	Name   string
	Schema *Schema
}

// Properties are written as a JSON object in their order (Go declaration
// order), not sorted.
type Properties []Property

// MarshalJSON implements json.Marshaler.
func (ps Properties) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, p := range ps {
		if i > 0 {
			b.WriteByte(',')
		}
		k, err := json.Marshal(p.Name)
		if err != nil {
			return nil, err
		}
		v, err := marshal(p.Schema)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

func ref(name string) string { return "#/definitions/" + name }

// ModuleRoot finds the folder of the tollgate module's go.mod at or above
// dir: the doc comments that become descriptions are read from there.
func ModuleRoot(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil {
			if strings.HasPrefix(string(data), "module "+modulePath+"\n") {
				return dir, nil
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of module %s at or above the working directory", modulePath)
		}
		dir = parent
	}
}

// Generate returns the JSON Schema of every kind policies.NewScheme
// registers, as the committed tollgate.schema.json holds it. root is the
// module's folder (ModuleRoot), whose Go sources give the descriptions.
func Generate(root string) ([]byte, error) {
	g := newGenerator(root)
	doc, err := g.document(policies.NewScheme(), policies.Kinds)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

type generator struct {
	docs *docIndex
	defs map[string]*Schema
	// defType is the Go type of each definition, to catch two types
	// that would share a name.
	defType map[string]reflect.Type
	// defScopes are the target kinds a definition's targetRefs allow,
	// for definitions that depend on the kind (a struct shared by two
	// kinds with different scopes would need two definitions).
	defScopes map[string]string
	used      map[fieldKey]bool
	// scopes are the target kinds of the kind being walked (nil for the
	// core kinds), and touched says whether the definition being built
	// used them.
	scopes  []string
	touched bool
	errs    []error
}

func newGenerator(root string) *generator {
	return &generator{
		docs:      &docIndex{root: root, pkgs: map[string]*pkgDocs{}},
		defs:      map[string]*Schema{},
		defType:   map[string]reflect.Type{},
		defScopes: map[string]string{},
		used:      map[fieldKey]bool{},
	}
}

func (g *generator) fail(format string, args ...any) {
	g.errs = append(g.errs, fmt.Errorf(format, args...))
}

// document is the whole schema: the envelope every object has, and the
// kind's own definition chosen by kind (if/then, so that an editor reports
// the errors of the kind written rather than of every kind).
func (g *generator) document(s *model.Scheme, kinds []policy.Kind) (*Schema, error) {
	scopes := map[string][]string{}
	for _, k := range kinds {
		scopes[k.Name] = k.Scopes
	}
	names := s.Kinds()
	root := &Schema{
		Schema:  "http://json-schema.org/draft-07/schema#",
		Comment: "Generated by go generate ./policies/jsonschema from the Go types of every kind tollgate decodes; do not edit.",
		Title:   "tollgate policy object (" + model.APIVersion + ")",
		Description: "One object of a tollgate policy file: a Gateway, Backend, HTTPRoute or policy. " +
			"Unknown fields are refused, as tollgate refuses them.",
		Type:     "object",
		Required: []string{"apiVersion", "kind"},
		Properties: Properties{
			{"apiVersion", apiVersionSchema()},
			{"kind", &Schema{Description: "The object's kind.", Type: "string", Enum: names}},
		},
	}
	for _, kind := range names {
		obj, ok := s.New(kind)
		if !ok {
			return nil, fmt.Errorf("kind %s is listed but cannot be made", kind)
		}
		g.scopes = scopes[kind]
		def := g.kindSchema(kind, reflect.TypeOf(obj))
		g.defs[kind] = def
		root.AllOf = append(root.AllOf, &Schema{
			If:   &Schema{Required: []string{"kind"}, Properties: Properties{{"kind", &Schema{Const: jsonString(kind)}}}},
			Then: &Schema{Ref: ref(kind)},
		})
	}
	for k := range hints {
		if !g.used[k] {
			g.fail("hint for %s.%s: no kind has that field (renamed or removed? update hints.go)", k.typ, k.field)
		}
	}
	root.Definitions = g.defs
	return root, errors.Join(g.errs...)
}

func apiVersionSchema() *Schema {
	return &Schema{Description: "The API version: " + model.APIVersion + ".", Type: "string", Const: jsonString(model.APIVersion)}
}

func jsonString(s string) json.RawMessage {
	b, _ := json.Marshal(s)
	return b
}

// kindSchema is the definition of one kind: its struct, with the envelope
// the decoder checks itself (apiVersion, kind, metadata.name).
func (g *generator) kindSchema(kind string, t reflect.Type) *Schema {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	out := &Schema{Description: g.docs.typeDoc(t), Type: "object", AdditionalProperties: false}
	// Required as the decoder requires them (decodeDocument): apiVersion,
	// kind and metadata.name, which a missing metadata lacks too; spec
	// because every kind's Validate refuses an empty one (TestSpecIsRequired).
	out.Required = []string{"apiVersion", "kind", "metadata"}
	for _, f := range g.fields(t) {
		var ps *Schema
		switch f.name {
		case "apiVersion":
			ps = apiVersionSchema()
		case "kind":
			ps = &Schema{Description: "The object's kind.", Type: "string", Const: jsonString(kind)}
		default:
			ps = g.field(f)
			if f.name == "spec" {
				out.Required = append(out.Required, "spec")
			}
		}
		out.Properties = append(out.Properties, Property{f.name, ps})
	}
	return out
}

// yamlField is a field the decoder reads: its YAML name and the Go field
// (of the struct it is declared in, which an inline struct may be).
type yamlField struct {
	name  string
	owner reflect.Type
	field reflect.StructField
}

// fields lists the fields of t as the decoder's fieldsOf finds them (yaml
// names, the lower-cased Go name by default, inline structs flattened,
// '-' and unexported fields skipped), in declaration order.
func (g *generator) fields(t reflect.Type) []yamlField {
	var out []yamlField
	seen := map[string]bool{}
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for i := 0; i < t.NumField(); i++ {
			sf := t.Field(i)
			name, opts, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
			if name == "-" || !sf.IsExported() {
				continue
			}
			if strings.Contains(opts, "inline") {
				walk(sf.Type)
				continue
			}
			if name == "" {
				name = strings.ToLower(sf.Name[:1]) + sf.Name[1:]
			}
			if seen[name] {
				g.fail("%s: two fields are named %q", t, name)
			}
			seen[name] = true
			out = append(out, yamlField{name: name, owner: t, field: sf})
		}
	}
	walk(t)
	return out
}

var scalarDecoderType = reflect.TypeOf((*interface{ DecodeScalar(string) error })(nil)).Elem()

var targetRefsType = reflect.TypeOf([]model.TargetRef(nil))

// field is the schema of one struct field: its type's, with the field's
// doc comment and hints.
func (g *generator) field(f yamlField) *Schema {
	var s *Schema
	if f.field.Type == targetRefsType && g.scopes != nil {
		// The kinds a policy attaches to are its Kind's Scopes: the
		// lowering refuses any other (policies.Lower).
		// model.ValidateTargetRefs: at least one.
		g.touched = true
		one := 1
		s = &Schema{Type: "array", MinItems: &one, Items: &Schema{
			AllOf: []*Schema{{Ref: ref(g.defName(reflect.TypeOf(model.TargetRef{})))}},
			Properties: Properties{{"kind", &Schema{
				Description: "The kind of the target: " + strings.Join(g.scopes, " or ") + ".",
				Type:        "string", Enum: slices.Clone(g.scopes),
			}}},
		}}
		g.typeSchema(reflect.TypeOf(model.TargetRef{}))
	} else {
		s = g.typeSchema(f.field.Type)
	}
	key := fieldKey{f.owner, f.field.Name}
	if h, ok := hints[key]; ok {
		g.used[key] = true
		s = g.apply(h, s, f)
	}
	if d := g.docs.fieldDoc(f.owner, f.field.Name); d != "" {
		s.Description = d
	}
	return s
}

// typeSchema is the schema of a Go type as the decoder reads it: a fresh
// node (callers may add to it), referring to a definition for structs.
func (g *generator) typeSchema(t reflect.Type) *Schema {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(scalarDecoderType) {
		name := g.defName(t)
		if _, ok := g.defs[name]; !ok {
			s, ok := scalarSchemas[t]
			if !ok {
				g.fail("%s decodes itself from a scalar (DecodeScalar), and scalars.go has no schema for it: add one", t)
				s = func() *Schema { return &Schema{Type: "string"} }
			}
			def := s()
			if def.Description == "" {
				def.Description = g.docs.typeDoc(t)
			}
			g.define(name, t, def)
		}
		return &Schema{Ref: ref(name)}
	}
	switch t.Kind() {
	case reflect.Struct:
		name := g.defName(t)
		if _, ok := g.defs[name]; ok {
			if sc, dep := g.defScopes[name]; dep && sc != strings.Join(g.scopes, ",") {
				g.fail("%s holds targetRefs and is used by kinds with different scopes: give each kind its own spec type", t)
			}
			return &Schema{Ref: ref(name)}
		}
		g.define(name, t, nil) // reserve: no recursion through a type
		outer := g.touched
		g.touched = false
		def := &Schema{Description: g.docs.typeDoc(t), Type: "object", AdditionalProperties: false}
		for _, f := range g.fields(t) {
			def.Properties = append(def.Properties, Property{f.name, g.field(f)})
			if g.required(f) {
				def.Required = append(def.Required, f.name)
			}
		}
		if g.touched {
			g.defScopes[name] = strings.Join(g.scopes, ",")
		}
		g.touched = g.touched || outer
		g.defs[name] = def
		return &Schema{Ref: ref(name)}
	case reflect.Slice:
		return &Schema{Type: "array", Items: g.typeSchema(t.Elem())}
	case reflect.Map:
		if t.Key().Kind() != reflect.String {
			g.fail("%s: map keys must be strings", t)
		}
		return &Schema{Type: "object", AdditionalProperties: g.typeSchema(t.Elem())}
	case reflect.String:
		return &Schema{Type: "string"}
	case reflect.Bool:
		return &Schema{Type: "boolean"}
	case reflect.Int, reflect.Int64:
		return &Schema{Type: "integer", Minimum: num(math.MinInt64), Maximum: num(math.MaxInt64)}
	case reflect.Int32:
		return &Schema{Type: "integer", Minimum: num(math.MinInt32), Maximum: num(math.MaxInt32)}
	case reflect.Uint16:
		return &Schema{Type: "integer", Minimum: "0", Maximum: num(math.MaxUint16)}
	case reflect.Uint32:
		return &Schema{Type: "integer", Minimum: "0", Maximum: num(math.MaxUint32)}
	case reflect.Uint64:
		// The decoder reads integers as int64 first (decode.go).
		return &Schema{Type: "integer", Minimum: "0", Maximum: num(math.MaxInt64)}
	case reflect.Float64:
		return &Schema{Type: "number"}
	}
	g.fail("the decoder cannot decode %s, so neither can the schema", t)
	return &Schema{}
}

// required says whether the field is required: a policy's targetRefs
// (model.ValidateTargetRefs), and the fields hints say are.
func (g *generator) required(f yamlField) bool {
	if f.field.Type == targetRefsType && g.scopes != nil {
		return true
	}
	return hints[fieldKey{f.owner, f.field.Name}].required
}

func num[T int64 | int | uint64 | float64](n T) json.Number {
	switch v := any(n).(type) {
	case float64:
		return json.Number(strconv.FormatFloat(v, 'g', -1, 64))
	}
	return json.Number(fmt.Sprint(n))
}

func (g *generator) define(name string, t reflect.Type, s *Schema) {
	if other, ok := g.defType[name]; ok && other != t {
		g.fail("%s and %s would share the definition %q", other, t, name)
	}
	g.defType[name] = t
	g.defs[name] = s
}

// defName names a type's definition: package.Type.
func (g *generator) defName(t reflect.Type) string {
	return filepath.Base(t.PkgPath()) + "." + t.Name()
}

// docIndex reads the doc comments of the module's packages.
type docIndex struct {
	root string
	pkgs map[string]*pkgDocs
}

type pkgDocs struct {
	types  map[string]string
	fields map[string]map[string]string
}

func (d *docIndex) typeDoc(t reflect.Type) string {
	return d.pkg(t.PkgPath()).types[t.Name()]
}

func (d *docIndex) fieldDoc(t reflect.Type, field string) string {
	return d.pkg(t.PkgPath()).fields[t.Name()][field]
}

// pkg parses the package's non-test Go files (once).
func (d *docIndex) pkg(path string) *pkgDocs {
	if p, ok := d.pkgs[path]; ok {
		return p
	}
	p := &pkgDocs{types: map[string]string{}, fields: map[string]map[string]string{}}
	d.pkgs[path] = p
	rel, ok := strings.CutPrefix(path, modulePath)
	if !ok {
		return p
	}
	dir := filepath.Join(d.root, filepath.FromSlash(rel))
	files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
	slices.Sort(files)
	fset := token.NewFileSet()
	for _, file := range files {
		if strings.HasSuffix(file, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, file, nil, parser.ParseComments)
		if err != nil {
			continue
		}
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.TYPE {
				continue
			}
			for _, spec := range gd.Specs {
				ts := spec.(*ast.TypeSpec)
				doc := ts.Doc
				if doc == nil && len(gd.Specs) == 1 {
					doc = gd.Doc
				}
				p.types[ts.Name.Name] = text(doc)
				st, ok := ts.Type.(*ast.StructType)
				if !ok {
					continue
				}
				fd := map[string]string{}
				for _, fl := range st.Fields.List {
					c := fl.Doc
					if c == nil {
						c = fl.Comment
					}
					for _, n := range fl.Names {
						if s := text(c); s != "" {
							fd[n.Name] = s
						}
					}
				}
				p.fields[ts.Name.Name] = fd
			}
		}
	}
	return p
}

// text turns a doc comment into a description: paragraphs of joined lines.
func text(c *ast.CommentGroup) string {
	if c == nil {
		return ""
	}
	var paras []string
	for _, para := range strings.Split(strings.TrimSpace(c.Text()), "\n\n") {
		paras = append(paras, strings.Join(strings.Fields(para), " "))
	}
	return strings.Join(paras, "\n\n")
}
