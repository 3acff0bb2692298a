package model

import (
	"fmt"
	"regexp"
	"regexp/syntax"
	"strings"
)

// Model names are what providers accept: letters, digits and ._:/@+-
// (Bedrock ids carry ':' and '.', Azure deployments '-', Vertex '@',
// fine-tunes ':'). Anything else (quotes, spaces, control characters)
// would never match a real request and is refused rather than ignored.
var modelNameRE = regexp.MustCompile(`^[A-Za-z0-9._:/@+-]{1,256}$`)

// ValidModelName reports whether name can be a model name.
func ValidModelName(name string) bool { return modelNameRE.MatchString(name) }

// validateModelMatch checks a model condition at path p.
func validateModelMatch(v *Validator, p string, m ModelMatch) {
	switch m.Type {
	case "", MatchExact:
		if !ValidModelName(m.Value) {
			v.Errorf(p+".value", "%q is not a model name: use letters, digits and . _ : / @ + - (at most 256)", m.Value)
		}
	case MatchPrefix:
		if m.Value == "" {
			v.Errorf(p+".value", "an empty prefix matches every model: leave the model condition out instead")
		} else if !ValidModelName(m.Value) {
			v.Errorf(p+".value", "%q is not the start of a model name: use letters, digits and . _ : / @ + -", m.Value)
		}
	case MatchRegularExpression:
		if msg := regexProblem(m.Value); msg != "" {
			v.Errorf(p+".value", "%s", msg)
		}
	default:
		v.Errorf(p+".type", "%q is not supported: use Exact, Prefix or RegularExpression", m.Type)
	}
}

// ModelRegex is an RE2 pattern matching the whole of the model names m
// matches.
func (m ModelMatch) ModelRegex() string {
	switch m.Type {
	case MatchPrefix:
		return regexp.QuoteMeta(m.Value) + ".*"
	case MatchRegularExpression:
		return "(?:" + m.Value + ")"
	}
	return regexp.QuoteMeta(m.Value)
}

// String renders the condition for messages.
func (m ModelMatch) String() string {
	t := m.Type
	if t == "" {
		t = MatchExact
	}
	return fmt.Sprintf("%s %q", t, m.Value)
}

func (b *Backend) validateModelMap(v *Validator) {
	seen := map[string]int{}
	for i, mm := range b.Spec.ModelMap {
		p := fmt.Sprintf("spec.modelMap[%d]", i)
		if !ValidModelName(mm.From) {
			v.Errorf(p+".from", "%q is not a model name: use letters, digits and . _ : / @ + - (at most 256)", mm.From)
		}
		if !ValidModelName(mm.To) {
			v.Errorf(p+".to", "%q is not a model name: use letters, digits and . _ : / @ + - (at most 256)", mm.To)
		}
		if j, dup := seen[mm.From]; dup {
			v.Errorf(p+".from", "%q is already mapped at spec.modelMap[%d]: a model has one name per backend", mm.From, j)
		}
		seen[mm.From] = i
		if mm.From == mm.To && mm.From != "" {
			v.Errorf(p+".to", "%q maps to itself: remove the entry", mm.To)
		}
	}
	if b.EffectiveSchema() == SchemaBedrockConverse {
		for i, mm := range b.Spec.ModelMap {
			if strings.Contains(mm.To, "/") {
				v.Errorf(fmt.Sprintf("spec.modelMap[%d].to", i), "%q: a Bedrock model id goes into the request path, so it cannot contain '/'; use the model's ARN-free id or an inference profile id", mm.To)
			}
		}
	}
}

// PromptLiteral reports whether a prompt pattern is a plain string (with
// (?i), case-insensitive): Envoy then looks for it with a contains
// matcher, which costs no RE2 program at all.
func PromptLiteral(p string) (lit string, fold bool, ok bool) {
	re, err := syntax.Parse(p, syntax.Perl)
	if err != nil {
		return "", false, false
	}
	re = re.Simplify()
	if re.Op != syntax.OpLiteral {
		return "", false, false
	}
	fold = re.Flags&syntax.FoldCase != 0
	lit = string(re.Rune)
	if fold {
		lit = strings.ToLower(lit) // Simplify upper-cases folded runes
	}
	return lit, fold, true
}

// PromptRegex is the whole-value RE2 pattern Envoy matches the prompt
// header with for a pattern that is not a plain string: the pattern
// anywhere in it. Header values hold no newline (the prompt is JSON text),
// so '.' needs no (?s).
func PromptRegex(p string) string { return ".*(?:" + p + ").*" }

// PromptPatternProblem says what is wrong with a prompt deny pattern: not
// RE2, or, as Envoy matches it (PromptRegex), over Envoy's program-size
// limit. Plain strings are always fine.
func PromptPatternProblem(p string) string {
	if _, _, ok := PromptLiteral(p); ok {
		return ""
	}
	if _, err := syntax.Parse(p, syntax.Perl); err != nil {
		return fmt.Sprintf("%q is not an RE2 regular expression: %v", p, err)
	}
	size, err := RegexProgramSize(PromptRegex(p))
	if err != nil {
		return fmt.Sprintf("%q is not an RE2 regular expression: %v", p, err)
	}
	if size > MaxRegexProgramSize {
		return fmt.Sprintf("%q compiles, as Envoy matches it anywhere in the prompt (%s), to an RE2 program of about %d instructions, more than Envoy's limit of %d: split it into plain strings (a plain string, optionally with a leading (?i), is matched without RE2 and has no size limit), or simplify it", p, PromptRegex(p), size, MaxRegexProgramSize)
	}
	return ""
}
