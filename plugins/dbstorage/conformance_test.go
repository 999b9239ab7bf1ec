package main_test

import (
	"testing"

	"github.com/datawarehouse/dw/internal/hosttest"
	"github.com/datawarehouse/dw/sdk/v6/sdktest"
)

// TestConformance runs the SDK's conformance suite — the one third-party
// plugins run — against the built dw-plugin-dbstorage.
func TestConformance(t *testing.T) {
	bin := hosttest.Binary(t, "plugins/dbstorage", "dw-plugin-dbstorage")
	sdktest.Run(t, bin, sdktest.Options{
		Settings: map[string]any{
			"strategies":       []any{map[string]any{"name": "primary", "driver": "sqlite", "dsn": "db/objects.sqlite"}},
			"default_strategy": "primary",
		},
		ValidLimits: []map[string]any{
			{},
			{"max_buffer_bytes": "1MiB", "default_page_size": 1, "max_page_size": 1},
			{"health_timeout": "100ms", "health_interval": "100ms"},
		},
		InvalidLimits: []map[string]any{
			{"default_page_size": 500, "max_page_size": 100},
			{"health_timeout": "0s"},
			{"health_timeout": "10s", "health_interval": "1s"},
			{"max_buffer_bytes": "1KiB"},
			{"max_page_size": 0},
		},
	})
}
