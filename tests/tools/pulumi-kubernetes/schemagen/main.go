// Command schemagen writes the two files the Kubernetes provider's command
// embeds but its module zip does not ship: schema-embed.json (schema.json
// with the release version set) and terraform-mapping-embed.json (the
// mapping, compacted). They are what the provider's own `go generate` step
// writes; the build overlays them onto the read-only module cache.
//
//	schemagen -src DIR -out DIR -version 4.25.0
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/pulumi/pulumi/pkg/v3/codegen/schema"
)

func main() {
	src := flag.String("src", "", "the provider's cmd/pulumi-resource-kubernetes directory")
	out := flag.String("out", "", "where to write the generated files")
	version := flag.String("version", "", "the provider's release version, without v (e.g. 4.25.0)")
	flag.Parse()
	if *src == "" || *out == "" || *version == "" {
		fmt.Fprintln(os.Stderr, "usage: schemagen -src DIR -out DIR -version X.Y.Z")
		os.Exit(2)
	}
	if err := run(*src, *out, *version); err != nil {
		fmt.Fprintln(os.Stderr, "schemagen:", err)
		os.Exit(1)
	}
}

func run(src, out, version string) error {
	data, err := os.ReadFile(filepath.Join(src, "schema.json"))
	if err != nil {
		return err
	}
	var spec schema.PackageSpec
	if err := json.Unmarshal(data, &spec); err != nil {
		return fmt.Errorf("schema.json: %w", err)
	}
	spec.Version = version
	if err := writeJSON(filepath.Join(out, "schema-embed.json"), spec); err != nil {
		return err
	}
	data, err = os.ReadFile(filepath.Join(src, "terraform-mapping.json"))
	if err != nil {
		return err
	}
	var mapping any
	if err := json.Unmarshal(data, &mapping); err != nil {
		return fmt.Errorf("terraform-mapping.json: %w", err)
	}
	return writeJSON(filepath.Join(out, "terraform-mapping-embed.json"), mapping)
}

func writeJSON(path string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding %s: %w", filepath.Base(path), err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}
