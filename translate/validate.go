package translate

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"
)

// ValidateDeep checks m against Envoy's own proto constraints (the
// protoc-gen-validate rules Envoy enforces when it loads config), including
// every message packed in an Any below it, which ValidateAll alone skips.
// An Any whose type is unknown is an error too: Envoy would reject it.
func ValidateDeep(m proto.Message) error {
	var errs []error
	validateDeep(m.ProtoReflect(), string(m.ProtoReflect().Descriptor().FullName()), &errs)
	return errors.Join(errs...)
}

type allValidator interface{ ValidateAll() error }

func validateDeep(m protoreflect.Message, path string, errs *[]error) {
	if v, ok := m.Interface().(allValidator); ok {
		if err := v.ValidateAll(); err != nil {
			*errs = append(*errs, &deepError{path, err})
		}
	}
	walkAnys(m, path, errs)
}

// deepError is one message below a resource that breaks Envoy's
// constraints: path is its proto field path from the resource (starting
// with the resource's full name), err what the message's validation said.
type deepError struct {
	path string
	err  error
}

func (e *deepError) Error() string { return e.path + ": " + e.err.Error() }

func (e *deepError) Unwrap() error { return e.err }

// walkAnys finds every Any below m (ValidateAll has already covered plain
// nested messages) and validates what it carries.
func walkAnys(m protoreflect.Message, path string, errs *[]error) {
	if a, ok := m.Interface().(*anypb.Any); ok {
		inner, err := a.UnmarshalNew()
		if err != nil {
			if errors.Is(err, protoregistry.NotFound) {
				*errs = append(*errs, &deepError{path, fmt.Errorf("unknown type %q", a.GetTypeUrl())})
			} else {
				*errs = append(*errs, &deepError{path, fmt.Errorf("cannot unpack %q: %w", a.GetTypeUrl(), err)})
			}
			return
		}
		validateDeep(inner.ProtoReflect(), path+"<"+string(inner.ProtoReflect().Descriptor().FullName())+">", errs)
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		name := path + "." + string(fd.Name())
		switch {
		case fd.IsList() && fd.Message() != nil:
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				walkAnys(l.Get(i).Message(), fmt.Sprintf("%s[%d]", name, i), errs)
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				walkAnys(mv.Message(), fmt.Sprintf("%s[%s]", name, k.String()), errs)
				return true
			})
		case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
			walkAnys(v.Message(), name, errs)
		}
		return true
	})
}

// Validate checks every resource of every gateway with ValidateDeep. Each
// refusal is a *ResourceError; Locate places them in the policies.
func (o *Output) Validate() error {
	var errs []error
	for _, g := range o.Gateways {
		for _, m := range g.All() {
			if err := ValidateDeep(m); err != nil {
				errs = append(errs, &ResourceError{Gateway: g.Key, Resource: m, Err: err})
			}
		}
		if c := g.RateLimitConfig; c != nil {
			if err := ValidateRateLimitConfig(c); err != nil {
				errs = append(errs, &ResourceError{Gateway: g.Key, Resource: c, Err: err})
			}
		}
	}
	return errors.Join(errs...)
}

// All lists every resource of the gateway.
func (g *GatewayResources) All() []proto.Message {
	var out []proto.Message
	for _, r := range g.Listeners {
		out = append(out, r)
	}
	for _, r := range g.Routes {
		out = append(out, r)
	}
	for _, r := range g.Clusters {
		out = append(out, r)
	}
	for _, r := range g.Endpoints {
		out = append(out, r)
	}
	for _, r := range g.Secrets {
		out = append(out, r)
	}
	return out
}
