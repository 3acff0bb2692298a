// Package translatetest helps tests show tollgate's output without its
// secrets.
package translatetest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	awsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/aws/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// Redact returns a copy of m in which every inline data source (keys,
// certificates, API keys) and every inline AWS credential is replaced by a
// short description with a hash prefix, so that goldens show that a value
// is there and when it changes, never the value. It looks inside Anys.
func Redact(m proto.Message) proto.Message {
	c := proto.Clone(m)
	redact(c.ProtoReflect())
	return c
}

func describe(b []byte) string {
	sum := sha256.Sum256(b)
	return fmt.Sprintf("[redacted: %d bytes, sha256 %s…]", len(b), hex.EncodeToString(sum[:4]))
}

func redact(m protoreflect.Message) {
	switch x := m.Interface().(type) {
	case *corev3.DataSource:
		switch s := x.Specifier.(type) {
		case *corev3.DataSource_InlineBytes:
			x.Specifier = &corev3.DataSource_InlineString{InlineString: describe(s.InlineBytes)}
		case *corev3.DataSource_InlineString:
			x.Specifier = &corev3.DataSource_InlineString{InlineString: describe([]byte(s.InlineString))}
		}
		return
	case *awsv3.InlineCredentialProvider:
		x.AccessKeyId = describe([]byte(x.AccessKeyId))
		x.SecretAccessKey = describe([]byte(x.SecretAccessKey))
		if x.SessionToken != "" {
			x.SessionToken = describe([]byte(x.SessionToken))
		}
		return
	case *routev3.DirectResponseAction:
		// tollgate writes these bodies itself; they carry no secret.
		return
	case *anypb.Any:
		inner, err := x.UnmarshalNew()
		if err != nil {
			return
		}
		redact(inner.ProtoReflect())
		_ = x.MarshalFrom(inner)
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Message() != nil:
			for i := 0; i < v.List().Len(); i++ {
				redact(v.List().Get(i).Message())
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				redact(mv.Message())
				return true
			})
		case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
			redact(v.Message())
		}
		return true
	})
}
