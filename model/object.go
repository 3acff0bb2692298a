package model

import (
	"fmt"
	"slices"
	"strings"
)

// APIVersion is the only API version tollgate understands today.
const APIVersion = "tollgate.dev/v1alpha1"

// DefaultNamespace is the namespace of objects that name none.
const DefaultNamespace = "default"

// ObjectMeta is the metadata every object carries.
type ObjectMeta struct {
	// Name is unique per kind and namespace: lowercase letters, digits, '-'
	// and '.', at most 253 characters.
	Name string `yaml:"name"`
	// Namespace groups objects; it defaults to "default".
	Namespace string `yaml:"namespace,omitempty"`
	// Labels are free-form key/value pairs.
	Labels map[string]string `yaml:"labels,omitempty"`
	// Annotations are free-form key/value pairs that tollgate ignores.
	Annotations map[string]string `yaml:"annotations,omitempty"`
	// Generation counts the changes of an API object's content; the API
	// store sets it (it is never read from YAML). Zero for file objects,
	// whose generation the store counts itself.
	Generation int64 `yaml:"-"`
}

// TypeMeta is the envelope's kind and API version.
type TypeMeta struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
}

// Source says where an object came from, so that violations and status can
// point back at the file and line of every field.
type Source struct {
	// File is the path the object was read from (empty for API objects).
	File string
	// Line is the line of the document's first key.
	Line int
	// Fields maps a field path (spec.rules[0].matches) to its line.
	Fields map[string]int
}

// LineOf returns the line of the field path, or of its closest ancestor that
// has one, or of the object itself.
func (s *Source) LineOf(path string) int {
	if s == nil {
		return 0
	}
	for p := path; p != ""; p = parentPath(p) {
		if l, ok := s.Fields[p]; ok {
			return l
		}
	}
	return s.Line
}

func parentPath(p string) string {
	if i := strings.LastIndexAny(p, ".["); i > 0 {
		return p[:i]
	}
	return ""
}

// Object is implemented by every kind, core and policy alike.
type Object interface {
	GetTypeMeta() *TypeMeta
	GetMeta() *ObjectMeta
	GetSource() *Source
	// Validate checks the object on its own, without looking at others.
	Validate(v *Validator)
}

// Ref identifies an object by kind, namespace and name.
type Ref struct {
	Kind      string
	Namespace string
	Name      string
}

// String renders `Kind/name` for the default namespace and
// `Kind/namespace/name` otherwise.
func (r Ref) String() string {
	if r.Namespace == "" || r.Namespace == DefaultNamespace {
		return r.Kind + "/" + r.Name
	}
	return r.Kind + "/" + r.Namespace + "/" + r.Name
}

// Less orders refs by kind, namespace, then name.
func (r Ref) Less(o Ref) bool {
	if r.Kind != o.Kind {
		return r.Kind < o.Kind
	}
	if r.Namespace != o.Namespace {
		return r.Namespace < o.Namespace
	}
	return r.Name < o.Name
}

// Compare orders refs as Less does: -1 if r sorts before o, 0 if they are
// equal, +1 after.
func (r Ref) Compare(o Ref) int {
	if c := strings.Compare(r.Kind, o.Kind); c != 0 {
		return c
	}
	if c := strings.Compare(r.Namespace, o.Namespace); c != 0 {
		return c
	}
	return strings.Compare(r.Name, o.Name)
}

// RefOf returns the identity of obj.
func RefOf(obj Object) Ref {
	m := obj.GetMeta()
	ns := m.Namespace
	if ns == "" {
		ns = DefaultNamespace
	}
	return Ref{Kind: obj.GetTypeMeta().Kind, Namespace: ns, Name: m.Name}
}

// SortObjects orders objects by identity, which makes everything that is
// derived from them deterministic.
func SortObjects(objs []Object) {
	slices.SortStableFunc(objs, func(a, b Object) int { return RefOf(a).Compare(RefOf(b)) })
}

// Base is embedded by every kind; it carries the envelope and the source.
type Base struct {
	TypeMeta `yaml:",inline"`
	Metadata ObjectMeta `yaml:"metadata"`
	Src      Source     `yaml:"-"`
}

// GetTypeMeta implements Object.
func (b *Base) GetTypeMeta() *TypeMeta { return &b.TypeMeta }

// GetMeta implements Object.
func (b *Base) GetMeta() *ObjectMeta { return &b.Metadata }

// GetSource implements Object.
func (b *Base) GetSource() *Source { return &b.Src }

// LocalRef names an object of a known kind; the namespace defaults to the
// referring object's.
type LocalRef struct {
	// Name of the referenced object.
	Name string `yaml:"name"`
	// Namespace of the referenced object; defaults to the referrer's.
	Namespace string `yaml:"namespace,omitempty"`
}

// Resolve turns the reference into a Ref of kind, defaulting the namespace.
func (l LocalRef) Resolve(kind, fromNamespace string) Ref {
	ns := l.Namespace
	if ns == "" {
		ns = fromNamespace
	}
	if ns == "" {
		ns = DefaultNamespace
	}
	return Ref{Kind: kind, Namespace: ns, Name: l.Name}
}

// Validator collects the violations of one object, turning field paths into
// lines through the object's Source.
type Validator struct {
	obj Object
	out *Violations
}

// NewValidator returns a validator for obj that appends to out.
func NewValidator(obj Object, out *Violations) *Validator {
	return &Validator{obj: obj, out: out}
}

// Errorf records a violation at the field path.
func (v *Validator) Errorf(path, format string, args ...any) {
	src := v.obj.GetSource()
	*v.out = append(*v.out, Violation{
		File:   src.File,
		Line:   src.LineOf(path),
		Object: RefOf(v.obj).String(),
		Field:  path,
		Msg:    fmt.Sprintf(format, args...),
	})
}

// Has reports whether the field path was written in the source.
func (v *Validator) Has(path string) bool {
	_, ok := v.obj.GetSource().Fields[path]
	return ok
}
