package main_test

import (
	"testing"

	"github.com/datawarehouse/dw/internal/hosttest"
	"github.com/datawarehouse/dw/sdk/v6/sdktest"
)

// TestConformance runs the SDK's conformance suite — the one third-party
// plugins run — against the built dw-plugin-fabric (bound to a free
// loopback port, alone).
func TestConformance(t *testing.T) {
	bin := hosttest.Binary(t, "plugins/fabric", "dw-plugin-fabric")
	sdktest.Run(t, bin, sdktest.Options{
		Settings: map[string]any{"bind": "127.0.0.1:0", "join": []any{}, "federation": "conformance"},
		ValidLimits: []map[string]any{
			{},
			{"topology": "mesh", "heartbeat_interval": "100ms", "missed_heartbeats": 1},
			{"max_nodes": map[string]any{"star": 1, "mesh": 2, "federated": 3}, "switching": map[string]any{"mode": "auto", "up_at": 1, "down_at": 0.1}},
			{"topology": "federated", "switching": map[string]any{"mode": "off"}},
		},
		InvalidLimits: []map[string]any{
			{"topology": "ring"},
			{"max_nodes": map[string]any{"star": 0}},
			{"switching": map[string]any{"mode": "sometimes"}},
			{"switching": map[string]any{"up_at": 0.5, "down_at": 0.5}},
			{"switching": map[string]any{"up_at": 1.2}},
			{"heartbeat_interval": "1ms"},
			{"missed_heartbeats": 0},
			{"max_node": 3},
		},
	})
}
