package config

import (
	"math"
	"slices"
	"strings"
	"testing"
)

// diffBase is the configuration the diff tests change.
const diffBase = `server: {listen: 127.0.0.1:7070}
log: {level: info, format: text}
data_dir: /srv/dw/data
plugins:
  dir: /srv/dw/plugins
  start_timeout: 10s
  checksums: {dw-plugin-good: ` + sumA + `}
subsystems:
  good:
    path: db/one.sqlite
    nested: {a: 1, b: [1, 2]}
    limits: {max_items: 100, mode: fast, nested: {x: 1, y: 2.5}}
  other:
    limits: {max_items: 5}
  off:
    enabled: false
    root: files
    limits: {max_items: 7}
`

const (
	sumA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	sumB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

func TestCompare(t *testing.T) {
	env := envOf("TOKEN_A=alpha-secret-0123456", "TOKEN_B=beta-secret-01234567")
	type sub struct {
		name                                             string
		added, removed, enabled, disabled, restart, live bool
		limits, settings                                 []string
	}
	tests := []struct {
		name     string
		edit     func(string) string // turns diffBase into the new config
		host     []string
		subs     []sub
		keys     []string
		restarts []string
	}{
		{
			name: "identical",
			edit: func(s string) string { return s },
		},
		{
			name: "same values written differently",
			edit: func(s string) string {
				s = strings.Replace(s, "max_items: 100,", "max_items: 100.0,", 1)
				s = strings.Replace(s, "{x: 1, y: 2.5}", "{y: 2.50, x: 1.0}", 1)
				return strings.Replace(s, "dw-plugin-good: "+sumA, "dw-plugin-good: "+strings.ToUpper(sumA), 1)
			},
		},
		{
			name: "host keys",
			edit: func(s string) string {
				s = strings.Replace(s, "listen: 127.0.0.1:7070", "listen: 127.0.0.1:7071", 1)
				s = strings.Replace(s, "level: info, format: text", "level: debug, format: json", 1)
				s = strings.Replace(s, "data_dir: /srv/dw/data", "data_dir: /srv/dw/data2", 1)
				s = strings.Replace(s, "dir: /srv/dw/plugins", "dir: /srv/dw/plugins2", 1)
				return strings.Replace(s, "start_timeout: 10s", "start_timeout: 11s", 1)
			},
			host: []string{"data_dir", "log.format", "log.level", "plugins.dir", "plugins.start_timeout", "server.listen"},
			keys: []string{"data_dir", "log.format", "log.level", "plugins.dir", "plugins.start_timeout", "server.listen"},
		},
		{
			name: "same duration written differently",
			edit: func(s string) string { return strings.Replace(s, "start_timeout: 10s", "start_timeout: 10000ms", 1) },
		},
		{
			name: "checksums added changed removed",
			edit: func(s string) string {
				return strings.Replace(s, "checksums: {dw-plugin-good: "+sumA+"}", "checksums: {dw-plugin-good: "+sumB+", dw-plugin-new: "+sumA+"}", 1)
			},
			host: []string{"plugins.checksums.dw-plugin-good", "plugins.checksums.dw-plugin-new"},
			keys: []string{"plugins.checksums.dw-plugin-good", "plugins.checksums.dw-plugin-new"},
		},
		{
			name: "tokens",
			edit: func(s string) string {
				return strings.Replace(s, "listen: 127.0.0.1:7070}", "listen: 127.0.0.1:7070, auth: {tokens: [{name: a, token_env: TOKEN_A}]}}", 1)
			},
			host: []string{"server.auth.tokens"},
			keys: []string{"server.auth.tokens"},
		},
		{
			name: "limits changed live",
			edit: func(s string) string {
				s = strings.Replace(s, "max_items: 100,", "max_items: 101,", 1)
				return strings.Replace(s, "{x: 1, y: 2.5}", "{x: 1, y: 2.6, z: 0}", 1)
			},
			subs: []sub{{name: "good", live: true, limits: []string{
				"subsystems.good.limits.max_items", "subsystems.good.limits.nested.y", "subsystems.good.limits.nested.z"}}},
			keys: []string{"subsystems.good.limits.max_items", "subsystems.good.limits.nested.y", "subsystems.good.limits.nested.z"},
		},
		{
			name: "settings changed restart",
			edit: func(s string) string {
				s = strings.Replace(s, "path: db/one.sqlite", "path: db/two.sqlite", 1)
				return strings.Replace(s, "b: [1, 2]", "b: [1, 2, 3]", 1)
			},
			subs:     []sub{{name: "good", restart: true, settings: []string{"subsystems.good.nested.b", "subsystems.good.path"}}},
			keys:     []string{"subsystems.good.nested.b", "subsystems.good.path"},
			restarts: []string{"good"},
		},
		{
			name: "settings and limits together restart",
			edit: func(s string) string {
				s = strings.Replace(s, "path: db/one.sqlite", "path: db/two.sqlite", 1)
				return strings.Replace(s, "max_items: 100,", "max_items: 1,", 1)
			},
			subs: []sub{{name: "good", restart: true, settings: []string{"subsystems.good.path"},
				limits: []string{"subsystems.good.limits.max_items"}}},
			keys:     []string{"subsystems.good.limits.max_items", "subsystems.good.path"},
			restarts: []string{"good"},
		},
		{
			name: "disabled subsystem: settings and limits change without a restart",
			edit: func(s string) string {
				s = strings.Replace(s, "root: files", "root: other", 1)
				return strings.Replace(s, "max_items: 7", "max_items: 8", 1)
			},
			subs: []sub{{name: "off", settings: []string{"subsystems.off.root"}, limits: []string{"subsystems.off.limits.max_items"}}},
			keys: []string{"subsystems.off.limits.max_items", "subsystems.off.root"},
		},
		{
			name: "enable and disable",
			edit: func(s string) string {
				s = strings.Replace(s, "enabled: false", "enabled: true", 1)
				return strings.Replace(s, "  other:\n", "  other:\n    enabled: false\n", 1)
			},
			subs: []sub{
				{name: "off", enabled: true, restart: true},
				{name: "other", disabled: true, restart: true},
			},
			keys:     []string{"subsystems.off.enabled", "subsystems.other.enabled"},
			restarts: []string{"off", "other"},
		},
		{
			name: "added with settings",
			edit: func(s string) string { return s + "  fresh:\n    dsn: x\n    limits: {max_items: 3}\n" },
			subs: []sub{{name: "fresh", added: true, restart: true, settings: []string{"subsystems.fresh.dsn"},
				limits: []string{"subsystems.fresh.limits.max_items"}}},
			keys:     []string{"subsystems.fresh"},
			restarts: []string{"fresh"},
		},
		{
			name: "added with limits only: applied live to a drop-in plugin",
			edit: func(s string) string { return s + "  fresh:\n    limits: {max_items: 3}\n" },
			subs: []sub{{name: "fresh", added: true, live: true, limits: []string{"subsystems.fresh.limits.max_items"}}},
			keys: []string{"subsystems.fresh"},
		},
		{
			name:     "added disabled",
			edit:     func(s string) string { return s + "  fresh: {enabled: false}\n" },
			subs:     []sub{{name: "fresh", added: true, disabled: true, restart: true}},
			keys:     []string{"subsystems.fresh"},
			restarts: []string{"fresh"},
		},
		{
			name: "added empty section: nothing to do but recorded",
			edit: func(s string) string { return s + "  fresh:\n" },
			subs: []sub{{name: "fresh", added: true}},
			keys: []string{"subsystems.fresh"},
		},
		{
			name: "removed",
			edit: func(s string) string {
				return strings.Replace(s, "  other:\n    limits: {max_items: 5}\n", "", 1)
			},
			subs: []sub{{name: "other", removed: true, live: true, limits: []string{"subsystems.other.limits.max_items"}}},
			keys: []string{"subsystems.other"},
		},
		{
			name: "removed disabled: runs as a drop-in",
			edit: func(s string) string {
				return strings.Replace(s, "  off:\n    enabled: false\n    root: files\n    limits: {max_items: 7}\n", "", 1)
			},
			subs: []sub{{name: "off", removed: true, enabled: true, restart: true, settings: []string{"subsystems.off.root"},
				limits: []string{"subsystems.off.limits.max_items"}}},
			keys:     []string{"subsystems.off"},
			restarts: []string{"off"},
		},
		{
			name: "odd key names are quoted",
			edit: func(s string) string {
				return strings.Replace(s, "max_items: 5}", "max_items: 5, \"a.b\": 1}", 1)
			},
			subs: []sub{{name: "other", live: true, limits: []string{`subsystems.other.limits."a.b"`}}},
			keys: []string{`subsystems.other.limits."a.b"`},
		},
		{
			name: "type change and null",
			edit: func(s string) string {
				s = strings.Replace(s, "path: db/one.sqlite", "path: 1", 1)
				return strings.Replace(s, "nested: {a: 1, b: [1, 2]}", "nested: {a: null, b: [1, 2]}", 1)
			},
			subs:     []sub{{name: "good", restart: true, settings: []string{"subsystems.good.nested.a", "subsystems.good.path"}}},
			keys:     []string{"subsystems.good.nested.a", "subsystems.good.path"},
			restarts: []string{"good"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old := mustParse(t, diffBase, env)
			new := mustParse(t, tt.edit(diffBase), env)
			d := Compare(old, new)
			if !slices.Equal(d.Host, tt.host) {
				t.Errorf("Host = %q, want %q", d.Host, tt.host)
			}
			var got []sub
			for _, s := range d.Subsystems {
				got = append(got, sub{name: s.Name, added: s.Added, removed: s.Removed, enabled: s.Enabled, disabled: s.Disabled,
					restart: s.Restart(), live: s.LiveLimits(), limits: s.Limits, settings: s.Settings})
			}
			if len(got) != len(tt.subs) {
				t.Fatalf("Subsystems = %+v, want %+v", got, tt.subs)
			}
			for i := range got {
				g, w := got[i], tt.subs[i]
				if g.name != w.name || g.added != w.added || g.removed != w.removed || g.enabled != w.enabled ||
					g.disabled != w.disabled || g.restart != w.restart || g.live != w.live ||
					!slices.Equal(g.limits, w.limits) || !slices.Equal(g.settings, w.settings) {
					t.Errorf("Subsystems[%d] = %+v, want %+v", i, g, w)
				}
			}
			if k := d.ChangedKeys(); !slices.Equal(k, tt.keys) {
				t.Errorf("ChangedKeys = %q, want %q", k, tt.keys)
			}
			if r := d.Restarts(); !slices.Equal(r, tt.restarts) {
				t.Errorf("Restarts = %q, want %q", r, tt.restarts)
			}
			if d.Empty() != (len(tt.keys) == 0 && len(tt.subs) == 0) {
				t.Errorf("Empty = %v with keys %q", d.Empty(), tt.keys)
			}
			// The reverse diff names the same keys.
			if k := Compare(new, old).ChangedKeys(); !slices.Equal(k, tt.keys) {
				t.Errorf("reverse ChangedKeys = %q, want %q", k, tt.keys)
			}
		})
	}
}

func TestEqualValues(t *testing.T) {
	tests := []struct {
		a, b any
		want bool
	}{
		{100, 100.0, true},
		{int64(100), uint64(100), true},
		{100, 100.5, false},
		{-1, uint64(1), false},
		{int64(-9223372036854775808), -9223372036854775808.0, true},
		{uint64(18446744073709551615), int64(-1), false},
		{uint64(9007199254740993), 9007199254740992.0, false}, // 2^53+1 is not the float 2^53
		{0.0, math.Copysign(0, -1), true},
		{1.5, 1.5, true},
		{"1", 1, false},
		{nil, nil, true},
		{nil, map[string]any{}, false},
		{map[string]any{"a": 1}, map[string]any{"a": 1.0}, true},
		{map[string]any{"a": 1}, map[string]any{"b": 1}, false},
		{[]any{1, "x"}, []any{1.0, "x"}, true},
		{[]any{1, "x"}, []any{"x", 1}, false},
		{true, true, true},
		{true, "true", false},
		{[]string{"a"}, []string{"a"}, true}, // built in code, not parsed
	}
	for _, tt := range tests {
		if got := equalValues(tt.a, tt.b); got != tt.want {
			t.Errorf("equalValues(%#v, %#v) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
		if got := equalValues(tt.b, tt.a); got != tt.want {
			t.Errorf("equalValues(%#v, %#v) = %v, want %v (reversed)", tt.b, tt.a, got, tt.want)
		}
	}
}

func TestDiffSubsystemAndHostChanged(t *testing.T) {
	old := mustParse(t, diffBase, noEnv)
	new := mustParse(t, strings.Replace(diffBase, "checksums: {dw-plugin-good: "+sumA+"}", "checksums: {}", 1), noEnv)
	d := Compare(old, new)
	if !d.HostChanged("plugins.checksums") || !d.HostChanged("plugins.checksums.dw-plugin-good") || d.HostChanged("server.listen") {
		t.Fatalf("HostChanged wrong for %q", d.Host)
	}
	if _, ok := d.Subsystem("good"); ok {
		t.Fatal("Subsystem(good) found in a diff without subsystem changes")
	}
}
