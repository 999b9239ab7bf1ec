package main_test

import (
	"testing"

	"github.com/datawarehouse/dw/internal/hosttest"
	"github.com/datawarehouse/dw/sdk/v6/sdktest"
)

// TestConformance runs the SDK's conformance suite — the one third-party
// plugins run — against the built dw-plugin-filesystem.
func TestConformance(t *testing.T) {
	bin := hosttest.Binary(t, "plugins/filesystem", "dw-plugin-filesystem")
	sdktest.Run(t, bin, sdktest.Options{
		Settings: map[string]any{"root": "files", "device_class": "auto"},
		ValidLimits: []map[string]any{
			{},
			{"max_queue_depth": 1, "queue_depth": map[string]any{"nvme": 1, "ssd": 1, "hdd": 1}},
			{"redetect_interval": "1s", "max_throttle_wait": "0s"},
			{"quota": map[string]any{
				"default": map[string]any{"bytes_per_second": "10MiB", "ops_per_second": 100},
				"callers": map[string]any{"alice": map[string]any{"bytes_per_second": 0, "ops_per_second": 0.5}},
			}},
		},
		InvalidLimits: []map[string]any{
			{"max_queue_depth": 0},
			{"queue_depth": map[string]any{"ssd": 0}},
			{"queue_depth": map[string]any{"ssd": 1, "tape": 1}},
			{"redetect_interval": "10ms"},
			{"max_throttle_wait": "-1s"},
			{"quota": map[string]any{"default": map[string]any{"bytes_per_second": "-1MiB"}}},
			{"quota": map[string]any{"callers": map[string]any{"bob": map[string]any{"ops_per_second": -1}}}},
			{"quota": map[string]any{"callers": map[string]any{"bob": map[string]any{"iops": 1}}}},
			{"quota": map[string]any{"default": map[string]any{"ops_per_second": "NaN"}}},
		},
	})
}
