package config

import (
	"fmt"
	"math"
	"reflect"
	"sort"
	"strings"
)

// secretPlaceholder stands for a `secure:` value in a stack file, which only
// the Pulumi CLI can decrypt.
const secretPlaceholder = "<secret>"

// checkShape walks raw (decoded YAML/JSON: map[string]any, []any, string,
// float64, bool, nil) against the Go type t and reports unknown keys and type
// mismatches. It returns a cleaned copy holding only what is well-typed, so
// decoding it can't fail. lines maps a dotted path to its stack-file line.
func checkShape(key string, raw any, t reflect.Type, lines map[string]int, errs *Errors) (any, bool) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	line := lines[key]
	if raw == nil {
		return nil, false // null means "use the default"
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := raw.(map[string]any)
		if !ok {
			errs.add(key, line, "must be an object, got %s", describe(raw))
			return nil, false
		}
		fields := jsonFields(t)
		out := map[string]any{}
		for _, k := range sortedKeys(m) {
			sub := join(key, k)
			f, ok := fields[k]
			if !ok {
				errs.add(sub, lines[sub], "unknown key%s (known keys: %s)", suggest(k, fields), strings.Join(sortedFieldNames(fields), ", "))
				continue
			}
			if v, ok := checkShape(sub, m[k], f.Type, lines, errs); ok {
				out[k] = v
			}
		}
		return out, true
	case reflect.Map:
		m, ok := raw.(map[string]any)
		if !ok {
			errs.add(key, line, "must be an object, got %s", describe(raw))
			return nil, false
		}
		out := map[string]any{}
		for _, k := range sortedKeys(m) {
			if v, ok := checkShape(key+"."+k, m[k], t.Elem(), lines, errs); ok {
				out[k] = v
			}
		}
		return out, true
	case reflect.Slice:
		l, ok := raw.([]any)
		if !ok {
			errs.add(key, line, "must be a list, got %s", describe(raw))
			return nil, false
		}
		out := make([]any, 0, len(l))
		good := true
		for i, v := range l {
			c, ok := checkShape(fmt.Sprintf("%s[%d]", key, i), v, t.Elem(), lines, errs)
			good = good && ok
			out = append(out, c)
		}
		return out, good
	case reflect.String:
		switch v := raw.(type) {
		case string:
			return v, true
		case map[string]any:
			if _, ok := v["secure"]; ok && len(v) == 1 {
				return secretPlaceholder, true
			}
		}
		errs.add(key, line, "must be a string, got %s", describe(raw))
		return nil, false
	case reflect.Int:
		f, ok := raw.(float64)
		if !ok || f != math.Trunc(f) || math.Abs(f) > 1<<40 {
			errs.add(key, line, "must be an integer, got %s", describe(raw))
			return nil, false
		}
		return f, true
	case reflect.Bool:
		b, ok := raw.(bool)
		if !ok {
			errs.add(key, line, "must be true or false, got %s", describe(raw))
			return nil, false
		}
		return b, true
	}
	errs.add(key, line, "unsupported type %s", t)
	return nil, false
}

// join builds a child key: the namespace joins with ":" (simlab:workers),
// everything below with "." (simlab:workers.count).
func join(key, child string) string {
	if key == Namespace {
		return Namespace + ":" + child
	}
	return key + "." + child
}

func describe(v any) string {
	switch x := v.(type) {
	case string:
		return fmt.Sprintf("string %q", x)
	case float64:
		return fmt.Sprintf("number %v", x)
	case bool:
		return fmt.Sprintf("%v", x)
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

// jsonFields maps JSON names to struct fields.
func jsonFields(t reflect.Type) map[string]reflect.StructField {
	out := map[string]reflect.StructField{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" || name == "-" {
			continue
		}
		out[name] = f
	}
	return out
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func sortedFieldNames(f map[string]reflect.StructField) []string {
	names := make([]string, 0, len(f))
	for k := range f {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// suggest returns `; did you mean "x"?` for the closest known key, if close.
func suggest(k string, fields map[string]reflect.StructField) string {
	best, bestD := "", 1<<30
	for _, name := range sortedFieldNames(fields) {
		if d := editDistance(strings.ToLower(k), strings.ToLower(name)); d < bestD {
			best, bestD = name, d
		}
	}
	if best != "" && bestD <= max(2, len(k)/3) {
		return fmt.Sprintf("; did you mean %q?", best)
	}
	return ""
}

func editDistance(a, b string) int {
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
