package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// noEnv is an empty environment.
func noEnv() []string { return nil }

// envOf returns an environment of the given NAME=value entries.
func envOf(kv ...string) func() []string { return func() []string { return kv } }

// mustParse parses input with the environment environ and fails the test on
// an error.
func mustParse(t testing.TB, input string, environ func() []string) *Config {
	t.Helper()
	c, err := parse([]byte(input), "dw.yaml", environ)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return c
}

// parseErr parses input with the environment environ and returns the error
// text, failing the test when there is none.
func parseErr(t testing.TB, input string, environ func() []string) string {
	t.Helper()
	_, err := parse([]byte(input), "dw.yaml", environ)
	if err == nil {
		t.Fatalf("parse %.200q: no error", input)
	}
	return err.Error()
}

// abs returns path made absolute against the working directory.
func abs(t testing.TB, path string) string {
	t.Helper()
	p, err := filepath.Abs(path)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// designDefaults is the configuration DESIGN.md specifies, with the
// first-party subsystems disabled until their plugins ship.
func designDefaults(t testing.TB) *Config {
	t.Helper()
	return &Config{
		Server: Server{Listen: "127.0.0.1:7070", TLS: TLS{MinVersion: "1.2"},
			Audit: Audit{MaxSize: 64 << 20, MaxFiles: 5}, MaxConnsPerAddress: 256},
		Log:     Log{Level: "info", Format: "text"},
		DataDir: abs(t, "data"),
		Plugins: Plugins{Dir: abs(t, "bin/plugins"), StartTimeout: 10 * time.Second, Checksums: map[string]string{}},
		Subsystems: map[string]Subsystem{
			"dbstorage": {
				Enabled: true,
				Settings: map[string]any{
					"strategies":       []any{map[string]any{"name": "primary", "driver": "sqlite", "dsn": "db/objects.sqlite"}},
					"default_strategy": "primary",
				},
				Limits: map[string]any{
					"max_buffer_bytes":  "64MiB",
					"health_timeout":    "5s",
					"health_interval":   "30s",
					"default_page_size": 100,
					"max_page_size":     1000,
				},
			},
			"filesystem": {
				Enabled:  true,
				Settings: map[string]any{"root": "files", "device_class": "auto"},
				Limits: map[string]any{
					"max_queue_depth":   1024,
					"queue_depth":       map[string]any{"nvme": 128, "ssd": 32, "hdd": 8},
					"redetect_interval": "5m",
					"max_throttle_wait": "2s",
					"quota": map[string]any{
						"default": map[string]any{"bytes_per_second": 0, "ops_per_second": 0},
						"callers": map[string]any{},
					},
				},
			},
			"dataprotection": {
				Enabled: true,
				Settings: map[string]any{
					"repository":   "backups",
					"sources":      map[string]any{"files": "files"},
					"restore_root": "restores",
				},
				Limits: map[string]any{
					"max_concurrent_operations": 0,
					"utilization_low":           0.60,
					"utilization_high":          0.80,
					"ema_alpha":                 0.3,
					"adjust_interval":           "5s",
					"checkpoint_interval":       "10s",
					"retention":                 map[string]any{"keep_last": 0, "keep_within": "0s", "max_total_bytes": 0},
					"retention_interval":        "1h",
				},
			},
			"fabric": {
				Enabled: true,
				Settings: map[string]any{
					"bind":            "127.0.0.1:7946",
					"join":            []any{},
					"federation":      "default",
					"encrypt_key_env": "",
				},
				Limits: map[string]any{
					"max_nodes":          map[string]any{"star": 1000, "mesh": 500, "federated": 10000},
					"topology":           "star",
					"switching":          map[string]any{"mode": "recommend", "up_at": 0.8, "down_at": 0.5},
					"heartbeat_interval": "15s",
					"missed_heartbeats":  3,
				},
			},
		},
	}
}

func TestDefaults(t *testing.T) {
	want := designDefaults(t)
	for _, tc := range []struct {
		name  string
		parse func() (*Config, error)
	}{
		{"embedded", func() (*Config, error) { return parse(nil, "defaults", noEnv) }},
		{"empty file", func() (*Config, error) { return parse([]byte{}, "dw.yaml", noEnv) }},
		{"default file itself", func() (*Config, error) { return parse(DefaultYAML, "dw.yaml", noEnv) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.parse()
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("defaults differ from DESIGN.md:\ngot  %#v\nwant %#v", got, want)
			}
		})
	}
}

func TestDefaultYAMLEnablesShippedPlugins(t *testing.T) {
	// Every first-party plugin ships, so each is enabled by default.
	if n := strings.Count(string(DefaultYAML), "enabled: false"); n != 0 {
		t.Errorf("dw.yaml disables %d subsystems, want none", n)
	}
	if n := strings.Count(string(DefaultYAML), "enabled: true"); n != 4 {
		t.Errorf("dw.yaml enables %d subsystems, want 4 (dbstorage, filesystem, dataprotection, fabric)", n)
	}
}

func TestLoad(t *testing.T) {
	t.Setenv("DW_TEST_UNRELATED", "x")
	dir := t.TempDir()
	path := filepath.Join(dir, "dw.yaml")
	if err := os.WriteFile(path, []byte("data_dir: rel/data\nlog: {level: debug}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	// Relative paths resolve against the working directory, not the file's.
	if want := abs(t, "rel/data"); c.DataDir != want {
		t.Errorf("DataDir = %q, want %q", c.DataDir, want)
	}
	if c.Log.Level != "debug" || c.Log.Format != "text" {
		t.Errorf("Log = %+v, want debug/text", c.Log)
	}

	c, err = Load("")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c, designDefaults(t)) {
		t.Errorf("Load(\"\") is not the defaults: %#v", c)
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, size int64) string {
		t.Helper()
		p := filepath.Join(dir, name)
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := f.Truncate(size); err != nil { // sparse: cheap to make, would be costly to read
			t.Fatal(err)
		}
		return p
	}

	t.Run("missing", func(t *testing.T) {
		_, err := Load(filepath.Join(dir, "nope.yaml"))
		if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "nope.yaml") {
			t.Errorf("err = %v, want not-exist naming the file", err)
		}
	})
	t.Run("directory", func(t *testing.T) {
		_, err := Load(dir)
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("err = %v, want not a regular file", err)
		}
	})
	t.Run("oversized", func(t *testing.T) {
		p := write("huge.yaml", 1<<40) // a terabyte of holes: must be refused by size, not read
		_, err := Load(p)
		if err == nil || !strings.Contains(err.Error(), "huge.yaml") || !strings.Contains(err.Error(), "more than the limit of 4 MiB") {
			t.Errorf("err = %v, want too large naming the file", err)
		}
	})
	t.Run("one byte over", func(t *testing.T) {
		_, err := Load(write("over.yaml", MaxFileSize+1))
		if err == nil || !strings.Contains(err.Error(), "4194305 bytes") {
			t.Errorf("err = %v, want too large", err)
		}
	})
	t.Run("exactly the limit", func(t *testing.T) {
		p := filepath.Join(dir, "max.yaml")
		line := "# " + strings.Repeat("x", 1021) + "\n" // 1 KiB of comment
		if err := os.WriteFile(p, []byte(strings.Repeat(line, MaxFileSize/len(line))), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(p); err != nil {
			t.Errorf("a file of exactly %d bytes: %v", MaxFileSize, err)
		}
	})
	t.Run("syntax error names file and line", func(t *testing.T) {
		p := filepath.Join(dir, "bad.yaml")
		if err := os.WriteFile(p, []byte("server:\n  listen: [\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Load(p)
		if err == nil || !strings.HasPrefix(err.Error(), "config "+p+": invalid YAML: line ") {
			t.Errorf("err = %v, want it to name the file and a line", err)
		}
	})
}

func TestParseOversized(t *testing.T) {
	b := make([]byte, MaxFileSize+1)
	_, err := parse(b, "big.yaml", noEnv)
	if err == nil || !strings.HasPrefix(err.Error(), "config big.yaml: file is 4194305 bytes, more than the limit") {
		t.Errorf("err = %v", err)
	}
}

func TestParseSourceNames(t *testing.T) {
	_, err := parse([]byte("log: {level: x}"), "", noEnv)
	if err == nil || !strings.HasPrefix(err.Error(), "config input: log.level:") {
		t.Errorf("err = %v, want the source \"input\"", err)
	}
	_, err = parse(nil, "defaults", envOf("DW_LOG__LEVEL=x"))
	if err == nil || !strings.HasPrefix(err.Error(), "config environment: log.level:") {
		t.Errorf("err = %v, want the source \"environment\"", err)
	}
}

func TestProblemsAreSortedWithSources(t *testing.T) {
	_, err := parse([]byte("log: {level: loud}\nserver: {auth: {tokens: [{name: a, token_env: DW_A}]}}\n"), "dw.yaml",
		envOf("DW_PLUGINS__START_TIMEOUT=soon", "DW_DATA_DIR="))
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v (%T), want *Error", err, err)
	}
	want := []Problem{
		{Source: "environment", Path: "data_dir", Message: `must be a folder path, got ""`},
		{Source: "dw.yaml", Path: "log.level", Message: `must be one of trace, debug, info, warn, error, got "loud"`},
		{Source: "environment", Path: "plugins.start_timeout", Message: `must be a duration such as "10s", got "soon"`},
		{Source: "dw.yaml", Path: "server.auth.tokens[0].token_env", Message: "environment variable DW_A is not set"},
	}
	if !reflect.DeepEqual(ce.Problems, want) {
		t.Errorf("problems:\ngot  %q\nwant %q", ce.Problems, want)
	}
	wantText := `config environment: data_dir: must be a folder path, got ""
config dw.yaml: log.level: must be one of trace, debug, info, warn, error, got "loud"
config environment: plugins.start_timeout: must be a duration such as "10s", got "soon"
config dw.yaml: server.auth.tokens[0].token_env: environment variable DW_A is not set`
	if err.Error() != wantText {
		t.Errorf("error text:\n%s\nwant:\n%s", err, wantText)
	}
}

func TestErrorCapsItsText(t *testing.T) {
	var b strings.Builder
	b.WriteString("server:\n")
	for i := range 100 {
		fmt.Fprintf(&b, "  unknown%03d: x\n", i)
	}
	msg := parseErr(t, b.String(), noEnv)
	if n := strings.Count(msg, "\n"); n != maxReported {
		t.Errorf("error has %d lines, want %d", n+1, maxReported+1)
	}
	if !strings.HasSuffix(msg, "config: and 75 more problems") {
		t.Errorf("error does not end with the count of the others:\n%s", msg)
	}
}

func TestFileOverrides(t *testing.T) {
	t.Setenv("DW_OPS_TOKEN", "t0ken-of-16-bytes")
	c := mustParse(t, `
server:
  listen: 0.0.0.0:9090
  insecure_http: true
  auth:
    tokens: [{name: ops, token_env: DW_OPS_TOKEN}]
log: {level: warn, format: json}
data_dir: /var/lib/dw
plugins:
  dir: /opt/dw/plugins
  start_timeout: 2m
  checksums: {dw-plugin-fabric: 9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08}
subsystems:
  fabric:
    enabled: true
    topology_hint: mesh
    limits: {topology: mesh}
`, os.Environ)
	want := designDefaults(t)
	want.Server.Listen = "0.0.0.0:9090"
	want.Server.InsecureHTTP = true
	want.Server.Auth = Auth{Tokens: []Token{{Name: "ops", TokenEnv: "DW_OPS_TOKEN", Policy: PolicyAdmin}}}
	want.Log = Log{Level: "warn", Format: "json"}
	want.DataDir = "/var/lib/dw"
	want.Plugins = Plugins{Dir: "/opt/dw/plugins", StartTimeout: 2 * time.Minute,
		Checksums: map[string]string{"dw-plugin-fabric": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}}
	fabric := want.Subsystems["fabric"]
	fabric.Enabled = true
	fabric.Settings["topology_hint"] = "mesh"
	fabric.Limits["topology"] = "mesh"
	want.Subsystems["fabric"] = fabric
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got  %#v\nwant %#v", c, want)
	}
}

func TestEnvOverridesEveryLevel(t *testing.T) {
	// Through the exported API and the real process environment.
	t.Setenv("DW_SERVER__LISTEN", "127.0.0.1:9999")
	t.Setenv("DW_LOG__FORMAT", "json")
	t.Setenv("DW_DATA_DIR", "/tmp/dw-data")
	t.Setenv("DW_PLUGINS__START_TIMEOUT", "45s")
	t.Setenv("DW_SUBSYSTEMS__DBSTORAGE__LIMITS__MAX_PAGE_SIZE", "100")
	t.Setenv("DW_SUBSYSTEMS__DBSTORAGE__LIMITS__MAX_BUFFER_BYTES", "128MiB")
	t.Setenv("DW_SUBSYSTEMS__DBSTORAGE__ENABLED", "true")
	t.Setenv("DW_SUBSYSTEMS__FILESYSTEM__LIMITS__QUEUE_DEPTH__HDD", "4")
	t.Setenv("DW_SUBSYSTEMS__FABRIC__JOIN", "[a:1, b:2]")
	t.Setenv("DW_SUBSYSTEMS__FABRIC__LIMITS__SWITCHING__UP_AT", "0.9")
	t.Setenv("DW_ADDR", "http://127.0.0.1:7070")
	t.Setenv("DW_TOKEN", "client")
	t.Setenv("DW_HOST_PID", "1")
	t.Setenv("DW_ADMIN_TOKEN", "x")

	dir := t.TempDir()
	path := filepath.Join(dir, "dw.yaml")
	if err := os.WriteFile(path, []byte("server: {listen: 127.0.0.1:1}\nsubsystems: {dbstorage: {limits: {max_page_size: 7}}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	db, fsys, fabric := c.Subsystems["dbstorage"], c.Subsystems["filesystem"], c.Subsystems["fabric"]
	for _, tc := range []struct {
		name      string
		got, want any
	}{
		{"server.listen", c.Server.Listen, "127.0.0.1:9999"},
		{"log.format", c.Log.Format, "json"},
		{"log.level", c.Log.Level, "info"},
		{"data_dir", c.DataDir, "/tmp/dw-data"},
		{"plugins.start_timeout", c.Plugins.StartTimeout, 45 * time.Second},
		{"dbstorage.enabled", db.Enabled, true},
		{"dbstorage.limits.max_page_size", db.Limits["max_page_size"], 100},
		{"dbstorage.limits.max_buffer_bytes", db.Limits["max_buffer_bytes"], "128MiB"},
		{"dbstorage.limits.health_timeout", db.Limits["health_timeout"], "5s"},
		{"filesystem.limits.queue_depth", fsys.Limits["queue_depth"], map[string]any{"nvme": 128, "ssd": 32, "hdd": 4}},
		{"fabric.join", fabric.Settings["join"], []any{"a:1", "b:2"}},
		{"fabric.limits.switching", fabric.Limits["switching"], map[string]any{"mode": "recommend", "up_at": 0.9, "down_at": 0.5}},
	} {
		if !reflect.DeepEqual(tc.got, tc.want) {
			t.Errorf("%s = %#v, want %#v", tc.name, tc.got, tc.want)
		}
	}
}

func TestEnvKey(t *testing.T) {
	for _, tc := range []struct {
		name, key, err string
	}{
		{"DW_SERVER__LISTEN", "server.listen", ""},
		{"DW_DATA_DIR", "data_dir", ""},
		{"DW_SUBSYSTEMS__DBSTORAGE__LIMITS__MAX_PAGE_SIZE", "subsystems.dbstorage.limits.max_page_size", ""},
		{"DW_SUBSYSTEMS__MY_PLUGIN__SOME_KEY", "subsystems.my_plugin.some_key", ""},
		{"DW_LOG", "log", ""},
		{"DW_ADDR", "", ""},
		{"DW_TOKEN", "", ""},
		{"DW_HOST_PID", "", ""},
		{"DW_ADMIN_TOKEN", "", ""},
		{"DW_", "", ""},
		{"HOME", "", ""},
		{"DW_SERVER__", "", "empty key name"},
		{"DW___SERVER", "", "empty key name"},
		{"DW_A.B__C", "", `"."`},
		{"DW_NOT_A_SECTION__KEY", "not_a_section.key", ""},
	} {
		key, err := envKey(tc.name)
		if key != tc.key || (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("envKey(%q) = %q, %v; want %q, error containing %q", tc.name, key, err, tc.key, tc.err)
		}
	}
}

func TestEnvValue(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want any
	}{
		{"100", 100},
		{"-3", -3},
		{"0.5", 0.5},
		{"true", true},
		{"false", false},
		{"~", nil},
		{"null", nil},
		{"", ""},
		{"64MiB", "64MiB"},
		{"10s", "10s"},
		{"127.0.0.1:7070", "127.0.0.1:7070"},
		{"[::1]:7070", "[::1]:7070"}, // not a YAML list: stays the address
		{"[a, b]", []any{"a", "b"}},
		{"[]", []any{}},
		{"{nvme: 1, hdd: 2}", map[string]any{"nvme": 1, "hdd": 2}},
		{`"quoted # text"`, "quoted # text"},
		{"'007'", "007"},
		{"a: b", "a: b"},
		{"- a", "- a"},
		{"#ff0000", "#ff0000"},
		{"value # not a comment", "value # not a comment"},
		{"  padded  ", "  padded  "},
		{"yes", "yes"},
		{"2001-12-14", "2001-12-14"},
		{"[a, b", "[a, b"},           // not valid YAML: as written
		{"{a: *x}", "{a: *x}"},       // not valid YAML: as written
		{"[[[[[[[[[[", "[[[[[[[[[["}, // not valid YAML: as written
	} {
		if got := envValue(tc.in); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("envValue(%q) = %#v, want %#v", tc.in, got, tc.want)
		}
	}
}

func TestFreshInstancePerParse(t *testing.T) {
	// A key deleted from the file between two loads is gone in the second
	// (koanf keeps it when loading into a used instance, #77).
	dir := t.TempDir()
	path := filepath.Join(dir, "dw.yaml")
	first := "subsystems:\n  extra: {a: 1}\n  fabric: {federation: eu, limits: {topology: mesh}}\nlog: {level: debug}\n"
	if err := os.WriteFile(path, []byte(first), 0o600); err != nil {
		t.Fatal(err)
	}
	c1, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c1.Subsystems["extra"]; !ok || c1.Log.Level != "debug" {
		t.Fatalf("first load: %+v", c1)
	}
	c1.Subsystems["fabric"].Limits["topology"] = "mutated" // must not reach a later load

	if err := os.WriteFile(path, []byte("subsystems:\n  fabric: {enabled: true}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c2, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c2.Subsystems["extra"]; ok {
		t.Error("subsystems.extra leaked from the first load")
	}
	if c2.Log.Level != "info" {
		t.Errorf("log.level = %q leaked from the first load", c2.Log.Level)
	}
	f := c2.Subsystems["fabric"]
	if f.Settings["federation"] != "default" || f.Limits["topology"] != "star" || !f.Enabled {
		t.Errorf("fabric = %+v, want the defaults, enabled", f)
	}
}

func TestThirdPartyPassThrough(t *testing.T) {
	c := mustParse(t, `
subsystems:
  acme-queue:
    brokers: [{host: a, port: 1}, {host: b, port: 2}]
    mode: fast
    nested: {deep: {deeper: [1, 2.5, "three", null, false]}}
    limits:
      max_inflight: 64
      weights: {a: 0.25, b: 0.75}
      anything: [x]
`, noEnv)
	got, ok := c.Subsystems["acme-queue"]
	if !ok {
		t.Fatal("acme-queue missing")
	}
	want := Subsystem{
		Enabled: true,
		Settings: map[string]any{
			"brokers": []any{map[string]any{"host": "a", "port": 1}, map[string]any{"host": "b", "port": 2}},
			"mode":    "fast",
			"nested":  map[string]any{"deep": map[string]any{"deeper": []any{1, 2.5, "three", nil, false}}},
		},
		Limits: map[string]any{
			"max_inflight": 64,
			"weights":      map[string]any{"a": 0.25, "b": 0.75},
			"anything":     []any{"x"},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %#v\nwant %#v", got, want)
	}
}

func TestHugeStringPassesThrough(t *testing.T) {
	big := strings.Repeat("x", 3<<20)
	c := mustParse(t, "subsystems:\n  blob:\n    data: "+big+"\n", noEnv)
	if got := c.Subsystems["blob"].Settings["data"]; got != big {
		t.Errorf("data: got %d bytes, want %d", len(fmt.Sprint(got)), len(big))
	}
}

func TestNullSemantics(t *testing.T) {
	// A null over a mapping keeps the defaults; a settings mapping given
	// as {} replaces the default one.
	c := mustParse(t, "subsystems:\n  dataprotection:\n    sources: {}\n    limits: ~\n  fabric:\n", noEnv)
	dp := c.Subsystems["dataprotection"]
	if s := dp.Settings["sources"]; !reflect.DeepEqual(s, map[string]any{}) {
		t.Errorf("sources = %#v, want {}", s)
	}
	if dp.Limits["retention_interval"] != "1h" {
		t.Errorf("limits lost their defaults: %#v", dp.Limits)
	}
	if f := c.Subsystems["fabric"]; !f.Enabled || f.Settings["bind"] != "127.0.0.1:7946" {
		t.Errorf("fabric = %#v, want the default section", f)
	}
}

func TestValidate(t *testing.T) {
	t.Setenv("DW_TEST_TOKEN", "abcdefghijklmnop")
	valid := func() *Config {
		c := designDefaults(t)
		c.Server.Auth.Tokens = []Token{{Name: "me", TokenEnv: "DW_TEST_TOKEN"}}
		return c
	}
	if err := valid().Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	for _, tc := range []struct {
		name   string
		change func(*Config)
		want   string
	}{
		{"empty config", func(c *Config) { *c = Config{} }, "config: data_dir: must be a folder path"},
		{"listen", func(c *Config) { c.Server.Listen = "7070" }, `config: server.listen: must be host:port, got "7070"`},
		{"bad port", func(c *Config) { c.Server.Listen = "127.0.0.1:http" }, "port from 0 to 65535"},
		{"not loopback", func(c *Config) { c.Server.Listen = "10.1.2.3:80"; c.Server.Auth.Tokens = nil }, "10.1.2.3:80 is not a loopback address"},
		{"ipv6 any", func(c *Config) { c.Server.Listen = "[::]:80"; c.Server.Auth.Tokens = nil }, "[::]:80 is not a loopback address"},
		{"level", func(c *Config) { c.Log.Level = "loud" }, `log.level: must be one of trace, debug, info, warn, error, got "loud"`},
		{"format", func(c *Config) { c.Log.Format = "yaml" }, `log.format: must be one of text, json, got "yaml"`},
		{"plugins dir", func(c *Config) { c.Plugins.Dir = "" }, "plugins.dir: must be a folder path"},
		{"timeout zero", func(c *Config) { c.Plugins.StartTimeout = 0 }, `plugins.start_timeout: must be more than 0s and at most 10m, got "0s"`},
		{"timeout long", func(c *Config) { c.Plugins.StartTimeout = time.Hour }, `got "1h0m0s"`},
		{"checksum key", func(c *Config) { c.Plugins.Checksums = map[string]string{"fabric": strings.Repeat("a", 64)} }, "plugins.checksums.fabric: key must be dw-plugin-<name>"},
		{"checksum value", func(c *Config) { c.Plugins.Checksums = map[string]string{"dw-plugin-fabric": strings.Repeat("g", 64)} }, "plugins.checksums.dw-plugin-fabric: must be a 64-character hex SHA-256"},
		{"checksum short", func(c *Config) { c.Plugins.Checksums = map[string]string{"dw-plugin-fabric": strings.Repeat("a", 63)} }, "must be a 64-character hex SHA-256"},
		{"subsystem name", func(c *Config) { c.Subsystems["Bad"] = Subsystem{} }, "subsystems.Bad: subsystem name must be"},
		{"token unset", func(c *Config) { c.Server.Auth.Tokens[0].TokenEnv = "DW_TEST_NOT_SET_ANYWHERE" }, "server.auth.tokens[0].token_env: environment variable DW_TEST_NOT_SET_ANYWHERE is not set"},
		{"token name", func(c *Config) { c.Server.Auth.Tokens[0].Name = "" }, "server.auth.tokens[0].name: must not be empty"},
		{"token short", func(c *Config) { t.Setenv("DW_TEST_TOKEN", "fifteen-bytes!!") }, "holds a token of 15 bytes; tokens must be at least 16 bytes"},
		{"token policy", func(c *Config) { c.Server.Auth.Tokens[0].Policy = "root" }, `server.auth.tokens[0].policy: must be one of read, write, admin, got "root"`},
		{"token subsystem unknown", func(c *Config) { c.Server.Auth.Tokens[0].Subsystems = []string{"nope"} }, `server.auth.tokens[0].subsystems[0]: names no subsystem of the subsystems section, got "nope"`},
		{"token subsystem bad", func(c *Config) { c.Server.Auth.Tokens[0].Subsystems = []string{"../x"} }, `server.auth.tokens[0].subsystems[0]: subsystem name must be`},
		{"token subsystem twice", func(c *Config) { c.Server.Auth.Tokens[0].Subsystems = []string{"fabric", "fabric"} }, `server.auth.tokens[0].subsystems[1]: duplicate subsystem "fabric"`},
		{"off loopback without tls", func(c *Config) { c.Server.Listen = "10.1.2.3:80" }, "server.tls is not set: tokens would travel in clear text"},
		{"key without cert", func(c *Config) { c.Server.TLS.KeyFile = "/k.pem" }, "server.tls.cert_file: must be set when server.tls.key_file is"},
		{"cert without key", func(c *Config) { c.Server.TLS.CertFile = "/c.pem" }, "server.tls.key_file: must be set when server.tls.cert_file is"},
		{"client ca without cert", func(c *Config) { c.Server.TLS.ClientCAFile = "/ca.pem" }, "server.tls.client_ca_file: needs server.tls.cert_file"},
		{"tls version", func(c *Config) { c.Server.TLS.MinVersion = "1.1" }, `server.tls.min_version: must be one of 1.2, 1.3, got "1.1"`},
		{"audit size", func(c *Config) { c.Server.Audit.MaxSize = 1<<20 - 1 }, "server.audit.max_size: must be at least 1MiB, got 1048575 bytes"},
		{"audit files", func(c *Config) { c.Server.Audit.MaxFiles = -1 }, "server.audit.max_files: must be from 0 to 1000, got -1"},
		{"conns per address", func(c *Config) { c.Server.MaxConnsPerAddress = -1 }, "server.max_connections_per_address: must be 0 (no bound) or more, got -1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := valid()
			tc.change(c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate() = %v, want an error containing %q", err, tc.want)
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Errorf("error is %T, want *Error", err)
			}
		})
	}
}

func TestValidateBoundaries(t *testing.T) {
	t.Setenv("DW_TEST_BOUND_TOKEN", "0123456789abcdef")
	t.Setenv("DW_TEST_BOUND_SHORT", "0123456789abcde")
	for _, tc := range []struct {
		name   string
		change func(*Config)
		ok     bool
	}{
		{"timeout 1ns", func(c *Config) { c.Plugins.StartTimeout = 1 }, true},
		{"timeout 10m", func(c *Config) { c.Plugins.StartTimeout = 10 * time.Minute }, true},
		{"timeout 10m+1ns", func(c *Config) { c.Plugins.StartTimeout = 10*time.Minute + 1 }, false},
		{"timeout -1ns", func(c *Config) { c.Plugins.StartTimeout = -1 }, false},
		{"port 0", func(c *Config) { c.Server.Listen = "127.0.0.1:0" }, true},
		{"port 65535", func(c *Config) { c.Server.Listen = "127.0.0.1:65535" }, true},
		{"port 65536", func(c *Config) { c.Server.Listen = "127.0.0.1:65536" }, false},
		{"port -1", func(c *Config) { c.Server.Listen = "127.0.0.1:-1" }, false},
		{"loopback 127.255.255.254", func(c *Config) { c.Server.Listen = "127.255.255.254:1" }, true},
		{"not loopback 128.0.0.1", func(c *Config) { c.Server.Listen = "128.0.0.1:1" }, false},
		{"loopback ::1", func(c *Config) { c.Server.Listen = "[::1]:1" }, true},
		{"loopback LOCALHOST", func(c *Config) { c.Server.Listen = "LOCALHOST:1" }, true},
		{"off loopback with tls", func(c *Config) {
			c.Server.Listen = "10.0.0.1:443"
			c.Server.TLS = TLS{CertFile: "/c.pem", KeyFile: "/k.pem", MinVersion: "1.3"}
			c.Server.Auth.Tokens = []Token{{Name: "ops", TokenEnv: "DW_TEST_BOUND_TOKEN"}}
		}, true},
		{"off loopback insecure", func(c *Config) {
			c.Server.Listen = "10.0.0.1:80"
			c.Server.InsecureHTTP = true
			c.Server.Auth.Tokens = []Token{{Name: "ops", TokenEnv: "DW_TEST_BOUND_TOKEN"}}
		}, true},
		{"token of 16 bytes", func(c *Config) { c.Server.Auth.Tokens = []Token{{Name: "ops", TokenEnv: "DW_TEST_BOUND_TOKEN"}} }, true},
		{"token of 15 bytes", func(c *Config) { c.Server.Auth.Tokens = []Token{{Name: "ops", TokenEnv: "DW_TEST_BOUND_SHORT"}} }, false},
		{"audit size 1MiB", func(c *Config) { c.Server.Audit.MaxSize = 1 << 20 }, true},
		{"audit files 1000", func(c *Config) { c.Server.Audit.MaxFiles = 1000 }, true},
		{"audit files 1001", func(c *Config) { c.Server.Audit.MaxFiles = 1001 }, false},
		{"name of 63", func(c *Config) { c.Subsystems["a"+strings.Repeat("b", 62)] = Subsystem{} }, true},
		{"name of 64", func(c *Config) { c.Subsystems["a"+strings.Repeat("b", 63)] = Subsystem{} }, false},
		{"name of 1", func(c *Config) { c.Subsystems["a"] = Subsystem{} }, true},
		{"name with _ and -", func(c *Config) { c.Subsystems["a_b-9"] = Subsystem{} }, true},
		{"name starting with a digit", func(c *Config) { c.Subsystems["9a"] = Subsystem{} }, false},
		{"upper-case checksum", func(c *Config) { c.Plugins.Checksums = map[string]string{"dw-plugin-a": strings.Repeat("A", 64)} }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := designDefaults(t)
			tc.change(c)
			if err := c.Validate(); (err == nil) != tc.ok {
				t.Errorf("Validate() = %v, want ok %v", err, tc.ok)
			}
		})
	}
}

// tokenNames maps each credential's value to its name.
func tokenNames(creds []Credential) map[string]string {
	out := map[string]string{}
	for _, c := range creds {
		out[c.Value] = c.Name
	}
	return out
}

func TestCredentialValues(t *testing.T) {
	c := designDefaults(t)
	c.Server.Auth.Tokens = []Token{{Name: "admin", TokenEnv: "DW_T_A"}, {Name: "ci", TokenEnv: "DW_T_B"}}
	const aaa, bbb = "aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"
	creds, err := c.credentials(environLookup(envOf("DW_T_A="+aaa, "DW_T_B="+bbb)))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := tokenNames(creds), map[string]string{aaa: "admin", bbb: "ci"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	for env, want := range map[string][]string{
		"unset": {"DW_T_A=" + aaa},
		"empty": {"DW_T_A=" + aaa, "DW_T_B="},
		"same":  {"DW_T_A=" + aaa, "DW_T_B=" + aaa},
		"short": {"DW_T_A=" + aaa, "DW_T_B=" + bbb[:15]},
	} {
		_, err := c.credentials(environLookup(envOf(want...)))
		if err == nil || !strings.Contains(err.Error(), "server.auth.tokens[1].token_env") || strings.Contains(err.Error(), "aaaa") || strings.Contains(err.Error(), "bbbb") {
			t.Errorf("%s: err = %v, want one naming the key and not the token", env, err)
		}
	}

	t.Setenv("DW_T_A", "from-os-0123456789")
	t.Setenv("DW_T_B", "also-from-os-0123456789")
	creds, err = c.Credentials()
	if got := tokenNames(creds); err != nil || got["from-os-0123456789"] != "admin" || got["also-from-os-0123456789"] != "ci" {
		t.Errorf("Credentials() = %v, %v", got, err)
	}
}

func TestRedacted(t *testing.T) {
	t.Setenv("DW_RED_TOKEN", "super-secret-token-value")
	c := mustParse(t, `
server:
  listen: 0.0.0.0:7070
  insecure_http: true
  auth: {tokens: [{name: admin, token_env: DW_RED_TOKEN}]}
subsystems:
  dbstorage:
    strategies: [{name: pg, driver: postgres, dsn: "postgres://dw:pa55word@db:5432/dw"}]
  x:
    password: p1
    api_key: k1
    encrypt_key_env: DW_GOSSIP
    nested: {client_secret: s1, plain: visible}
    limits: {max_key_size: 10}
`, os.Environ)
	r := c.Redacted()
	text := fmt.Sprint(r)
	for _, secret := range []string{"super-secret-token-value", "pa55word", "p1", "k1", "s1"} {
		if strings.Contains(text, secret) {
			t.Errorf("Redacted shows %q: %s", secret, text)
		}
	}
	for _, shown := range []string{"DW_RED_TOKEN", "admin", "DW_GOSSIP", "visible", "postgres://dw:<redacted>@db:5432/dw", "max_key_size:10"} {
		if !strings.Contains(text, shown) {
			t.Errorf("Redacted hides %q: %s", shown, text)
		}
	}
	if got := r["plugins"].(map[string]any)["start_timeout"]; got != "10s" {
		t.Errorf("start_timeout = %#v, want \"10s\"", got)
	}
	// The map shares nothing with the config.
	r["subsystems"].(map[string]any)["x"].(map[string]any)["nested"].(map[string]any)["plain"] = "changed"
	r["subsystems"].(map[string]any)["x"].(map[string]any)["limits"].(map[string]any)["max_key_size"] = 0
	if c.Subsystems["x"].Settings["nested"].(map[string]any)["plain"] != "visible" || c.Subsystems["x"].Limits["max_key_size"] != 10 {
		t.Error("changing the Redacted map changed the config")
	}
}

func TestSuggest(t *testing.T) {
	allowed := []string{"checksums", "dir", "start_timeout"}
	for _, tc := range []struct{ key, want string }{
		{"dri", "dir"},
		{"Dir", "dir"},
		{"start-timeout", "start_timeout"},
		{"starttimeout", "start_timeout"},
		{"start_timout", "start_timeout"},
		{"checksum", "checksums"},
		{"chekcsums", "checksums"},
		{"xyz", ""},
		{"timeout", ""},
		{strings.Repeat("q", 10000), ""},
	} {
		if got := suggest(tc.key, allowed); got != tc.want {
			t.Errorf("suggest(%.20q) = %q, want %q", tc.key, got, tc.want)
		}
	}
}

func TestParseLargeDocumentIsBounded(t *testing.T) {
	// Just under the node bound: accepted, in reasonable time.
	var b strings.Builder
	b.WriteString("subsystems:\n  big:\n    items:\n")
	for i := range 30000 {
		fmt.Fprintf(&b, "      - {a: %d}\n", i)
	}
	start := time.Now()
	c := mustParse(t, b.String(), noEnv)
	if n := len(c.Subsystems["big"].Settings["items"].([]any)); n != 30000 {
		t.Errorf("%d items, want 30000", n)
	}
	t.Logf("parsed %d bytes in %v", b.Len(), time.Since(start))

	// Over it: refused.
	for i := 30000; i < 40000; i++ {
		fmt.Fprintf(&b, "      - {a: %d}\n", i)
	}
	if msg := parseErr(t, b.String(), noEnv); !strings.Contains(msg, "more than 100000 keys and values") {
		t.Errorf("err = %s", msg)
	}
}

func BenchmarkParseDefaults(b *testing.B) {
	for b.Loop() {
		if _, err := parse(nil, "defaults", noEnv); err != nil {
			b.Fatal(err)
		}
	}
}

func TestCredentials(t *testing.T) {
	c := designDefaults(t)
	c.Server.Auth.Tokens = []Token{
		{Name: "ops", TokenEnv: "DW_T_A"},
		{Name: "dash", TokenEnv: "DW_T_B", Policy: PolicyRead, Subsystems: []string{"dbstorage"}},
	}
	const aaa, bbb = "aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"
	got, err := c.credentials(environLookup(envOf("DW_T_A="+aaa, "DW_T_B="+bbb)))
	if err != nil {
		t.Fatal(err)
	}
	want := []Credential{
		{Token: Token{Name: "ops", TokenEnv: "DW_T_A", Policy: PolicyAdmin}, Value: aaa},
		{Token: Token{Name: "dash", TokenEnv: "DW_T_B", Policy: PolicyRead, Subsystems: []string{"dbstorage"}}, Value: bbb},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
	got[1].Subsystems[0] = "changed"
	if c.Server.Auth.Tokens[1].Subsystems[0] != "dbstorage" {
		t.Error("Credentials shares its subsystems with the config")
	}
	if _, err := c.credentials(environLookup(envOf("DW_T_A="+aaa, "DW_T_B="+bbb[:15]))); err == nil || strings.Contains(err.Error(), "bbbb") {
		t.Errorf("short token: err = %v, want one without the token", err)
	}
}
