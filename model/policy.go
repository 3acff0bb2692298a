package model

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"
)

// TargetRef attaches a policy to a Gateway, Backend or HTTPRoute.
type TargetRef struct {
	// Kind is Gateway, Backend or HTTPRoute; which ones a policy kind
	// accepts is part of its definition.
	Kind string `yaml:"kind"`
	// Name of the target.
	Name string `yaml:"name"`
	// Namespace of the target; defaults to the policy's.
	Namespace string `yaml:"namespace,omitempty"`
}

// Ref resolves the target to an object identity.
func (t TargetRef) Ref(fromNamespace string) Ref {
	return LocalRef{Name: t.Name, Namespace: t.Namespace}.Resolve(t.Kind, fromNamespace)
}

// Policy is implemented by every policy kind.
type Policy interface {
	Object
	// Targets are the objects the policy attaches to.
	Targets() []TargetRef
}

// SecretSource says where tollgate reads a secret or a file: exactly one of
// File (relative paths are relative to the policy file's directory) or Env.
type SecretSource struct {
	// File is a path on tollgate's host.
	File string `yaml:"file,omitempty"`
	// Env is the name of an environment variable of tollgate's process.
	Env string `yaml:"env,omitempty"`
}

// IsZero reports whether no source is set.
func (s SecretSource) IsZero() bool { return s.File == "" && s.Env == "" }

// Validate checks that exactly one source is set.
func (s SecretSource) Validate(v *Validator, path string, allowEnv bool) {
	switch {
	case s.File == "" && s.Env == "" && allowEnv:
		v.Errorf(path, "set file or env")
	case s.File == "" && s.Env == "":
		v.Errorf(path, "set file")
	case s.File != "" && s.Env != "":
		v.Errorf(path, "set file or env, not both")
	case s.Env != "" && !allowEnv:
		v.Errorf(path+".env", "is not supported here: use file")
	}
}

// MaterialKey identifies what a SecretSource of obj refers to: the absolute
// (cleaned) file path, or the environment variable.
func MaterialKey(obj Object, s SecretSource) string {
	if s.Env != "" {
		return "env:" + s.Env
	}
	p := s.File
	if !filepath.IsAbs(p) {
		base := "."
		if f := obj.GetSource().File; f != "" {
			base = filepath.Dir(f)
		}
		p = filepath.Join(base, p)
	}
	if abs, err := filepath.Abs(p); err == nil {
		p = abs
	}
	return "file:" + filepath.Clean(p)
}

// MaterialPath returns the file path of a "file:" key, or "".
func MaterialPath(key string) string {
	p, ok := strings.CutPrefix(key, "file:")
	if !ok {
		return ""
	}
	return p
}

// MaterialUser is a policy that reads files or environment variables: the
// store loads them before lowering, and watches the files.
type MaterialUser interface {
	Materials() []SecretSource
}

// Material is the content of one file or variable, or why it could not be
// read. Values are secrets: they never appear in messages.
type Material struct {
	Data []byte
	Err  error
}

// Materials maps MaterialKey to content.
type Materials map[string]Material

// Describe names a source in messages without revealing its content.
func (s SecretSource) Describe() string {
	if s.Env != "" {
		return "environment variable " + s.Env
	}
	return s.File
}

// Condition is a status condition on an object, for the status API.
type Condition struct {
	Object  string `json:"object"`
	Type    string `json:"type"`   // Accepted, ResolvedRefs, Programmed
	Status  bool   `json:"status"` // true when the condition holds
	Reason  string `json:"reason"` // CamelCase
	Message string `json:"message"`
}

// SortConditions orders conditions by object and type.
func SortConditions(cs []Condition) {
	sort.SliceStable(cs, func(i, j int) bool {
		if cs[i].Object != cs[j].Object {
			return cs[i].Object < cs[j].Object
		}
		return cs[i].Type < cs[j].Type
	})
}

// ScopeError is the message for a policy attached to a kind it does not
// support, with the reason the scope is restricted.
func ScopeError(kind, target string, allowed []string, why string) string {
	msg := fmt.Sprintf("%s cannot target a %s: use %s", kind, target, strings.Join(allowed, " or "))
	if why != "" {
		msg += " (" + why + ")"
	}
	return msg
}

// ValidateTargetRefs checks the targetRefs every policy has.
func ValidateTargetRefs(v *Validator, refs []TargetRef) {
	if len(refs) == 0 {
		v.Errorf("spec.targetRefs", "at least one target is required")
	}
	for i, t := range refs {
		p := fmt.Sprintf("spec.targetRefs[%d]", i)
		if t.Kind == "" {
			v.Errorf(p+".kind", "is required")
		}
		if t.Name == "" {
			v.Errorf(p+".name", "is required")
		}
	}
}
