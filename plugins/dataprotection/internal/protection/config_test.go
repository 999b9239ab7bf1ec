package protection

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/datawarehouse/dw/sdk"
)

func TestParseSettings(t *testing.T) {
	data := t.TempDir()
	cfg := func(settings map[string]any) sdk.Config {
		return sdk.Config{Subsystem: "dataprotection", DataDir: data, Settings: settings}
	}
	r, err := parseSettings(cfg(map[string]any{"sources": map[string]any{"files": "files", "abs": "/srv/x"}}))
	if err != nil {
		t.Fatal(err)
	}
	if r.repository != filepath.Join(data, "backups") || r.restoreRoot != filepath.Join(data, "restores") ||
		r.sources["files"] != filepath.Join(data, "files") || r.sources["abs"] != "/srv/x" {
		t.Errorf("resolved %+v", r)
	}
	for _, tc := range []struct {
		name     string
		settings map[string]any
		want     string
	}{
		{"bad source name", map[string]any{"sources": map[string]any{"../x": "x"}}, `sources["../x"]`},
		{"empty source folder", map[string]any{"sources": map[string]any{"a": ""}}, "sources.a: is empty"},
		{"source holds the repository", map[string]any{"sources": map[string]any{"all": "."}}, "contain one another"},
		{"repository inside a source", map[string]any{"repository": "files/backups", "sources": map[string]any{"f": "files"}}, "contain one another"},
		{"empty repository", map[string]any{"repository": ""}, "repository: is empty"},
		{"unknown key", map[string]any{"repo": "x"}, "repo"},
		{"wrong type", map[string]any{"sources": []any{"x"}}, "sources"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseSettings(cfg(tc.settings))
			if !errors.Is(err, sdk.ErrInvalidSettings) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want ErrInvalidSettings naming %q", err, tc.want)
			}
		})
	}
}

func TestLimitsValidate(t *testing.T) {
	ok := DefaultLimits()
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		edit func(*Limits)
		want string
	}{
		{func(l *Limits) { l.MaxConcurrentOperations = -1 }, "max_concurrent_operations"},
		{func(l *Limits) { l.UtilizationLow = 0.9 }, "utilization_low"},
		{func(l *Limits) { l.UtilizationLow = 0 }, "utilization_low"},
		{func(l *Limits) { l.EMAAlpha = 0 }, "ema_alpha"},
		{func(l *Limits) { l.Retention.KeepLast = -2 }, "retention.keep_last"},
		{func(l *Limits) { l.Retention.MaxTotalBytes = -1 }, "retention.max_total_bytes"},
	} {
		l := DefaultLimits()
		tc.edit(&l)
		if err := l.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("want a problem at %s, got %v", tc.want, err)
		}
	}
}

func TestConfigureNeedsTheKV(t *testing.T) {
	s := New()
	data := t.TempDir()
	err := s.Configure(t.Context(), sdk.Config{Subsystem: "dataprotection", DataDir: data})
	if !errors.Is(err, sdk.ErrFailedPrecondition) {
		t.Fatalf("Configure without a KV: %v", err)
	}
	if _, err := os.Stat(filepath.Join(data, "backups")); err == nil {
		t.Error("the repository was created anyway")
	}
}
