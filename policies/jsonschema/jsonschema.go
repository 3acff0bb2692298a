// Package jsonschema generates the JSON Schema of tollgate's policy objects
// (tollgate.schema.json, committed beside this file) from the Go types of
// every kind policies.NewScheme registers, walked the way the model's strict
// decoder reads them: yaml tags, inline structs, '-' skipped, unknown fields
// refused, scalar types (durations, byte sizes) written as strings.
//
// Editors read the schema through the yaml-language-server modeline the
// examples carry:
//
//	# yaml-language-server: $schema=../../policies/jsonschema/tollgate.schema.json
//
// The schema is regenerated with go generate ./policies/jsonschema;
// TestSchemaIsCurrent fails when the committed file is stale.
package jsonschema

//go:generate go run ./gen -o tollgate.schema.json

// FileName is the committed schema's file name, in this package's folder.
const FileName = "tollgate.schema.json"
