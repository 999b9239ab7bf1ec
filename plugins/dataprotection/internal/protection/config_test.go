package protection

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/datawarehouse/dw/sdk/v6"
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

// TestLimitsValidate covers the one check of the limits: the decode's
// field rules, then Limits.Validate. The controller and retention take
// what passes as it is.
func TestLimitsValidate(t *testing.T) {
	ok := DefaultLimits()
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		limits map[string]any
		want   string // "" = valid
	}{
		{"defaults", map[string]any{}, ""},
		{"fixed", map[string]any{"max_concurrent_operations": 3}, ""},
		{"band to 100%", map[string]any{"utilization_low": 0.01, "utilization_high": 1}, ""},
		{"alpha 1", map[string]any{"ema_alpha": 1}, ""},
		{"retention", map[string]any{"retention": map[string]any{"keep_last": 3, "keep_within": "720h", "max_total_bytes": "1GiB"}}, ""},
		{"negative max", map[string]any{"max_concurrent_operations": -1}, "limits.max_concurrent_operations"},
		{"low above high", map[string]any{"utilization_low": 0.9}, "limits.utilization_low"},
		{"low equals high", map[string]any{"utilization_low": 0.7, "utilization_high": 0.7}, "limits.utilization_low"},
		{"low 0", map[string]any{"utilization_low": 0}, "limits.utilization_low"},
		{"low negative", map[string]any{"utilization_low": -0.1}, "limits.utilization_low"},
		{"high above 1", map[string]any{"utilization_high": 1.5}, "limits.utilization_high"},
		{"alpha 0", map[string]any{"ema_alpha": 0}, "limits.ema_alpha"},
		{"alpha above 1", map[string]any{"ema_alpha": 1.01}, "limits.ema_alpha"},
		{"interval 0", map[string]any{"adjust_interval": "0s"}, "limits.adjust_interval"},
		{"checkpoint 0", map[string]any{"checkpoint_interval": "0s"}, "limits.checkpoint_interval"},
		{"negative keep_last", map[string]any{"retention": map[string]any{"keep_last": -2}}, "limits.retention.keep_last"},
		{"negative keep_within", map[string]any{"retention": map[string]any{"keep_within": "-1s"}}, "limits.retention.keep_within"},
		{"negative max_total_bytes", map[string]any{"retention": map[string]any{"max_total_bytes": -1}}, "limits.retention.max_total_bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := DefaultLimits()
			err := sdk.Decode(&l, tc.limits, "limits")
			if tc.want == "" {
				if err != nil {
					t.Fatalf("decode %v: %v", tc.limits, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("decode %v = %v, want a problem at %s", tc.limits, err, tc.want)
			}
		})
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
