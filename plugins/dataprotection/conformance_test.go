package main_test

import (
	"testing"

	"github.com/datawarehouse/dw/internal/hosttest"
	"github.com/datawarehouse/dw/sdk/v6/sdktest"
)

// TestConformance runs the SDK's conformance suite — the one third-party
// plugins run — against the built dw-plugin-dataprotection.
func TestConformance(t *testing.T) {
	bin := hosttest.Binary(t, "plugins/dataprotection", "dw-plugin-dataprotection")
	sdktest.Run(t, bin, sdktest.Options{
		Settings: map[string]any{"repository": "backups", "sources": map[string]any{"files": "files"}, "restore_root": "restores"},
		ValidLimits: []map[string]any{
			{},
			{"max_concurrent_operations": 3},
			{"utilization_low": 0.1, "utilization_high": 0.2, "ema_alpha": 1, "adjust_interval": "100ms"},
			{"retention": map[string]any{"keep_last": 3, "keep_within": "720h", "max_total_bytes": "10GiB"}, "retention_interval": "1s"},
		},
		InvalidLimits: []map[string]any{
			{"max_concurrent_operations": -1},
			{"utilization_low": 0.9, "utilization_high": 0.5},
			{"utilization_high": 1.5},
			{"ema_alpha": 0},
			{"ema_alpha": 1.1},
			{"adjust_interval": "1ms"},
			{"checkpoint_interval": "0s"},
			{"retention": map[string]any{"keep_last": -1}},
			{"retention": map[string]any{"keep_forever": true}},
			{"retention_interval": "0s"},
		},
	})
}
