// Command gen writes tollgate's JSON Schema (go generate ./policies/jsonschema).
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/tollgate-dev/tollgate/policies/jsonschema"
)

func main() {
	out := flag.String("o", jsonschema.FileName, "file to write")
	flag.Parse()
	if err := run(*out); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func run(out string) error {
	root, err := jsonschema.ModuleRoot(".")
	if err != nil {
		return err
	}
	data, err := jsonschema.Generate(root)
	if err != nil {
		return err
	}
	return os.WriteFile(out, data, 0o644)
}
