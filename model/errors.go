package model

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Violation is one problem found in the policy set. It always names where the
// problem is (file and line when the object came from a file), which object it
// belongs to and which field, so an operator can go straight to it.
type Violation struct {
	File   string `json:"file,omitempty"`
	Line   int    `json:"line,omitempty"`
	Object string `json:"object,omitempty"` // Kind/name or Kind/namespace/name
	Field  string `json:"field,omitempty"`  // spec.rules[0].backendRefs[1].name
	Msg    string `json:"message"`
}

// Error renders the violation as `file:line: Kind/name: field: message`,
// leaving out the parts that are unknown.
func (v Violation) Error() string {
	var b strings.Builder
	if v.File != "" {
		b.WriteString(v.File)
		if v.Line > 0 {
			fmt.Fprintf(&b, ":%d", v.Line)
		}
		b.WriteString(": ")
	}
	if v.Object != "" {
		b.WriteString(v.Object)
		b.WriteString(": ")
	}
	if v.Field != "" {
		b.WriteString(v.Field)
		b.WriteString(": ")
	}
	b.WriteString(v.Msg)
	return b.String()
}

// Violations is every problem found in one pass; it is an error when
// non-empty.
type Violations []Violation

func (vs Violations) Error() string {
	lines := make([]string, len(vs))
	for i, v := range vs {
		lines[i] = v.Error()
	}
	return strings.Join(lines, "\n")
}

// Err returns nil for an empty list so that callers can `return vs.Err()`.
func (vs Violations) Err() error {
	if len(vs) == 0 {
		return nil
	}
	vs.Sort()
	return vs
}

// Sort orders violations by file, line, object and field so that output is
// stable across runs.
func (vs Violations) Sort() {
	sort.SliceStable(vs, func(i, j int) bool {
		a, b := vs[i], vs[j]
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		if a.Object != b.Object {
			return a.Object < b.Object
		}
		if a.Field != b.Field {
			return a.Field < b.Field
		}
		return a.Msg < b.Msg
	})
}

// AsViolations extracts the violation list from err, if it carries one.
func AsViolations(err error) (Violations, bool) {
	var vs Violations
	if errors.As(err, &vs) {
		return vs, true
	}
	var v Violation
	if errors.As(err, &v) {
		return Violations{v}, true
	}
	return nil, false
}
