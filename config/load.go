package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/v2"
)

// Names of sources that are not a file, as they appear in error messages.
const (
	sourceDefaults    = "defaults"
	sourceEnvironment = "environment"
)

// Load reads the configuration: the embedded defaults ([DefaultYAML]), then
// the YAML file at path over them, then DW_ environment variables over both;
// it decodes and validates the result. path "" means the defaults alone (and
// the environment). The file is read once, by [ReadFile]; an empty file means
// the defaults alone. Problems with the content come back as an [*Error].
// Load is [ReadFile] then [Parse]; who needs the bytes too (to hash them with
// [HashContent]) calls the two.
//
// Every call builds a fresh koanf instance, so nothing of an earlier load
// leaks into a later one.
func Load(path string) (*Config, error) {
	if path == "" {
		return Parse(nil, sourceDefaults)
	}
	b, err := ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(b, path)
}

// ErrFileChanging is the error of [ReadFile] (wrapped) for a file whose size
// or mtime changed while it was read: a save in progress. Read it again
// later.
var ErrFileChanging = errors.New("file changed while it was read (a save in progress?)")

// ReadFile reads the config file at path whole, in one read, as [Load] and
// the [Watcher] do: it must be a regular file (a FIFO is not opened) of at
// most [MaxFileSize] bytes, and no more than that is read. When the file's
// size or mtime changed during the read it fails with [ErrFileChanging]
// rather than return a mix of two saves. An empty file is returned as read,
// with no error: [Load] takes it as the defaults alone, the watcher and the
// host's reloads as a save in progress.
func ReadFile(path string) ([]byte, error) {
	b, _, err := readWatched(path)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return b, nil
}

// tooLarge is the error for a config file of size bytes, over MaxFileSize.
func tooLarge(size int64) error {
	return fmt.Errorf("file is %d bytes, more than the limit of %d MiB (%d bytes)", size, MaxFileSize>>20, MaxFileSize)
}

// Parse builds a configuration from the embedded defaults, the YAML document
// yamlBytes over them, and the DW_ environment variables over both, then
// decodes and validates it. source names yamlBytes in error messages (Load
// passes the file path). Empty yamlBytes means the defaults alone. Problems
// come back as an [*Error]. Parse makes data_dir and plugins.dir absolute,
// relative to the process working directory.
//
// Merging: mappings merge key by key, recursively, so a subsystem section in
// the file merges over the default section of the same name, and its limits
// key by key; lists and scalars replace. A settings key of a subsystem
// section (any key but enabled and limits) replaces the default's value
// whole, so that "sources: {docs: docs}" means just that source. A null over
// a mapping changes nothing ("server:" with nothing under it).
//
// Environment: a variable DW_<SECTION>__<KEY> sets the key path
// section.key: "__" separates levels, single underscores stay in key names,
// names are lower-cased (DW_SERVER__LISTEN sets server.listen, DW_DATA_DIR
// sets data_dir, DW_SUBSYSTEMS__FABRIC__LIMITS__MAX_NODES__STAR sets
// subsystems.fabric.limits.max_nodes.star). A variable without "__" is
// configuration only when it names a top-level key (DW_DATA_DIR, DW_LOG…);
// others (DW_ADDR, DW_TOKEN, DW_HOST_PID, a token variable such as
// DW_ADMIN_TOKEN) are not. Values are read as YAML: numbers, true/false,
// null, quoted strings and flow collections ("[a, b]", "{k: v}") take their
// YAML type; anything else is the string as written ("64MiB",
// "127.0.0.1:7070").
func Parse(yamlBytes []byte, source string) (*Config, error) {
	return parse(yamlBytes, source, os.Environ)
}

// parse is Parse with a given environment.
func parse(yamlBytes []byte, source string, environ func() []string) (*Config, error) {
	if source == "" {
		source = "input"
	}
	if len(yamlBytes) > MaxFileSize {
		return nil, &Error{Problems: []Problem{{Source: source, Message: tooLarge(int64(len(yamlBytes))).Error()}}}
	}
	defaults, err := defaultValues()
	if err != nil {
		return nil, &Error{Problems: []Problem{{Source: sourceDefaults, Message: err.Error()}}}
	}
	file, err := parseYAMLFile(yamlBytes)
	if err != nil {
		return nil, &Error{Problems: []Problem{{Source: source, Message: err.Error()}}}
	}
	envMap, problems := readEnv(environ)

	// A fresh instance per load: loading into a used one would keep keys
	// since deleted from the file (koanf #77).
	k := koanf.New(".")
	for _, layer := range []struct {
		values          map[string]any
		replaceSettings bool
	}{{defaults, false}, {file, true}, {envMap, false}} {
		if layer.values == nil {
			continue
		}
		mergeFunc := func(src, dest map[string]any) error {
			merge(src, dest, nil, layer.replaceSettings)
			return nil
		}
		if err := k.Load(mapProvider(layer.values), nil, koanf.WithMergeFunc(mergeFunc)); err != nil {
			return nil, fmt.Errorf("config %s: merge: %w", source, err)
		}
	}

	c, issues := decode(k.Raw())
	lookup := environLookup(environ)
	for _, is := range c.check(lookup) {
		if !covered(is.path, issues) {
			issues = append(issues, is)
		}
	}
	for _, is := range issues {
		src := sourceDefaults
		switch {
		case reaches(envMap, is.path):
			src = sourceEnvironment
		case reaches(file, is.path):
			src = source
		}
		problems = append(problems, Problem{Source: src, Path: is.path.String(), Message: is.msg})
	}
	if len(problems) > 0 {
		sortProblems(problems)
		return nil, &Error{Problems: problems}
	}

	if c.DataDir, err = filepath.Abs(c.DataDir); err != nil {
		return nil, fmt.Errorf("config %s: data_dir: make absolute: %w", source, err)
	}
	if c.Plugins.Dir, err = filepath.Abs(c.Plugins.Dir); err != nil {
		return nil, fmt.Errorf("config %s: plugins.dir: make absolute: %w", source, err)
	}
	for key, p := range map[string]*string{"cert_file": &c.Server.TLS.CertFile, "key_file": &c.Server.TLS.KeyFile, "client_ca_file": &c.Server.TLS.ClientCAFile} {
		if *p == "" {
			continue
		}
		if *p, err = filepath.Abs(*p); err != nil {
			return nil, fmt.Errorf("config %s: server.tls.%s: make absolute: %w", source, key, err)
		}
	}
	if a := &c.Server.Audit; a.Path != "" && !filepath.IsAbs(a.Path) {
		a.Path = filepath.Join(c.DataDir, a.Path)
	}
	return c, nil
}

// parsedDefaults parses DefaultYAML once.
var parsedDefaults = sync.OnceValues(func() (map[string]any, error) { return parseYAMLFile(DefaultYAML) })

// defaultValues returns a fresh copy of the parsed DefaultYAML.
func defaultValues() (map[string]any, error) {
	m, err := parsedDefaults()
	if err != nil {
		return nil, err
	}
	return deepCopy(m).(map[string]any), nil
}

// deepCopy copies the mappings and lists of v, a parsed YAML value.
func deepCopy(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[k] = deepCopy(e)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = deepCopy(e)
		}
		return out
	default:
		return v
	}
}

// mapProvider is a koanf.Provider of an already parsed map.
type mapProvider map[string]any

// ReadBytes is not supported: the map is already parsed.
func (p mapProvider) ReadBytes() ([]byte, error) {
	return nil, errors.New("config: map provider does not provide bytes")
}

// Read returns the map.
func (p mapProvider) Read() (map[string]any, error) { return p, nil }

// merge merges src into dest, mutating dest: mappings key by key,
// recursively; a null over a mapping changes nothing; anything else
// replaces. With replaceSettings, a settings key of a subsystem section
// (subsystems.<name>.<key>, key not limits) is replaced whole. p is the key
// path of src and dest.
func merge(src, dest map[string]any, p []string, replaceSettings bool) {
	for k, sv := range src {
		dv, exists := dest[k]
		sm, srcIsMap := sv.(map[string]any)
		dm, destIsMap := dv.(map[string]any)
		settings := replaceSettings && len(p) == 2 && p[0] == "subsystems" && k != "limits"
		switch {
		case !exists:
			dest[k] = sv
		case destIsMap && sv == nil:
		case destIsMap && srcIsMap && !settings:
			merge(sm, dm, append(slices.Clip(p), k), replaceSettings)
		default:
			dest[k] = sv
		}
	}
}

// covered reports whether a decode issue sits at p or above it, in which
// case a validation issue at p only repeats it.
func covered(p keyPath, issues []issue) bool {
	for _, is := range issues {
		if len(is.path) <= len(p) && slices.Equal(is.path, p[:len(is.path)]) {
			return true
		}
	}
	return false
}

// reaches reports whether the source map m set the value at p: the whole
// path exists in m, or m set a list or scalar on the way.
func reaches(m map[string]any, p keyPath) bool {
	if m == nil {
		return false
	}
	var cur any = m
	for _, e := range p {
		k, isKey := e.(string)
		if !isKey {
			return true // an index: m set the whole list
		}
		cm, ok := cur.(map[string]any)
		if !ok {
			return cur != nil
		}
		if cur, ok = cm[k]; !ok {
			return false
		}
	}
	return true
}

// envPrefix starts every environment variable that configures dw.
const envPrefix = "DW_"

// ignoredEnv are DW_ variables that dw uses for other things than
// configuration.
var ignoredEnv = map[string]bool{
	"DW_ADDR":     true, // the client's host address
	"DW_TOKEN":    true, // the client's token
	"DW_HOST_PID": true, // internal: the host's pid, for its plugins
}

// readEnv reads the DW_ variables of environ into a nested map, with the
// problems of variables that cannot be configuration.
func readEnv(environ func() []string) (map[string]any, []Problem) {
	var problems []Problem
	fail := func(name, format string, args ...any) {
		problems = append(problems, Problem{Source: sourceEnvironment, Message: name + ": " + fmt.Sprintf(format, args...)})
	}
	owner := map[string]string{} // key path → variable name
	p := env.Provider(".", env.Opt{
		Prefix:      envPrefix,
		EnvironFunc: environ,
		TransformFunc: func(name, value string) (string, any) {
			key, err := envKey(name)
			if err != nil {
				fail(name, "%v", err)
				return "", nil
			}
			if key == "" {
				return "", nil
			}
			owner[key] = name
			return key, envValue(value)
		},
	})
	m, err := p.Read()
	if err != nil {
		fail("DW_*", "%v", err)
		return nil, problems
	}
	for key, name := range owner {
		for i := range len(key) {
			if key[i] == '.' {
				if other, ok := owner[key[:i]]; ok {
					fail(name, "sets a key inside %s, which %s sets whole; set one of them", key[:i], other)
				}
			}
		}
	}
	if len(m) == 0 {
		return nil, problems
	}
	return m, problems
}

// envKey turns a variable name into a key path ("DW_SERVER__LISTEN" →
// "server.listen"), or "" when the variable is not configuration.
func envKey(name string) (string, error) {
	if ignoredEnv[name] || !strings.HasPrefix(name, envPrefix) {
		return "", nil
	}
	segs := strings.Split(name[len(envPrefix):], "__")
	for i, s := range segs {
		segs[i] = strings.ToLower(s)
	}
	if len(segs) == 1 && !slices.Contains(rootKeys, segs[0]) {
		return "", nil // DW_ADMIN_TOKEN and the like: not a config key
	}
	for _, s := range segs {
		switch {
		case s == "":
			return "", errors.New(`not a config key: empty key name between "__" separators`)
		case strings.Contains(s, "."):
			return "", errors.New(`not a config key: "." in a key name`)
		}
	}
	return strings.Join(segs, "."), nil
}

// envValue reads the value of a variable: as YAML when it is a number,
// bool, null, quoted string or flow collection, as written otherwise (and
// when it is not valid YAML, such as "[::1]:7070").
func envValue(s string) any {
	t := strings.TrimSpace(s)
	if t == "" {
		return s
	}
	v, err := parseYAMLValue([]byte(s))
	if err != nil {
		return s
	}
	switch v.(type) {
	case map[string]any, []any:
		if t[0] != '[' && t[0] != '{' {
			return s
		}
	case string:
		if t[0] != '"' && t[0] != '\'' {
			return s
		}
	case nil:
		if !slices.Contains([]string{"~", "null", "Null", "NULL"}, t) {
			return s
		}
	}
	return v
}

// environLookup returns a variable lookup over environ.
func environLookup(environ func() []string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		for _, kv := range environ() {
			if k, v, ok := strings.Cut(kv, "="); ok && k == name {
				return v, true // the first one wins, as in os.Getenv
			}
		}
		return "", false
	}
}
