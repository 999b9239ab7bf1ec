package main_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	kvcachev1 "github.com/datawarehouse/dw/examples/kvcache/proto/dw/kvcache/v1"
	"github.com/datawarehouse/dw/sdk/v6"
	"github.com/datawarehouse/dw/sdk/v6/sdktest"
)

// bin is the plugin binary TestMain builds.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "kvcache-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "dw-plugin-kvcache")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build %s: %v\n%s", bin, err, out)
		_ = os.RemoveAll(dir)
		os.Exit(1)
	}
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		_ = os.RemoveAll(dir)
		os.Exit(code)
	}))
}

// TestConformance runs the SDK's conformance suite on the plugin binary,
// as every plugin author should.
func TestConformance(t *testing.T) {
	sdktest.Run(t, bin, sdktest.Options{
		ValidLimits: []map[string]any{
			{},
			{"max_entries": 1},
			{"max_entries": 5, "max_bytes": "1KiB"},
		},
		InvalidLimits: []map[string]any{
			{"max_entries": 0},
			{"max_entries": -5},
			{"max_bytes": "1000B"},
			{"max_bytes": "lots"},
		},
	})
}

// TestCacheServiceThroughThePlugin calls dw.kvcache.v1.Cache on the plugin
// connection, the way the host forwards POST
// /v1/subsystems/kvcache/rpc/dw.kvcache.v1.Cache/Put.
func TestCacheServiceThroughThePlugin(t *testing.T) {
	ctx := context.Background()
	c := sdktest.Start(t, bin, sdktest.Options{})
	cache := kvcachev1.NewCacheClient(c.Conn())

	if _, err := cache.Put(ctx, &kvcachev1.PutRequest{Key: "greeting", Value: []byte("hello")}); err != nil {
		t.Fatal(err)
	}
	got, err := cache.Get(ctx, &kvcachev1.GetRequest{Key: "greeting"})
	if err != nil || string(got.GetValue()) != "hello" {
		t.Fatalf("Get(greeting) = %q, %v; want hello", got.GetValue(), err)
	}

	_, err = cache.Get(ctx, &kvcachev1.GetRequest{Key: "nobody"})
	if status.Code(err) != codes.NotFound || !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("Get(missing) = %v, want NOT_FOUND matching sdk.ErrNotFound", err)
	}
	_, err = cache.Put(ctx, &kvcachev1.PutRequest{Key: ""})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "key") {
		t.Errorf("Put(empty key) = %v, want INVALID_ARGUMENT about the key", err)
	}

	// Shrink the limits live: the oldest entries go at once.
	for i := range 10 {
		if _, err := cache.Put(ctx, &kvcachev1.PutRequest{Key: fmt.Sprintf("k%d", i), Value: []byte("v")}); err != nil {
			t.Fatal(err)
		}
	}
	applied, err := c.ApplyLimits(ctx, map[string]any{"max_entries": 3, "max_bytes": "1KiB"}, 7)
	if err != nil {
		t.Fatal(err)
	}
	if applied["max_entries"] != int64(3) || applied["max_bytes"] != "1KiB" {
		t.Errorf("applied limits %v", applied)
	}
	m, err := c.Metrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	values := map[string]float64{}
	for _, v := range m.Values {
		values[v.Name] = v.Value
	}
	if values["entries"] != 3 || values["evictions"] != 8 || values["bytes"] != 3*3 {
		t.Errorf("after shrinking to 3 entries: metrics %v, want entries 3, evictions 8, bytes 9", values)
	}
	if m.Backpressure != sdk.BackpressureElevated {
		t.Errorf("a full cache has backpressure %v, want elevated", m.Backpressure)
	}
	for key, want := range map[string]codes.Code{"k6": codes.NotFound, "k7": codes.OK, "k9": codes.OK} {
		if _, err := cache.Get(ctx, &kvcachev1.GetRequest{Key: key}); status.Code(err) != want {
			t.Errorf("Get(%s) after shrinking = %v, want %v", key, err, want)
		}
	}

	_, err = cache.Put(ctx, &kvcachev1.PutRequest{Key: "big", Value: make([]byte, 2000)})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "limits.max_bytes = 1KiB") {
		t.Errorf("Put(2000 bytes) = %v, want INVALID_ARGUMENT naming limits.max_bytes = 1KiB", err)
	}

	del, err := cache.Delete(ctx, &kvcachev1.DeleteRequest{Key: "k9"})
	if err != nil || !del.GetExisted() {
		t.Errorf("Delete(k9) = %v, %v; want existed", del, err)
	}
	del, err = cache.Delete(ctx, &kvcachev1.DeleteRequest{Key: "k9"})
	if err != nil || del.GetExisted() {
		t.Errorf("second Delete(k9) = %v, %v; want not existed, no error", del, err)
	}
}

// TestImportsOnlyTheSDK keeps the example honest: of dw, it may import only
// the SDK (with the SDK's own internal packages, which come with it) and
// its own packages.
func TestImportsOnlyTheSDK(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		rest, ok := strings.CutPrefix(dep, "github.com/datawarehouse/dw/")
		if !ok {
			continue
		}
		// The SDK's own internal packages come with it.
		if rest != "sdk/v6" && !strings.HasPrefix(rest, "sdk/v6/proto/") && !strings.HasPrefix(rest, "sdk/v6/internal/") &&
			rest != "examples/kvcache" && !strings.HasPrefix(rest, "examples/kvcache/") {
			t.Errorf("kvcache depends on %s; a third-party plugin can import only the dw sdk", dep)
		}
	}
}
