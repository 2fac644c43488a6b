package main

import (
	"flag"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// parseArgs parses args into fs, fills the flags not given from the
// --config file (configPath, from addConfigFlag) and refuses positional
// arguments: the common start of every command.
func parseArgs(fs *flag.FlagSet, args []string, configPath *string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := applyConfig(fs, *configPath); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%s: unexpected argument %q (flags only)", fs.Name(), fs.Arg(0))
	}
	return nil
}

// addConfigFlag registers --config on fs. Call applyConfig with its value
// after fs.Parse (parseArgs does both).
func addConfigFlag(fs *flag.FlagSet) *string {
	return fs.String("config", "", "TOML `file` with flag values (keys are flag names, e.g. block-time = \"5s\"; repeatable flags take arrays); flags on the command line override it")
}

// applyConfig reads the TOML file at path and sets every flag of fs that
// was not given on the command line from it. Keys are flag names (an
// underscore may stand for a dash). Unknown keys, tables and values of the
// wrong kind are errors naming the key. An array is accepted only for a
// repeatable flag (one whose value is a list) and sets it once per element.
// An empty path does nothing.
func applyConfig(fs *flag.FlagSet, path string) error {
	if path == "" {
		return nil
	}
	var raw map[string]any
	if _, err := toml.DecodeFile(path, &raw); err != nil {
		return fmt.Errorf("--config %q: %w", path, err)
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })

	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys) // deterministic: the first bad key is always the same one
	seen := map[string]string{}
	for _, key := range keys {
		name := key
		f := fs.Lookup(name)
		if f == nil {
			name = strings.ReplaceAll(key, "_", "-")
			f = fs.Lookup(name)
		}
		if f == nil || name == "config" {
			return fmt.Errorf("--config %q: unknown key %q (not a flag of %q)", path, key, fs.Name())
		}
		if other, dup := seen[name]; dup {
			return fmt.Errorf("--config %q: keys %q and %q both set --%s", path, other, key, name)
		}
		seen[name] = key
		if given[name] {
			continue // the command line wins
		}
		vals, err := configValues(raw[key], isRepeatable(f))
		if err != nil {
			return fmt.Errorf("--config %q: key %q: %v", path, key, err)
		}
		for _, v := range vals {
			if err := fs.Set(name, v); err != nil {
				return fmt.Errorf("--config %q: key %q: invalid value %q: %v", path, key, v, err)
			}
		}
	}
	return nil
}

// isRepeatable reports whether a flag collects every value it is given:
// its Value is a pointer to a slice (like --url and --node).
func isRepeatable(f *flag.Flag) bool {
	t := reflect.TypeOf(f.Value)
	return t != nil && t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Slice
}

// configValues turns one TOML value into the strings flag.Set takes.
func configValues(v any, repeatable bool) ([]string, error) {
	if arr, ok := v.([]any); ok {
		if !repeatable {
			return nil, fmt.Errorf("an array is given, but the flag takes one value")
		}
		out := make([]string, 0, len(arr))
		for i, e := range arr {
			s, err := configScalar(e)
			if err != nil {
				return nil, fmt.Errorf("element %d: %v", i, err)
			}
			out = append(out, s)
		}
		return out, nil
	}
	s, err := configScalar(v)
	if err != nil {
		return nil, err
	}
	return []string{s}, nil
}

func configScalar(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case bool:
		return strconv.FormatBool(x), nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64), nil
	case map[string]any:
		return "", fmt.Errorf("a table is given; flags take strings, numbers, booleans or (repeatable flags) arrays")
	default:
		return "", fmt.Errorf("value %v of type %T is not a string, number or boolean", v, v)
	}
}
