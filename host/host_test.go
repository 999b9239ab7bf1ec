package host_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/goleak"

	"github.com/datawarehouse/dw/config"
	"github.com/datawarehouse/dw/host"
	"github.com/datawarehouse/dw/host/internal/testplugins"
)

// In process: Start then Shutdown leaves no goroutine and no plugin behind,
// and a second Shutdown is harmless.
func TestHostStartShutdownLeavesNothing(t *testing.T) {
	good := filepath.Join(testplugins.Build(t), "dw-plugin-good")
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())

	dir := t.TempDir()
	pluginsDir := filepath.Join(dir, "plugins")
	if err := os.MkdirAll(pluginsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	copyExec(t, good, pluginsDir, "dw-plugin-good")
	cfg, err := config.Parse([]byte(fmt.Sprintf("server: {listen: 127.0.0.1:0}\ndata_dir: %s\nplugins: {dir: %s}\nsubsystems:\n  missingone: {enabled: true}\n",
		filepath.Join(dir, "data"), pluginsDir)), "test")
	if err != nil {
		t.Fatal(err)
	}
	h, err := host.New(cfg, host.Options{Logger: hclog.NewNullLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	var pid int
	states := map[string]string{}
	for _, st := range h.Plugins().Statuses() {
		states[st.Name] = string(st.State)
		if st.Name == "good" {
			pid = st.PID
		}
	}
	if states["good"] != "serving" || states["missingone"] != "missing" {
		t.Fatalf("states = %v", states)
	}
	resp, err := http.Get("http://" + h.Addr() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("readyz with a missing plugin = %d, want 503", resp.StatusCode)
	}
	http.DefaultClient.CloseIdleConnections()

	if err := h.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := h.Shutdown(context.Background()); err != nil {
		t.Fatalf("second shutdown: %v", err)
	}
	if !processGone(pid) {
		t.Fatalf("plugin pid %d still runs after Shutdown", pid)
	}
	if _, err := http.Get("http://" + h.Addr() + "/healthz"); err == nil {
		t.Fatal("the listener still answers after Shutdown")
	}
}

// A port in use fails the start with the key named, and leaves nothing
// running.
func TestHostStartFailsOnBusyPort(t *testing.T) {
	dir := t.TempDir()
	busy, err := host.New(mustParse(t, fmt.Sprintf("server: {listen: 127.0.0.1:0}\ndata_dir: %s/a\n", dir)), host.Options{Logger: hclog.NewNullLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := busy.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer busy.Shutdown(context.Background())

	h, err := host.New(mustParse(t, fmt.Sprintf("server: {listen: %s}\ndata_dir: %s/b\n", busy.Addr(), dir)), host.Options{Logger: hclog.NewNullLogger()})
	if err != nil {
		t.Fatal(err)
	}
	err = h.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "server.listen") {
		t.Fatalf("start on a busy port: %v", err)
	}
}

func mustParse(t *testing.T, yaml string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(yaml), "test")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}
