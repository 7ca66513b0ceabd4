package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Loaded is a validated configuration.
type Loaded struct {
	Config
}

// LoadStackFile reads stacks/Pulumi.<env>.yaml, checks and validates every
// `simlab:` key, and returns all problems at once (as *Errors).
func LoadStackFile(path string) (*Loaded, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading stack file: %w", err)
	}
	return ParseStackFile(path, data)
}

// ParseStackFile is LoadStackFile on bytes already read; name is used in messages.
func ParseStackFile(name string, data []byte) (*Loaded, error) {
	errs := &Errors{File: name}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("%s: not valid YAML: %w", name, err)
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s: a stack file must be a YAML mapping with a `config:` key", name)
	}
	root := doc.Content[0]
	raw := map[string]any{}
	lines := map[string]int{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value != "config" {
			continue // encryptionsalt, secretsprovider, environment, ...
		}
		cfg := root.Content[i+1]
		if cfg.Kind != yaml.MappingNode {
			return nil, fmt.Errorf("%s:%d: `config` must be a mapping", name, cfg.Line)
		}
		for j := 0; j+1 < len(cfg.Content); j += 2 {
			k, v := cfg.Content[j], cfg.Content[j+1]
			ns, key, ok := strings.Cut(k.Value, ":")
			if !ok || ns != Namespace {
				continue // other providers' config is theirs to check
			}
			full := Namespace + ":" + key
			lines[full] = k.Line
			val, err := nodeValue(full, v, lines)
			if err != nil {
				errs.add(full, v.Line, "%v", err)
				continue
			}
			raw[key] = val
		}
	}
	return build(raw, lines, errs)
}

// Engine is what the program reads its config through: *pulumi.Context
// satisfies it, under `pulumi up`, the Automation API's inline programs and
// the mock engine alike.
type Engine interface {
	// GetConfig returns the value of a "namespace:key" config key.
	GetConfig(key string) (string, bool)
}

// FromEngine builds the configuration from the config the Pulumi engine gave
// the program. The SDK offers no way to list config keys, so it asks for every
// key Config has; a top-level key it does not know (a typo such as
// simlab:workerz) is reported when the engine also passed the whole map in
// the environment (PULUMI_CONFIG, as `pulumi up` does for a compiled program),
// and always by `simlab validate` and the stack-file tests.
func FromEngine(e Engine) (*Loaded, error) {
	values := map[string]string{}
	for key := range jsonFields(reflect.TypeOf(Config{})) {
		if v, ok := e.GetConfig(Namespace + ":" + key); ok {
			values[Namespace+":"+key] = v
		}
	}
	if s := os.Getenv("PULUMI_CONFIG"); s != "" {
		var env map[string]string
		if err := json.Unmarshal([]byte(s), &env); err != nil {
			return nil, fmt.Errorf("reading PULUMI_CONFIG: %w", err)
		}
		for k, v := range env {
			if _, seen := values[k]; !seen {
				values[k] = v
			}
		}
	}
	return FromPulumi(values)
}

// FromPulumi builds the configuration from the engine's config map
// ("simlab:key" -> value, objects as JSON); keys of other namespaces are
// ignored.
func FromPulumi(values map[string]string) (*Loaded, error) {
	errs := &Errors{}
	raw := map[string]any{}
	fields := jsonFields(reflect.TypeOf(Config{}))
	for k, v := range values {
		ns, key, ok := strings.Cut(k, ":")
		if !ok || ns != Namespace {
			continue
		}
		f, known := fields[key]
		if !known {
			raw[key] = v // reported as unknown by checkShape
			continue
		}
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch ft.Kind() {
		case reflect.String:
			raw[key] = v
		case reflect.Int:
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				errs.add(k, 0, "must be an integer, got %q", v)
				continue
			}
			raw[key] = n
		case reflect.Bool:
			b, err := strconv.ParseBool(v)
			if err != nil {
				errs.add(k, 0, "must be true or false, got %q", v)
				continue
			}
			raw[key] = b
		default:
			var x any
			if err := json.Unmarshal([]byte(v), &x); err != nil {
				errs.add(k, 0, "must be a structured value (object or list), got %q", v)
				continue
			}
			raw[key] = x
		}
	}
	return build(raw, map[string]int{}, errs)
}

// build checks shape, decodes over defaults and validates.
func build(raw map[string]any, lines map[string]int, errs *Errors) (*Loaded, error) {
	// Shape-check everything against the Go types, so each error names its full key.
	cleaned := map[string]any{}
	if v, ok := checkShape(Namespace, raw, reflect.TypeOf(Config{}), lines, errs); ok {
		cleaned = v.(map[string]any)
	}
	cfg := Default()
	// Provider blocks get their own defaults before the stack's values land on them.
	if _, ok := cleaned["libvirt"]; ok {
		cfg.Libvirt = defaultLibvirt()
	}
	if _, ok := cleaned["metal"]; ok {
		cfg.Metal = defaultMetal()
	}
	buf, err := json.Marshal(cleaned)
	if err != nil {
		return nil, fmt.Errorf("re-encoding config: %w", err)
	}
	if err := json.Unmarshal(buf, &cfg); err != nil {
		return nil, fmt.Errorf("decoding config: %w", err)
	}
	set := explicitKeys(cleaned)
	cfg.resolveCounts(set)
	cfg.validate(set, lines, errs)
	l := &Loaded{Config: cfg}
	return l, errs.err()
}

// explicitKeys lists the dotted keys the stack set (e.g. "workers.count").
func explicitKeys(m map[string]any) map[string]bool {
	out := map[string]bool{}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		out[prefix] = true
		if mm, ok := v.(map[string]any); ok {
			for k, sub := range mm {
				walk(prefix+"."+k, sub)
			}
		}
	}
	for k, v := range m {
		walk(k, v)
	}
	return out
}

// nodeValue converts a YAML node to plain values, recording each key's line.
func nodeValue(path string, n *yaml.Node, lines map[string]int) (any, error) {
	switch n.Kind {
	case yaml.AliasNode:
		return nodeValue(path, n.Alias, lines)
	case yaml.MappingNode:
		m := map[string]any{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i].Value
			sub := path + "." + k
			if _, dup := m[k]; dup {
				return nil, fmt.Errorf("key %q appears twice (line %d)", k, n.Content[i].Line)
			}
			lines[sub] = n.Content[i].Line
			v, err := nodeValue(sub, n.Content[i+1], lines)
			if err != nil {
				return nil, err
			}
			m[k] = v
		}
		return m, nil
	case yaml.SequenceNode:
		l := make([]any, 0, len(n.Content))
		for i, c := range n.Content {
			sub := fmt.Sprintf("%s[%d]", path, i)
			lines[sub] = c.Line
			v, err := nodeValue(sub, c, lines)
			if err != nil {
				return nil, err
			}
			l = append(l, v)
		}
		return l, nil
	case yaml.ScalarNode:
		var v any
		if err := n.Decode(&v); err != nil {
			return nil, err
		}
		switch x := v.(type) {
		case int:
			return float64(x), nil
		case int64:
			return float64(x), nil
		case uint64:
			return float64(x), nil
		}
		return v, nil
	}
	return nil, fmt.Errorf("unsupported YAML node")
}
