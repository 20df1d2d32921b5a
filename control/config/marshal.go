package config

import (
	"reflect"
	"time"

	"go.yaml.in/yaml/v3"
)

// Marshal returns c as a config file that Load reads back to c: every key
// of every section (durations as "30s"), so that a Config built in code
// (tests, perf/) starts dpfw without text surgery. Unset pointers and nil
// lists are left out, so Load's defaults apply to them; in list entries
// (ports, links, sets, rules) zero values are left out too, as a person
// would write them.
func Marshal(c *Config) ([]byte, error) {
	return yaml.Marshal(node(reflect.ValueOf(*c), false))
}

// node turns v into what yaml.Marshal writes, following the mapstructure
// keys; sparse leaves out zero fields (inside list entries).
func node(v reflect.Value, sparse bool) any {
	if v.Type() == durationType {
		return v.Interface().(time.Duration).String()
	}
	switch v.Kind() {
	case reflect.Pointer:
		return node(v.Elem(), sparse)
	case reflect.Struct:
		return structNode(v, sparse)
	case reflect.Slice:
		out := make([]any, v.Len())
		for i := range out {
			out[i] = node(v.Index(i), true)
		}
		return out
	}
	return v.Interface()
}

func structNode(v reflect.Value, sparse bool) map[string]any {
	out := map[string]any{}
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		tag := t.Field(i).Tag.Get("mapstructure")
		fv := v.Field(i)
		if tag == "" || tag == "-" || omit(fv, sparse) {
			continue
		}
		out[tag] = node(fv, sparse)
	}
	return out
}

func omit(v reflect.Value, sparse bool) bool {
	switch v.Kind() {
	case reflect.Pointer, reflect.Slice:
		if v.IsNil() {
			return true
		}
	}
	return sparse && v.IsZero()
}
