package jsonschema

import (
	"reflect"

	"github.com/tollgate-dev/tollgate/model"
)

// scalarSchemas are the schemas of the types that decode themselves from a
// YAML scalar (DecodeScalar): what their DecodeScalar accepts.
// TestScalarPatterns runs samples through both, so that a change to one
// shows in the other; the generator refuses a scalar type missing here.
var scalarSchemas = map[reflect.Type]func() *Schema{
	// Duration.DecodeScalar is time.ParseDuration without negative
	// values: "0", or numbers (with an optional fraction) each followed
	// by a unit, ns, us (µs), ms, s, m or h. A YAML integer is read as
	// its text, so 0 is a duration too (and 30 is not: no unit).
	reflect.TypeOf(model.Duration{}): func() *Schema {
		return &Schema{
			Type:                []string{"string", "integer"},
			Pattern:             durationPattern,
			PatternErrorMessage: `a duration such as "30s", "5m" or "1m30s" (units ns, us, ms, s, m, h)`,
			Minimum:             "0",
			Maximum:             "0",
		}
	},
	// ByteSize.DecodeScalar: a whole number of bytes, or one with a
	// binary suffix Ki, Mi or Gi; a YAML integer is read as its text.
	reflect.TypeOf(model.ByteSize{}): func() *Schema {
		return &Schema{
			Type:                []string{"string", "integer"},
			Pattern:             byteSizePattern,
			PatternErrorMessage: `a size in bytes, such as 1048576, or with Ki, Mi or Gi: "512Ki", "32Mi", "1Gi"`,
			Minimum:             "0",
			Maximum:             "9223372036854775808",
		}
	},
}

const (
	durationPattern = `^\+?(0|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+)$`
	byteSizePattern = `^[0-9]+(Ki|Mi|Gi)?$`
)
