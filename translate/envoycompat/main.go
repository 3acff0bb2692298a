// Command envoycompat decodes tollgate's xDS resources with the Envoy API of
// one Envoy release and reports everything that release would not
// understand: unknown fields (at any depth, inside every
// google.protobuf.Any too), enum values it does not define, and Any or
// resource type URLs it has no message for.
//
// # Why a separate module
//
// tollgate compiles against one go-control-plane Envoy API (the newest
// supported release). A field that an older Envoy does not know passes every
// proto check of that API, so the main module alone cannot tell whether its
// output still suits Envoy 1.37. One Go build cannot hold two versions of a
// module, so this directory is a module of its own (excluded from tollgate's)
// with one modfile per supported release: v1.37.mod/v1.37.sum … v1.40.mod/
// v1.40.sum. The set of API packages differs between releases, so each
// release has a generated blank-import file, imports_v1_NN.go, selected by
// the build tag envoy1_NN. It imports the proto packages of tollgate's
// translate import closure that the release has: every type tollgate can
// emit must be linked into translate, so this covers all of them, and a
// type the release lacks stays unregistered and is reported. Importing
// every package of the envoy module (~440-490 per release) would check the
// same output at ~3 minutes of cold build per release instead of 15-60
// seconds (see gen.sh, run by go generate).
//
// The main module's TestEnvoyAPICompat (translate/envoycompat_test.go)
// builds one checker per release,
//
//	go build -modfile=v1.37.mod -mod=readonly -tags envoy1_37 -o envoycompat-v1.37 .
//
// and feeds it every golden case's and every example's output. A resource
// type or feature that needs a newer Envoy must be declared as a
// translate.Requirement; the test then expects exactly the older releases to
// reject it.
//
// Adding a release: add it to versions in gen.sh and to the test's list,
// run go generate (it needs the module proxy), commit the new files, and add
// the modfile to .ci/run's download loop (it globs v*.mod).
//
// # Protocol
//
// Input, on stdin: one JSON object per line,
//
//	{"gateway": "...", "type_url": "type.googleapis.com/envoy.config.cluster.v3.Cluster", "name": "...", "proto_base64": "..."}
//
// Output, on stdout: one JSON object per problem,
//
//	{"gateway", "name", "type_url", "path", "message", "field_number", "problem"}
//
// where message is the full name of the message the problem is in (so that
// the caller, which knows the newer API, can name an unknown field by its
// number), followed by one summary line {"version", "resources", "anys",
// "problems"}. The exit status is 0 whether or not problems were found, 2 on
// bad input.
package main

//go:generate ./gen.sh

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"
)

// Resource is one input line.
type Resource struct {
	Gateway     string `json:"gateway"`
	TypeURL     string `json:"type_url"`
	Name        string `json:"name"`
	ProtoBase64 string `json:"proto_base64"`
}

// Problem is one thing the release does not understand.
type Problem struct {
	Gateway string `json:"gateway"`
	Name    string `json:"name"`
	TypeURL string `json:"type_url"`
	// Path from the resource to the problem, e.g.
	// cluster_type.typed_config<envoy.extensions.clusters.dns.v3.DnsCluster>.#16
	Path string `json:"path"`
	// Message is the full name of the message holding the problem.
	Message string `json:"message,omitempty"`
	// FieldNumber is set for unknown fields and unknown enum values.
	FieldNumber int32  `json:"field_number,omitempty"`
	Problem     string `json:"problem"`
}

// Summary is the last output line: proof of what was checked.
type Summary struct {
	Version   string `json:"version"`
	Resources int    `json:"resources"`
	Anys      int    `json:"anys"`
	Problems  int    `json:"problems"`
	// Types is how many message types the release registered.
	Types int `json:"types"`
}

func main() {
	if err := run(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "envoycompat:", err)
		os.Exit(2)
	}
}

func run(in io.Reader, out io.Writer) error {
	enc := json.NewEncoder(out)
	sum := Summary{Version: apiVersion, Types: protoregistry.GlobalTypes.NumMessages()}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
	for line := 1; sc.Scan(); line++ {
		if len(strings.TrimSpace(sc.Text())) == 0 {
			continue
		}
		var r Resource
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return fmt.Errorf("line %d: %w", line, err)
		}
		data, err := base64.StdEncoding.DecodeString(r.ProtoBase64)
		if err != nil {
			return fmt.Errorf("line %d: proto_base64: %w", line, err)
		}
		sum.Resources++
		c := &checker{res: r}
		c.resource(data)
		sum.Anys += c.anys
		for _, p := range c.problems {
			if err := enc.Encode(p); err != nil {
				return err
			}
		}
		sum.Problems += len(c.problems)
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return enc.Encode(sum)
}

type checker struct {
	res      Resource
	anys     int
	problems []Problem
}

func (c *checker) report(path string, msg protoreflect.Message, field int32, format string, args ...any) {
	p := Problem{Gateway: c.res.Gateway, Name: c.res.Name, TypeURL: c.res.TypeURL, Path: path, FieldNumber: field, Problem: fmt.Sprintf(format, args...)}
	if msg != nil {
		p.Message = string(msg.Descriptor().FullName())
	}
	c.problems = append(c.problems, p)
}

func (c *checker) resource(data []byte) {
	mt, err := protoregistry.GlobalTypes.FindMessageByURL(c.res.TypeURL)
	if err != nil {
		c.report("", nil, 0, "resource type %s is unknown to Envoy %s", c.res.TypeURL, apiVersion)
		return
	}
	m := mt.New()
	// The default resolver is the global registry: the release's types.
	if err := (proto.UnmarshalOptions{}).Unmarshal(data, m.Interface()); err != nil {
		c.report("", nil, 0, "cannot decode: %v", err)
		return
	}
	c.walk(m, "")
}

// walk checks m and everything below it, in field-number order so that
// reports are stable.
func (c *checker) walk(m protoreflect.Message, path string) {
	if a, ok := m.Interface().(*anypb.Any); ok {
		c.any(a, path)
		return
	}
	for _, f := range unknownFields(m.GetUnknown()) {
		c.report(join(path, fmt.Sprintf("#%d", f)), m, int32(f), "unknown field %d of %s", f, m.Descriptor().FullName())
	}
	var fields []protoreflect.FieldDescriptor
	m.Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		fields = append(fields, fd)
		return true
	})
	sort.Slice(fields, func(i, j int) bool { return fields[i].Number() < fields[j].Number() })
	for _, fd := range fields {
		v := m.Get(fd)
		name := join(path, string(fd.Name()))
		switch {
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				c.value(m, fd, l.Get(i), fmt.Sprintf("%s[%d]", name, i))
			}
		case fd.IsMap():
			mp := v.Map()
			var keys []protoreflect.MapKey
			mp.Range(func(k protoreflect.MapKey, _ protoreflect.Value) bool {
				keys = append(keys, k)
				return true
			})
			sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
			for _, k := range keys {
				c.value(m, fd.MapValue(), mp.Get(k), fmt.Sprintf("%s[%s]", name, k.String()))
			}
		default:
			c.value(m, fd, v, name)
		}
	}
}

// value checks one singular value of field fd of m.
func (c *checker) value(m protoreflect.Message, fd protoreflect.FieldDescriptor, v protoreflect.Value, path string) {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		c.walk(v.Message(), path)
	case protoreflect.EnumKind:
		// Proto3 enums are open: a value the release does not define
		// decodes as a bare number instead of an unknown field.
		if fd.Enum().Values().ByNumber(v.Enum()) == nil {
			c.report(path, m, int32(fd.Number()), "value %d of enum %s is unknown to Envoy %s", v.Enum(), fd.Enum().FullName(), apiVersion)
		}
	}
}

func (c *checker) any(a *anypb.Any, path string) {
	c.anys++
	mt, err := protoregistry.GlobalTypes.FindMessageByURL(a.GetTypeUrl())
	if errors.Is(err, protoregistry.NotFound) {
		c.report(path, a.ProtoReflect(), 0, "type %s is unknown to Envoy %s", a.GetTypeUrl(), apiVersion)
		return
	}
	if err != nil {
		c.report(path, a.ProtoReflect(), 0, "type %s: %v", a.GetTypeUrl(), err)
		return
	}
	inner := mt.New()
	if err := (proto.UnmarshalOptions{}).Unmarshal(a.GetValue(), inner.Interface()); err != nil {
		c.report(path, a.ProtoReflect(), 0, "cannot decode %s: %v", a.GetTypeUrl(), err)
		return
	}
	c.walk(inner, path+"<"+string(inner.Descriptor().FullName())+">")
}

// unknownFields lists the field numbers in raw, in order, once each.
func unknownFields(raw protoreflect.RawFields) []protowire.Number {
	var out []protowire.Number
	seen := map[protowire.Number]bool{}
	for len(raw) > 0 {
		num, _, n := protowire.ConsumeField(raw)
		if n < 0 {
			// Undecodable bytes are unknown too; report them once.
			out = append(out, 0)
			break
		}
		if !seen[num] {
			seen[num] = true
			out = append(out, num)
		}
		raw = raw[n:]
	}
	return out
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}
