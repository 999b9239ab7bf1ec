package supervisor

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/datawarehouse/dw/host/rpcgateway"
	"github.com/datawarehouse/dw/internal/hosttest"
	"github.com/datawarehouse/dw/sdk/v6"
)

// TestSDK60PluginLoads: a plugin binary built with sdk 6.0.0 (limits as
// google.protobuf.Struct, defaults applied inside Configure, then
// ApplyLimits) loads on this host, gets its configured limits, takes live
// changes and refusals like any plugin, and serves its own service.
func TestSDK60PluginLoads(t *testing.T) {
	h := newHarness(t, nil, func(o *Options) {
		o.Specs = map[string]Spec{"kvcache": {Enabled: true, Limits: map[string]any{"max_entries": 5}}}
	})
	hosttest.InstallLegacyPlugin(t, h.dir)
	h.start()
	st := h.waitState("kvcache", StateServing)
	if st.SDKVersion != "6.0.0" || st.ProtocolVersion != 1 {
		t.Fatalf("status %+v, want sdk 6.0.0 over protocol 1", st)
	}
	c := h.client("kvcache")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Schema != nil {
		t.Errorf("a 6.0 plugin reported a schema: %+v", info.Schema)
	}
	if info.DefaultLimits["max_entries"] != float64(10000) {
		t.Errorf("default limits %v, want max_entries 10000", info.DefaultLimits)
	}
	l, _, err := c.Limits(ctx)
	if err != nil || l["max_entries"] != float64(5) {
		t.Fatalf("limits at start = %v (%v), want the configured max_entries 5", l, err)
	}
	applied, err := c.ApplyLimits(ctx, map[string]any{"max_entries": 7, "max_bytes": "1MiB"}, 2)
	if err != nil || applied["max_entries"] != float64(7) || applied["max_bytes"] != "1MiB" {
		t.Fatalf("ApplyLimits = %v, %v", applied, err)
	}
	if _, err := c.ValidateLimits(ctx, map[string]any{"max_entries": 0}); !errors.Is(err, sdk.ErrInvalidLimits) ||
		!strings.Contains(err.Error(), "limits.max_entries") {
		t.Fatalf("ValidateLimits of max_entries 0 = %v, want ErrInvalidLimits naming the key", err)
	}
	m, err := c.Metrics(ctx)
	if err != nil || len(m.Values) == 0 {
		t.Fatalf("metrics = %+v, %v", m, err)
	}

	// Its own service, called the way the HTTP API does (reflection).
	gw := rpcgateway.New(rpcgateway.Options{})
	put, err := gw.Lookup(ctx, c.Conn(), st.Services, "dw.kvcache.v1.Cache", "Put")
	if err != nil {
		t.Fatal(err)
	}
	req, err := put.DecodeRequest([]byte(`{"key":"greeting","value":"aGVsbG8="}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := put.Call(ctx, req); err != nil {
		t.Fatal(err)
	}
	get, err := gw.Lookup(ctx, c.Conn(), st.Services, "dw.kvcache.v1.Cache", "Get")
	if err != nil {
		t.Fatal(err)
	}
	req, err = get.DecodeRequest([]byte(`{"key":"greeting"}`))
	if err != nil {
		t.Fatal(err)
	}
	reply, err := get.Call(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	out, err := get.EncodeReply(reply)
	if err != nil || !strings.Contains(string(out), "aGVsbG8=") {
		t.Fatalf("Get = %s, %v", out, err)
	}
}
