package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/proto"

	"github.com/datawarehouse/dw/host/supervisor"
	"github.com/datawarehouse/dw/internal/hosttest"
	dwv1 "github.com/datawarehouse/dw/sdk/v6/proto/dw/v1"
)

func TestMain(m *testing.M) { hosttest.Main(m) }

var update = flag.Bool("update", false, "rewrite the generated plugin references in README.md (TestREADMEPluginDocs)")

// firstParty are the plugins whose references README.md holds.
var firstParty = []string{"dbstorage", "filesystem", "dataprotection", "fabric"}

// installPlugins builds (once per test process) and puts into a new
// plugins folder the named first-party plugins, and kvcache for
// "kvcache".
func installPlugins(t *testing.T, names ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, n := range names {
		if n != "kvcache" {
			hosttest.Plugin(t, dir, n)
			continue
		}
		src := hosttest.Binary(t, "examples/kvcache", "dw-plugin-kvcache")
		if err := os.Link(src, filepath.Join(dir, "dw-plugin-kvcache")); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// dw runs the CLI in process and returns what it printed (stdout, then
// the error as main prints it) and its exit status.
func dw(t *testing.T, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	cmd := newRootCmd()
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	err := cmd.ExecuteContext(ctx)
	if err != nil {
		fmt.Fprintln(&out, "dw:", err)
		return out.String(), exitCode(err)
	}
	return out.String(), 0
}

// writeConfig writes a config over plugins folder dir: the first-party
// plugins are disabled unless body enables them.
func writeConfig(t *testing.T, dir, body string) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "data_dir: %s\nplugins: {dir: %s}\n", t.TempDir(), dir)
	b.WriteString("subsystems:\n")
	for _, n := range firstParty {
		if !strings.Contains(body, "  "+n+":") {
			fmt.Fprintf(&b, "  %s: {enabled: false}\n", n)
		}
	}
	b.WriteString(body)
	path := filepath.Join(t.TempDir(), "dw.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestConfigValidateOffline: dw config validate starts each enabled
// plugin briefly and reports what its schema and ValidateLimits refuse,
// with the full key path and a did-you-mean, and exits 2.
func TestConfigValidateOffline(t *testing.T) {
	dir := installPlugins(t, "kvcache", "dbstorage")

	bad := writeConfig(t, dir, `  kvcache:
    colour: blue
    limits: {max_entries: 0, bogus: 1, max_byte: 5}
  dbstorage:
    strategies: [{name: a, dsn: a.sqlite}]
    default_strategy: a
    limits: {health_interval: 1s}
  ghost: {}
`)
	out, code := dw(t, "config", "validate", bad)
	for _, want := range []string{
		"subsystems.kvcache.limits.max_entries: must be >= 1, got 0",
		"subsystems.kvcache.limits.bogus: unknown key; allowed: max_bytes, max_entries",
		`subsystems.kvcache.limits.max_byte: unknown key (did you mean "max_bytes"?)`,
		"subsystems.kvcache.colour: unknown key; allowed: none",
		`subsystems.dbstorage.strategies[0].driver: must be one of sqlite, postgres, got "" (not set)`,
		// A rule between keys: only the plugin's ValidateLimits knows it.
		"subsystems.dbstorage.limits.health_timeout: plugin dbstorage refused its limits: 5s must not exceed health_interval (1s)",
		"warning: subsystems.ghost: enabled, but no dw-plugin-ghost in plugins.dir",
		"note: subsystems.kvcache: settings and limits checked against the schema of dw-plugin-kvcache",
		"invalid: 6 problems",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if code != 2 {
		t.Errorf("exit %d, want 2", code)
	}
	if t.Failed() {
		t.Logf("output:\n%s", out)
	}

	good := writeConfig(t, dir, "  kvcache:\n    limits: {max_entries: 5, max_bytes: 1MiB}\n  dbstorage: {}\n")
	if out, code := dw(t, "config", "validate", good); code != 0 || !strings.Contains(out, "valid (offline check") {
		t.Errorf("a valid file: exit %d\n%s", code, out)
	}

	out, code = dw(t, "-o", "json", "config", "validate", bad)
	var res struct {
		OK       bool `json:"ok"`
		Problems []struct {
			Path, Plugin, Message string
		} `json:"problems"`
	}
	if err := json.Unmarshal([]byte(out[:strings.LastIndex(out, "dw:")]), &res); err != nil || code != 2 || res.OK || len(res.Problems) != 6 ||
		res.Problems[0].Path != "subsystems.dbstorage.limits.health_timeout" || res.Problems[0].Plugin != "dbstorage" {
		t.Errorf("-o json: exit %d, %v: %+v\n%s", code, err, res, out)
	}
}

// TestConfigValidateSDK60: a plugin of sdk 6.0 reports no schema: its
// limits are checked by its ValidateLimits alone, and the output says so.
func TestConfigValidateSDK60(t *testing.T) {
	dir := t.TempDir()
	hosttest.InstallLegacyPlugin(t, dir)
	cfg := writeConfig(t, dir, "  kvcache:\n    limits: {max_entries: 0}\n")
	out, code := dw(t, "config", "validate", cfg)
	if code != 2 || !strings.Contains(out, "subsystems.kvcache.limits: plugin kvcache refused its limits: limits.max_entries: must be >= 1, got 0") ||
		!strings.Contains(out, "note: subsystems.kvcache: dw-plugin-kvcache (sdk 6.0.0) reports no schema") {
		t.Errorf("exit %d\n%s", code, out)
	}
}

// TestConfigSchema: the JSON Schema of dw config schema, compiled by a
// JSON Schema library, accepts config/dw.yaml and every test config the
// config package parses without error, and refuses invalid files.
func TestConfigSchema(t *testing.T) {
	dir := installPlugins(t, append(slices.Clone(firstParty), "kvcache")...)
	cfg := writeConfig(t, dir, "")
	out, code := dw(t, "config", "schema", "--config", cfg)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("dw.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("dw.schema.json")
	if err != nil {
		t.Fatal(err)
	}

	valid := map[string]string{}
	dwYAML, err := os.ReadFile("../../config/dw.yaml")
	if err != nil {
		t.Fatal(err)
	}
	valid["config/dw.yaml"] = string(dwYAML)
	goldens, _ := filepath.Glob("../../config/testdata/parse/*.txt")
	for _, f := range goldens {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		input, output, _ := strings.Cut(string(b), "\n----------\n")
		if !strings.HasPrefix(output, "config ") { // the config package accepts it
			valid[strings.TrimPrefix(f, "../../")] = input
		}
	}
	if len(valid) < 15 {
		t.Fatalf("only %d valid configs found", len(valid))
	}
	for name, y := range valid {
		if err := sch.Validate(yamlInstance(t, y)); err != nil {
			t.Errorf("%s: refused: %v", name, err)
		}
	}

	invalid := map[string]string{
		"host key typo":              "server: {lisen: 127.0.0.1:1}\n",
		"log level":                  "log: {level: loud}\n",
		"start_timeout number":       "plugins: {start_timeout: 10}\n",
		"bad subsystem name":         "subsystems:\n  Bad_Name: {}\n",
		"enabled not a bool":         "subsystems:\n  kvcache: {enabled: yes please}\n",
		"limit below min":            "subsystems:\n  dbstorage:\n    limits: {max_page_size: 0}\n",
		"limit of the wrong type":    "subsystems:\n  dbstorage:\n    limits: {max_page_size: many}\n",
		"limit unknown":              "subsystems:\n  kvcache:\n    limits: {bogus: 1}\n",
		"setting unknown":            "subsystems:\n  fabric:\n    bnd: x\n",
		"enum":                       "subsystems:\n  filesystem:\n    device_class: floppy\n",
		"size string":                "subsystems:\n  kvcache:\n    limits: {max_bytes: lots}\n",
		"size below min":             "subsystems:\n  kvcache:\n    limits: {max_bytes: 1}\n",
		"duration string":            "subsystems:\n  fabric:\n    limits: {heartbeat_interval: soon}\n",
		"duration number":            "subsystems:\n  dbstorage:\n    limits: {health_timeout: 5}\n",
		"negative duration":          "subsystems:\n  dataprotection:\n    limits: {retention: {keep_within: -1h}}\n",
		"float above max":            "subsystems:\n  fabric:\n    limits: {switching: {up_at: 2}}\n",
		"list element key left out":  "subsystems:\n  dbstorage:\n    strategies: [{name: a, dsn: a.sqlite}]\n",
		"list element unknown key":   "subsystems:\n  dbstorage:\n    strategies: [{name: a, driver: sqlite, dsn: a, dns: b}]\n",
		"map element of wrong type":  "subsystems:\n  dataprotection:\n    sources: {docs: 5}\n",
		"nested object unknown key":  "subsystems:\n  filesystem:\n    limits: {quota: {default: {ops: 1}}}\n",
		"int beyond its size (int)":  "subsystems:\n  kvcache:\n    limits: {max_entries: 9223372036854775808}\n",
		"third-party limits not map": "subsystems:\n  other:\n    limits: 5\n",
	}
	for name, y := range invalid {
		if err := sch.Validate(yamlInstance(t, y)); err == nil {
			t.Errorf("%s: accepted:\n%s", name, y)
		}
	}
}

// yamlInstance reads YAML as the JSON value a YAML editor checks.
func yamlInstance(t *testing.T, y string) any {
	t.Helper()
	var v any
	if err := yaml.Unmarshal([]byte(y), &v); err != nil {
		t.Fatalf("%v\n%s", err, y)
	}
	b, err := json.Marshal(plainYAML(v))
	if err != nil {
		t.Fatal(err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return inst
}

// plainYAML turns what yaml.v3 decodes into JSON values: keys become
// strings, timestamps their text.
func plainYAML(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			v[k] = plainYAML(e)
		}
		return v
	case map[any]any:
		m := make(map[string]any, len(v))
		for k, e := range v {
			m[fmt.Sprint(k)] = plainYAML(e)
		}
		return m
	case []any:
		for i, e := range v {
			v[i] = plainYAML(e)
		}
		return v
	case time.Time:
		return v.Format(time.RFC3339Nano)
	}
	return v
}

// TestREADMEPluginDocs: README.md holds, under each first-party plugin's
// section, the reference dw plugin docs prints for it, between
// <!-- BEGIN dw plugin docs NAME --> and <!-- END dw plugin docs NAME -->.
// Regenerate with: go test ./cmd/dw -run TestREADMEPluginDocs -update
func TestREADMEPluginDocs(t *testing.T) {
	dir := installPlugins(t, firstParty...)
	const readme = "../../README.md"
	b, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	for _, name := range firstParty {
		docs, code := dw(t, "plugin", "docs", filepath.Join(dir, "dw-plugin-"+name))
		if code != 0 {
			t.Fatalf("dw plugin docs %s: exit %d\n%s", name, code, docs)
		}
		begin, end := "<!-- BEGIN dw plugin docs "+name+" -->\n", "<!-- END dw plugin docs "+name+" -->"
		i, j := strings.Index(text, begin), strings.Index(text, end)
		if i < 0 || j < i {
			t.Errorf("README.md has no %q … %q block for %s", strings.TrimSpace(begin), end, name)
			continue
		}
		block := "\n" + docs + "\n"
		if got := text[i+len(begin) : j]; got != block {
			if *update {
				text = text[:i+len(begin)] + block + text[j:]
				continue
			}
			t.Errorf("README.md's reference of %s is stale: regenerate it with\n  go test ./cmd/dw -run TestREADMEPluginDocs -update\n(or make readme)", name)
		}
	}
	if *update && !t.Failed() {
		if err := os.WriteFile(readme, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestPluginSchemaSizes logs the size of each first-party plugin's schema
// as GetInfo sends it (the proto message), and its number of fields; it
// fails past 16 KiB, far above what a plugin needs.
func TestPluginSchemaSizes(t *testing.T) {
	dir := installPlugins(t, append(slices.Clone(firstParty), "kvcache")...)
	for _, name := range append(slices.Clone(firstParty), "kvcache") {
		p, err := supervisor.Probe(context.Background(), filepath.Join(dir, "dw-plugin-"+name), supervisor.ProbeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		r, err := dwv1.NewScalableSubsystemClient(p.Client.Conn()).GetInfo(context.Background(), &dwv1.GetInfoRequest{})
		p.Stop()
		if err != nil {
			t.Fatal(err)
		}
		s := r.GetSchema()
		size := proto.Size(s)
		t.Logf("%-15s schema %5d bytes: %2d limits, %2d settings (GetInfo answer %d bytes)",
			name, size, len(s.GetLimits()), len(s.GetSettings()), proto.Size(r))
		if size > 16<<10 {
			t.Errorf("%s: schema of %d bytes", name, size)
		}
	}
}

// TestPluginDocsByName: a plugin of plugins.dir is named by its subsystem
// or by its binary's name, with the same reference.
func TestPluginDocsByName(t *testing.T) {
	dir := installPlugins(t, "kvcache")
	cfg := writeConfig(t, dir, "")
	byName, code := dw(t, "plugin", "docs", "kvcache", "--config", cfg)
	if code != 0 || !strings.Contains(byName, "### kvcache: limits and settings") {
		t.Fatalf("dw plugin docs kvcache: exit %d\n%s", code, byName)
	}
	byFile, code := dw(t, "plugin", "docs", "dw-plugin-kvcache", "--config", cfg)
	if code != 0 || byFile != byName {
		t.Fatalf("dw plugin docs dw-plugin-kvcache: exit %d\n%s", code, byFile)
	}
	if out, code := dw(t, "plugin", "docs", "nosuch", "--config", cfg); code == 0 || !strings.Contains(out, "no dw-plugin-nosuch in plugins.dir") {
		t.Fatalf("a plugin that is not there: exit %d\n%s", code, out)
	}
}

// Only a default config file that does not exist falls back to the
// embedded defaults; one that is there but cannot be reached is loaded,
// so that its error is reported instead of running on other settings.
func TestConfigPathFallsBackOnlyWhenMissing(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "config", "dw.yaml")
	if got := configPath(missing, false); got != "" {
		t.Errorf("missing default file: %q, want the embedded defaults", got)
	}
	if got := configPath(missing, true); got != missing {
		t.Errorf("missing --config file: %q, want it kept (its load fails)", got)
	}
	blocked := filepath.Join(dir, "file", "dw.yaml") // "file" is a file: ENOTDIR
	if err := os.WriteFile(filepath.Join(dir, "file"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if got := configPath(blocked, false); got != blocked {
		t.Errorf("unreachable default file: %q, want it kept so that its error shows", got)
	}
	if _, err := loadConfigForPlugins(blocked, false); err == nil {
		t.Error("an unreachable default config file loaded without an error")
	}
}
