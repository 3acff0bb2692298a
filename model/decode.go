package model

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	yaml "go.yaml.in/yaml/v3"
)

// Scheme knows every kind tollgate can decode.
type Scheme struct {
	kinds map[string]func() Object
}

// NewScheme returns a scheme with the core kinds (Gateway, Backend,
// HTTPRoute) registered.
func NewScheme() *Scheme {
	s := &Scheme{kinds: map[string]func() Object{}}
	s.Register(KindGateway, func() Object { return &Gateway{} })
	s.Register(KindBackend, func() Object { return &Backend{} })
	s.Register(KindHTTPRoute, func() Object { return &HTTPRoute{} })
	return s
}

// Register adds a kind. Registering a kind twice panics: it is a programming
// error, not an input error.
func (s *Scheme) Register(kind string, newObj func() Object) {
	if _, dup := s.kinds[kind]; dup {
		panic("model: kind registered twice: " + kind)
	}
	s.kinds[kind] = newObj
}

// Kinds lists the registered kinds in order.
func (s *Scheme) Kinds() []string {
	out := make([]string, 0, len(s.kinds))
	for k := range s.kinds {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// New returns an empty object of kind, and whether kind is registered: for
// tools that walk the Go types of every kind (the JSON Schema generator,
// policies/jsonschema).
func (s *Scheme) New(kind string) (Object, bool) {
	newObj, ok := s.kinds[kind]
	if !ok {
		return nil, false
	}
	return newObj(), true
}

// Decoder is something a field type can implement to decode itself from a
// YAML scalar (durations, enums with aliases and so on).
type scalarDecoder interface {
	DecodeScalar(value string) error
}

// MaxFileSize bounds one policy file (or API request body). Real policy
// sets are far smaller; a bigger file is a mistake or an attack, and
// decoding it would cost seconds and gigabytes.
const MaxFileSize = 4 << 20

var (
	yamlLineRE      = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)
	unknownAnchorRE = regexp.MustCompile(`unknown anchor '([^']*)' referenced`)
)

// scanText finds what the YAML reader would stop at without saying where:
// a UTF-16 or UTF-32 file, bytes that are not UTF-8, and control characters
// (NUL and the like). It reports the first with its line and column.
func scanText(file string, data []byte) (Violation, bool) {
	for _, bom := range []struct {
		mark []byte
		enc  string
	}{
		{[]byte{0x00, 0x00, 0xFE, 0xFF}, "UTF-32"}, {[]byte{0xFF, 0xFE, 0x00, 0x00}, "UTF-32"},
		{[]byte{0xFE, 0xFF}, "UTF-16"}, {[]byte{0xFF, 0xFE}, "UTF-16"},
	} {
		if bytes.HasPrefix(data, bom.mark) {
			return Violation{File: file, Line: 1, Msg: fmt.Sprintf("invalid YAML: the file is %s (it starts with a byte-order mark): save it as UTF-8", bom.enc)}, true
		}
	}
	line, col := 1, 1
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			return Violation{File: file, Line: line, Msg: fmt.Sprintf("invalid YAML: byte 0x%02x at column %d is not UTF-8: save the file as UTF-8", data[i], col)}, true
		case r == '\n':
			line, col = line+1, 0
		case r == '\t' || r == '\r' || r == 0x85:
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f):
			return Violation{File: file, Line: line, Msg: fmt.Sprintf("invalid YAML: control character %U at column %d: write it as an escape in a double-quoted string (\"\\x%02x\") or remove it", r, col, r)}, true
		}
		i += size
		col++
	}
	return Violation{}, false
}

// aliasLine is the line of the first use of *name, for the reader's
// "unknown anchor" error, which has none.
func aliasLine(data []byte, name string) int {
	for i := 0; ; {
		j := bytes.Index(data[i:], []byte("*"+name))
		if j < 0 {
			return 0
		}
		end := i + j + 1 + len(name)
		if end == len(data) || bytes.IndexByte([]byte(" \t\r\n,]}"), data[end]) >= 0 {
			return 1 + bytes.Count(data[:i+j], []byte("\n"))
		}
		i = end
	}
}

// Decode reads every YAML document in data. It reports every violation it
// can find (unknown fields, wrong types, bad envelopes, per-object
// validation), each with file and line; a syntax error stops the file, since
// nothing after it can be trusted.
func (s *Scheme) Decode(file string, data []byte) ([]Object, Violations) {
	var (
		objs []Object
		errs Violations
	)
	if len(data) > MaxFileSize {
		return nil, Violations{{File: file, Msg: fmt.Sprintf("is %d bytes, more than the %d bytes (%d MiB) a policy file may hold: split it into several files", len(data), MaxFileSize, MaxFileSize>>20)}}
	}
	if v, bad := scanText(file, data); bad {
		return nil, Violations{v}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			v := Violation{File: file, Msg: "invalid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}
			if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
				v.Line, _ = strconv.Atoi(m[1])
				v.Msg = "invalid YAML: " + m[2]
			} else if m := unknownAnchorRE.FindStringSubmatch(err.Error()); m != nil {
				v.Line = aliasLine(data, m[1])
			}
			errs = append(errs, v)
			break
		}
		if len(doc.Content) == 0 || isNull(doc.Content[0]) {
			continue // an empty document, e.g. after a trailing '---'
		}
		obj, verrs := s.decodeDocument(file, doc.Content[0])
		errs = append(errs, verrs...)
		if obj != nil {
			objs = append(objs, obj)
		}
	}
	return objs, errs
}

// DecodeNode decodes one document that is already parsed: the API parses
// a request body, drops the metadata the server manages and decodes the
// rest, so that violations keep the lines of the body as it was sent.
func (s *Scheme) DecodeNode(file string, root *yaml.Node) (Object, Violations) {
	return s.decodeDocument(file, root)
}

func (s *Scheme) decodeDocument(file string, root *yaml.Node) (Object, Violations) {
	var errs Violations
	fail := func(line int, field, format string, args ...any) {
		errs = append(errs, Violation{File: file, Line: line, Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	root = resolveAlias(root)
	if root.Kind != yaml.MappingNode {
		fail(root.Line, "", "each document must be a mapping with apiVersion, kind, metadata and spec")
		return nil, errs
	}
	var kindNode, apiNode *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		switch resolveAlias(root.Content[i]).Value {
		case "kind":
			kindNode = resolveAlias(root.Content[i+1])
		case "apiVersion":
			apiNode = resolveAlias(root.Content[i+1])
		}
	}
	if apiNode == nil {
		fail(root.Line, "apiVersion", "is required: set it to %q", APIVersion)
	} else if apiNode.Value != APIVersion {
		fail(apiNode.Line, "apiVersion", "%q is not supported: use %q", apiNode.Value, APIVersion)
	}
	if kindNode == nil {
		fail(root.Line, "kind", "is required: one of %s", strings.Join(s.Kinds(), ", "))
		return nil, errs
	}
	newObj, ok := s.kinds[kindNode.Value]
	if !ok {
		fail(kindNode.Line, "kind", "%q is not a known kind: use one of %s", kindNode.Value, strings.Join(s.Kinds(), ", "))
		return nil, errs
	}
	if len(errs) > 0 {
		return nil, errs
	}
	obj := newObj()
	src := obj.GetSource()
	*src = Source{File: file, Line: root.Line, Fields: map[string]int{}}
	d := &nodeDecoder{src: src}
	d.decode(root, reflect.ValueOf(obj).Elem(), "")
	name := obj.GetMeta().Name
	if name == "" && !overlapsAny("metadata.name", d.errs) {
		d.errs = append(d.errs, pathError{path: "metadata.name", line: src.LineOf("metadata"), msg: "is required"})
	}
	object := kindNode.Value + "/" + name
	if ns := obj.GetMeta().Namespace; ns != "" && ns != DefaultNamespace {
		object = kindNode.Value + "/" + ns + "/" + name
	}
	for _, e := range d.errs {
		errs = append(errs, Violation{File: file, Line: e.line, Object: object, Field: e.path, Msg: e.msg})
	}
	// Validate even when decoding failed, so that one pass reports every
	// problem; but drop what validation says about fields that failed to
	// decode (their zero value would only add "is required" noise).
	var semantic Violations
	validateMeta(NewValidator(obj, &semantic), obj.GetMeta())
	obj.Validate(NewValidator(obj, &semantic))
	for _, v := range semantic {
		if !overlapsAny(v.Field, d.errs) {
			errs = append(errs, v)
		}
	}
	if len(errs) > maxViolationsPerDocument {
		more := len(errs) - maxViolationsPerDocument
		errs = append(errs[:maxViolationsPerDocument], Violation{File: file, Line: root.Line, Object: object,
			Msg: fmt.Sprintf("and %d more violations in this document", more)})
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return obj, nil
}

// overlapsAny reports whether path is, contains or lies under a path that
// failed to decode.
func overlapsAny(path string, failed []pathError) bool {
	for _, f := range failed {
		if within(path, f.path) || within(f.path, path) {
			return true
		}
	}
	return false
}

func within(path, ancestor string) bool {
	if ancestor == "" || path == ancestor {
		return true
	}
	if !strings.HasPrefix(path, ancestor) {
		return false
	}
	next := path[len(ancestor)]
	return next == '.' || next == '['
}

type pathError struct {
	path string
	line int
	msg  string
}

// nodeDecoder decodes a yaml.Node into a Go value strictly: unknown fields,
// duplicate keys and type mismatches are all collected, with their paths.
type nodeDecoder struct {
	src    *Source
	errs   []pathError
	visits int
}

// maxNodesPerDocument bounds the values one document may decode to, far
// above any real policy (a 10,000-route file has about 300,000).
const maxNodesPerDocument = 1_000_000

func (d *nodeDecoder) fail(n *yaml.Node, path, format string, args ...any) {
	if len(d.errs) >= maxViolationsPerDocument {
		return
	}
	d.errs = append(d.errs, pathError{path: path, line: n.Line, msg: fmt.Sprintf(format, args...)})
}

// maxViolationsPerDocument caps what one document reports: past a hundred,
// more lines help nobody, and a hostile document could otherwise make
// tollgate produce millions.
const maxViolationsPerDocument = 100

func resolveAlias(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!str":
			return fmt.Sprintf("string %q", n.Value)
		case "!!int":
			return "number " + n.Value
		case "!!float":
			return "number " + n.Value
		case "!!bool":
			return "boolean " + n.Value
		}
		return fmt.Sprintf("%q", n.Value)
	}
	return "an unexpected value"
}

var scalarDecoderType = reflect.TypeOf((*scalarDecoder)(nil)).Elem()

func (d *nodeDecoder) decode(n *yaml.Node, v reflect.Value, path string) {
	n = resolveAlias(n)
	// Aliases can make a small document expand enormously (each level of
	// aliases multiplies the one below); refuse before that costs real
	// time and memory.
	if d.visits++; d.visits > maxNodesPerDocument {
		if d.visits == maxNodesPerDocument+1 {
			d.fail(n, path, "the document expands to more than %d values through aliases: write it out or use fewer nested aliases", maxNodesPerDocument)
		}
		return
	}
	if path != "" {
		if _, seen := d.src.Fields[path]; !seen {
			d.src.Fields[path] = n.Line
		}
	}
	if isNull(n) {
		return // absent and null are the same: the zero value
	}
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.decode(n, v.Elem(), path)
		return
	}
	if v.CanAddr() && v.Addr().Type().Implements(scalarDecoderType) {
		if n.Kind != yaml.ScalarNode {
			d.fail(n, path, "must be a string, got %s", describe(n))
			return
		}
		if err := v.Addr().Interface().(scalarDecoder).DecodeScalar(n.Value); err != nil {
			d.fail(n, path, "%v", err)
		}
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		d.decodeStruct(n, v, path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.fail(n, path, "must be a list, got %s", describe(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, c := range n.Content {
			d.decode(c, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
		v.Set(s)
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			d.fail(n, path, "must be a mapping, got %s", describe(n))
			return
		}
		m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := resolveAlias(n.Content[i]), n.Content[i+1]
			kp := join(path, k.Value)
			if k.Kind != yaml.ScalarNode {
				d.fail(k, path, "keys must be strings")
				continue
			}
			if m.MapIndex(reflect.ValueOf(k.Value)).IsValid() {
				d.fail(k, kp, "is set twice")
				continue
			}
			ev := reflect.New(v.Type().Elem()).Elem()
			d.decode(val, ev, kp)
			m.SetMapIndex(reflect.ValueOf(k.Value).Convert(v.Type().Key()), ev)
		}
		v.Set(m)
	case reflect.String:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
			d.fail(n, path, "must be a string, got %s", describe(n))
			return
		}
		v.SetString(n.Value)
	case reflect.Bool:
		var b bool
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" || n.Decode(&b) != nil {
			d.fail(n, path, "must be true or false, got %s", describe(n))
			return
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int32, reflect.Int64, reflect.Uint32, reflect.Uint64, reflect.Uint16:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
			d.fail(n, path, "must be an integer, got %s", describe(n))
			return
		}
		var i int64
		if err := n.Decode(&i); err != nil {
			var u uint64
			if n.Decode(&u) == nil {
				d.fail(n, path, "integer %s is out of range", n.Value)
			} else {
				d.fail(n, path, "must be an integer, got %q", n.Value)
			}
			return
		}
		if overflows(v, i) {
			d.fail(n, path, "integer %s is out of range", n.Value)
			return
		}
		if v.CanUint() {
			v.SetUint(uint64(i))
		} else {
			v.SetInt(i)
		}
	case reflect.Float64:
		if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!float" && n.ShortTag() != "!!int") {
			d.fail(n, path, "must be a number, got %s", describe(n))
			return
		}
		f, err := strconv.ParseFloat(n.Value, 64)
		if err != nil {
			d.fail(n, path, "number %s is not valid", n.Value)
			return
		}
		v.SetFloat(f)
	default:
		panic(fmt.Sprintf("model: cannot decode into %s", v.Type()))
	}
}

func overflows(v reflect.Value, i int64) bool {
	switch v.Kind() {
	case reflect.Uint16:
		return i < 0 || i > math.MaxUint16
	case reflect.Uint32:
		return i < 0 || i > math.MaxUint32
	case reflect.Uint64:
		return i < 0
	case reflect.Int32:
		return i < math.MinInt32 || i > math.MaxInt32
	}
	return false
}

// field is a struct field reachable from a YAML key (through inline structs).
type field struct {
	index []int
}

var fieldCache sync.Map // reflect.Type → map[string]field

func fieldsOf(t reflect.Type) map[string]field {
	if f, ok := fieldCache.Load(t); ok {
		return f.(map[string]field)
	}
	out := map[string]field{}
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		tag := sf.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" || !sf.IsExported() {
			continue
		}
		if strings.Contains(opts, "inline") {
			for k, f := range fieldsOf(sf.Type) {
				out[k] = field{index: append([]int{i}, f.index...)}
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(sf.Name[:1]) + sf.Name[1:]
		}
		out[name] = field{index: []int{i}}
	}
	fieldCache.Store(t, out)
	return out
}

func (d *nodeDecoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "must be a mapping, got %s", describe(n))
		return
	}
	fields := fieldsOf(v.Type())
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := resolveAlias(n.Content[i]), n.Content[i+1]
		kp := join(path, k.Value)
		if k.Kind != yaml.ScalarNode {
			d.fail(k, path, "keys must be strings")
			continue
		}
		if seen[k.Value] {
			d.fail(k, kp, "is set twice")
			continue
		}
		seen[k.Value] = true
		f, ok := fields[k.Value]
		if !ok {
			// Past the cap nothing more is reported: spend no time on a
			// suggestion nobody will read (a hostile file may hold millions
			// of unknown keys).
			if len(d.errs) < maxViolationsPerDocument {
				d.fail(k, kp, "unknown field %q%s", k.Value, suggest(k.Value, fields))
			}
			continue
		}
		d.src.Fields[kp] = k.Line
		d.decode(val, v.FieldByIndex(f.index), kp)
	}
}

// suggest names the closest known field, which turns most typos into a
// one-glance fix.
func suggest(key string, fields map[string]field) string {
	suggestions.Add(1)
	best, bestDist := "", 3
	names := make([]string, 0, len(fields))
	for k := range fields {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if dist := levenshtein(strings.ToLower(key), strings.ToLower(k)); dist < bestDist {
			best, bestDist = k, dist
		}
	}
	if best == "" {
		return " (known fields: " + strings.Join(names, ", ") + ")"
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// suggestions counts suggest calls, for the test that a flood of unknown
// keys costs no more than the violations reported.
var suggestions atomic.Int64

func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
