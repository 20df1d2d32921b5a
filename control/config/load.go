package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"
)

// EnvPrefix prefixes the environment variables that override config keys.
const EnvPrefix = "DPFW"

// Error is a load failure with every problem found, each with its place.
type Error struct {
	File     string
	Problems []Problem
}

// Problem is one error in a config file.
type Problem struct {
	Line int    // 0 if unknown
	Key  string // dotted key path, "" for syntax errors
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.File)
		if p.Line > 0 {
			fmt.Fprintf(&b, ":%d", p.Line)
		}
		b.WriteString(": ")
		if p.Key != "" {
			b.WriteString(p.Key + ": ")
		}
		b.WriteString(p.Msg)
	}
	return b.String()
}

// LoadFile reads, decodes and validates the config file at path.
func LoadFile(path string) (*Config, error) {
	data, err := ReadStable("config", path, MaxConfigSize)
	if err != nil {
		return nil, err
	}
	return Load(path, data)
}

// parseYAML checks data is one YAML mapping of known keys, and returns
// the line of every key (for error messages).
func parseYAML(data []byte) (lines map[string]int, problems []Problem) {
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil && !errors.Is(err, io.EOF) {
		problems = append(problems, yamlProblem(err))
		return nil, problems
	}
	var next yaml.Node
	if err := dec.Decode(&next); !errors.Is(err, io.EOF) {
		line := next.Line
		if err != nil {
			problems = append(problems, yamlProblem(err))
		} else {
			problems = append(problems, Problem{Line: line, Msg: "a second YAML document (after \"---\"): dpfw reads one document per config file; remove the \"---\" and merge the keys, or split the file"})
		}
		return nil, problems
	}
	lines = map[string]int{}
	if len(root.Content) > 0 {
		doc := root.Content[0]
		if doc.Kind != yaml.MappingNode {
			problems = append(problems, Problem{Line: doc.Line, Msg: "the config must be a YAML mapping of keys (eal, ports, links, workers, …)"})
			return nil, problems
		}
		checkKeys(doc, reflect.TypeOf(Config{}), "", lines, &problems)
	}
	return lines, problems
}

// Load decodes and validates data; name is used in error messages.
// Environment variables (DPFW_…) override scalar keys.
func Load(name string, data []byte) (*Config, error) {
	cerr := &Error{File: name}
	if int64(len(data)) > MaxConfigSize {
		cerr.Problems = append(cerr.Problems, Problem{Msg: fmt.Sprintf("%d bytes: a config is at most %d bytes; keep large rule sets in rules.file", len(data), MaxConfigSize)})
		return nil, cerr
	}
	lines, problems := parseYAML(data)
	if len(problems) > 0 {
		cerr.Problems = problems
		return nil, cerr
	}

	v := viper.New()
	v.SetConfigType("yaml")
	v.SetEnvPrefix(EnvPrefix)
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_", "-", "_"))
	v.AutomaticEnv()
	def := Default()
	for key, val := range leafDefaults(reflect.ValueOf(def), "") {
		v.SetDefault(key, val)
	}
	if err := v.ReadConfig(bytes.NewReader(data)); err != nil {
		cerr.Problems = append(cerr.Problems, Problem{Msg: err.Error()})
		return nil, cerr
	}
	var cfg Config
	err := v.Unmarshal(&cfg, func(dc *mapstructure.DecoderConfig) {
		dc.ErrorUnused = true
		dc.WeaklyTypedInput = true
		dc.DecodeHook = mapstructure.ComposeDecodeHookFunc(
			mapstructure.StringToTimeDurationHookFunc(),
			mapstructure.StringToSliceHookFunc(","),
		)
	})
	if err != nil {
		cerr.Problems = append(cerr.Problems, decodeProblems(err, lines)...)
		return nil, cerr
	}
	for i := range cfg.Ports {
		cfg.Ports[i].applyDefaults()
	}
	cfg.Dir = filepath.Dir(name)
	cfg.Name, cfg.Lines = name, lines
	for _, fe := range cfg.Validate() {
		cerr.Problems = append(cerr.Problems, Problem{Line: LineOf(lines, fe.Key), Key: fe.Key, Msg: fe.Msg})
	}
	if len(cerr.Problems) > 0 {
		return nil, cerr
	}
	if err := cfg.readRules(); err != nil {
		key := "rules.file"
		if strings.HasPrefix(err.Error(), "reading rules.file6") || strings.HasPrefix(err.Error(), "rules.file6") {
			key = "rules.file6"
		}
		if _, rest, ok := strings.Cut(err.Error(), "rules.sets["); ok {
			if n, _, ok := strings.Cut(rest, "]"); ok {
				key = "rules.sets[" + n + "].file"
			}
		}
		cerr.Problems = append(cerr.Problems, Problem{Line: LineOf(lines, key), Msg: err.Error()})
		return nil, cerr
	}
	return &cfg, nil
}

func yamlProblem(err error) Problem {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		return Problem{Msg: strings.Join(te.Errors, "; ")}
	}
	// yaml.v3 syntax errors read "yaml: line N: …".
	msg := err.Error()
	var line int
	if n, _ := fmt.Sscanf(msg, "yaml: line %d:", &line); n == 1 {
		_, rest, _ := strings.Cut(msg, ": ")
		_, rest, _ = strings.Cut(rest, ": ")
		return Problem{Line: line, Msg: "YAML syntax: " + rest}
	}
	return Problem{Msg: "YAML: " + msg}
}

// LineOf finds the line of key or, failing that, of its nearest parent.
func LineOf(lines map[string]int, key string) int {
	for key != "" {
		if l, ok := lines[key]; ok {
			return l
		}
		i := strings.LastIndexAny(key, ".[")
		if i < 0 {
			break
		}
		key = key[:i]
	}
	return 0
}

// checkKeys walks the YAML mapping n against struct type t, recording each
// key's line and reporting unknown keys with the nearest valid one.
func checkKeys(n *yaml.Node, t reflect.Type, prefix string, lines map[string]int, probs *[]Problem) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			if n.Tag != "!!null" {
				*probs = append(*probs, Problem{Line: n.Line, Key: prefix, Msg: fmt.Sprintf("want a mapping of %s", strings.Join(fieldNames(t), ", "))})
			}
			return
		}
		fields := map[string]reflect.StructField{}
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if tag := f.Tag.Get("mapstructure"); tag != "" && tag != "-" {
				fields[tag] = f
			}
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			key := join(prefix, k.Value)
			lines[key] = k.Line
			f, ok := fields[k.Value]
			if !ok {
				msg := "unknown key " + quoteShort(k.Value)
				if prefix != "" {
					msg += " in " + prefix
				}
				if best := Nearest(k.Value, fieldNames(t)); best != "" {
					msg += fmt.Sprintf("; did you mean %q?", best)
				} else {
					msg += "; valid keys: " + strings.Join(fieldNames(t), ", ")
				}
				*probs = append(*probs, Problem{Line: k.Line, Msg: msg})
				continue
			}
			checkKeys(val, f.Type, key, lines, probs)
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if t != durationType {
			checkInt(n, t, prefix, probs)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			// A scalar may be a comma list (StringToSliceHookFunc); type
			// errors are reported by the decoder.
			return
		}
		for i, e := range n.Content {
			key := fmt.Sprintf("%s[%d]", prefix, i)
			lines[key] = e.Line
			checkKeys(e, t.Elem(), key, lines, probs)
		}
	}
}

var durationType = reflect.TypeOf(time.Duration(0))

// checkInt refuses an integer key whose value, as written, is not a whole
// number in the field's range: the decoder would otherwise truncate 1.5 to
// 1 and wrap 2^64 around, and messages would quote the converted value.
func checkInt(n *yaml.Node, t reflect.Type, key string, probs *[]Problem) {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		return
	}
	v, err := strconv.ParseInt(n.Value, 0, t.Bits())
	switch {
	case err == nil:
		_ = v
	case errors.Is(err, strconv.ErrRange):
		*probs = append(*probs, Problem{Line: n.Line, Key: key, Msg: fmt.Sprintf("%s: out of range (at most %d)", quoteShort(n.Value), int64(1)<<(t.Bits()-1)-1)})
	default:
		*probs = append(*probs, Problem{Line: n.Line, Key: key, Msg: fmt.Sprintf("%s: want a whole number", quoteShort(n.Value))})
	}
}

// quoteShort quotes s for a message, cut to a short prefix: a bad value
// of a megabyte is not echoed whole.
func quoteShort(s string) string {
	const max = 40
	if len(s) <= max {
		return strconv.Quote(s)
	}
	return fmt.Sprintf("%s… (%d bytes)", strconv.Quote(s[:max]), len(s))
}

func join(prefix, k string) string {
	if prefix == "" {
		return k
	}
	return prefix + "." + k
}

func fieldNames(t reflect.Type) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		if tag := t.Field(i).Tag.Get("mapstructure"); tag != "" && tag != "-" {
			out = append(out, tag)
		}
	}
	return out
}

// leafDefaults returns every scalar (non-list, non-struct) key with its
// default value, so viper knows them for environment overrides.
func leafDefaults(v reflect.Value, prefix string) map[string]any {
	out := map[string]any{}
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("mapstructure")
		if tag == "" || tag == "-" {
			continue
		}
		key := join(prefix, tag)
		fv := v.Field(i)
		switch fv.Kind() {
		case reflect.Struct:
			for k, x := range leafDefaults(fv, key) {
				out[k] = x
			}
		case reflect.Slice:
			if f.Type.Elem().Kind() != reflect.Struct {
				out[key] = fv.Interface()
			}
		default:
			out[key] = fv.Interface()
		}
	}
	return out
}

// decodeProblems turns mapstructure's errors ("'ports[0].rx_desc' expected
// type 'int', got …") into problems with lines.
func decodeProblems(err error, lines map[string]int) []Problem {
	var out []Problem
	for _, msg := range strings.Split(err.Error(), "\n") {
		msg = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(msg), "*"))
		if msg == "" || strings.HasPrefix(msg, "decoding failed") || strings.HasSuffix(msg, "error(s) decoding:") {
			continue
		}
		key := ""
		if strings.HasPrefix(msg, "'") {
			if end := strings.Index(msg[1:], "'"); end >= 0 {
				key = msg[1 : end+1]
			}
		}
		out = append(out, Problem{Line: LineOf(lines, key), Msg: msg})
	}
	if len(out) == 0 {
		out = append(out, Problem{Msg: err.Error()})
	}
	return out
}
