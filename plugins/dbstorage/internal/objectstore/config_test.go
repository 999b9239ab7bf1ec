package objectstore

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/datawarehouse/dw/sdk/v6"
)

func cfgWith(settings map[string]any) sdk.Config {
	return sdk.Config{Subsystem: "dbstorage", Settings: settings, DataDir: "/var/lib/dw"}
}

func TestParseSettingsDefaults(t *testing.T) {
	s, rs, err := parseSettings(cfgWith(nil))
	if err != nil {
		t.Fatal(err)
	}
	if s.DefaultStrategy != "primary" || len(rs) != 1 || rs[0].Driver != "sqlite" {
		t.Fatalf("defaults: %+v %+v", s, rs)
	}
	if want := filepath.Join("/var/lib/dw", "db/objects.sqlite"); rs[0].dsn != want {
		t.Fatalf("sqlite path %q, want %q", rs[0].dsn, want)
	}
	if rs[0].ChunkSize != DefaultChunkSize {
		t.Fatalf("chunk size %v", rs[0].ChunkSize)
	}
}

func TestParseSettingsSeveral(t *testing.T) {
	t.Setenv("DW_TEST_PG_DSN", "postgres://u:p@127.0.0.1:5432/db")
	s, rs, err := parseSettings(cfgWith(map[string]any{
		"strategies": []any{
			map[string]any{"name": "primary", "driver": "sqlite", "dsn": "/abs/objects.sqlite", "chunk_size": "256KiB"},
			map[string]any{"name": "pg", "driver": "postgres", "dsn_env": "DW_TEST_PG_DSN"},
		},
		"default_strategy": "pg",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if s.DefaultStrategy != "pg" || len(rs) != 2 {
		t.Fatalf("%+v", s)
	}
	if rs[0].dsn != "/abs/objects.sqlite" || rs[0].ChunkSize != 256*sdk.KiB {
		t.Fatalf("sqlite: %+v", rs[0])
	}
	if rs[1].dsn != "postgres://u:p@127.0.0.1:5432/db" {
		t.Fatalf("dsn_env not read: %+v", rs[1])
	}
}

func TestParseSettingsRejects(t *testing.T) {
	strat := func(kv ...any) map[string]any {
		m := map[string]any{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	tests := []struct {
		name     string
		settings map[string]any
		want     string
	}{
		{"unknown driver", map[string]any{"strategies": []any{strat("name", "a", "driver", "mysql", "dsn", "x")}}, "driver"},
		{"missing driver", map[string]any{"strategies": []any{strat("name", "a", "dsn", "x")}}, "driver: must be one of sqlite, postgres"},
		{"bad name", map[string]any{"strategies": []any{strat("name", "A B", "driver", "sqlite", "dsn", "x")}}, "not a valid strategy name"},
		{"empty name", map[string]any{"strategies": []any{strat("name", "", "driver", "sqlite", "dsn", "x")}}, "not a valid strategy name"},
		{"duplicate", map[string]any{"strategies": []any{strat("name", "a", "driver", "sqlite", "dsn", "x"), strat("name", "a", "driver", "sqlite", "dsn", "y")}}, "defined twice"},
		{"no dsn", map[string]any{"strategies": []any{strat("name", "a", "driver", "sqlite")}}, "dsn: missing"},
		{"dsn and env", map[string]any{"strategies": []any{strat("name", "a", "driver", "postgres", "dsn", "x", "dsn_env", "Y")}}, "not both"},
		{"empty env", map[string]any{"strategies": []any{strat("name", "a", "driver", "postgres", "dsn_env", "DW_TEST_SURELY_UNSET")}}, "empty or not set"},
		{"sqlite uri", map[string]any{"strategies": []any{strat("name", "a", "driver", "sqlite", "dsn", "file:x.db?mode=ro")}}, "plain file path"},
		{"tiny chunk", map[string]any{"strategies": []any{strat("name", "a", "driver", "sqlite", "dsn", "x", "chunk_size", "1KiB")}}, "below the minimum"},
		{"huge chunk", map[string]any{"strategies": []any{strat("name", "a", "driver", "sqlite", "dsn", "x", "chunk_size", "64MiB")}}, "chunk_size"},
		{"unknown default", map[string]any{"strategies": []any{strat("name", "a", "driver", "sqlite", "dsn", "x")}, "default_strategy": "b"}, `"b" is not one of the strategies (a)`},
		{"unknown key", map[string]any{"strategy": "x"}, "strategy"},
		{"unknown strategy key", map[string]any{"strategies": []any{strat("name", "a", "driver", "sqlite", "dsn", "x", "pasword", "y")}}, "pasword"},
		{"wrong type", map[string]any{"strategies": "primary"}, "strategies"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := parseSettings(cfgWith(tt.settings))
			if err == nil {
				t.Fatal("accepted")
			}
			if !errors.Is(err, sdk.ErrInvalidSettings) {
				t.Fatalf("%v does not wrap ErrInvalidSettings", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not mention %q", err, tt.want)
			}
			if !strings.Contains(err.Error(), "subsystems.dbstorage") {
				t.Fatalf("error %q does not name the key path", err)
			}
		})
	}
}

func TestLimitsCheck(t *testing.T) {
	ok := DefaultLimits()
	if err := ok.check(); err != nil {
		t.Fatalf("defaults rejected: %v", err)
	}
	bad := DefaultLimits()
	bad.DefaultPageSize, bad.MaxPageSize = 500, 100
	if err := bad.check(); !errors.Is(err, sdk.ErrInvalidLimits) || !strings.Contains(err.Error(), "default_page_size: 500 must not exceed max_page_size (100)") {
		t.Fatalf("page sizes: %v", err)
	}
	bad = DefaultLimits()
	bad.HealthTimeout, bad.HealthInterval = time.Minute, time.Second
	if err := bad.check(); !errors.Is(err, sdk.ErrInvalidLimits) || !strings.Contains(err.Error(), "health_timeout") {
		t.Fatalf("health: %v", err)
	}
}

func TestLimitsDecode(t *testing.T) {
	// The SDK enforces the tags: zero timeouts, zero or negative page
	// sizes and tiny buffers are refused with the key path.
	for _, tt := range []struct {
		in   map[string]any
		want string
	}{
		{map[string]any{"health_timeout": "0s"}, "limits.health_timeout"},
		{map[string]any{"health_interval": "0s"}, "limits.health_interval"},
		{map[string]any{"default_page_size": 0}, "limits.default_page_size"},
		{map[string]any{"max_page_size": -1}, "limits.max_page_size"},
		{map[string]any{"max_buffer_bytes": "1KiB"}, "limits.max_buffer_bytes"},
		{map[string]any{"max_buffer_bytes": "lots"}, "limits.max_buffer_bytes"},
		{map[string]any{"max_page_sise": 10}, "max_page_sise"},
		{map[string]any{"default_page_size": 50, "max_page_size": 10}, "limits.default_page_size: 50 must not exceed max_page_size (10)"},
		{map[string]any{"health_timeout": "1m", "health_interval": "10s"}, "limits.health_timeout: 1m0s must not exceed health_interval (10s)"},
	} {
		l := DefaultLimits()
		err := sdk.Decode(&l, tt.in, "limits")
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Decode(%v) = %v, want an error naming %s", tt.in, err, tt.want)
		}
	}
}
