package protection

import (
	"fmt"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/datawarehouse/dw/sdk/v6"
)

// Limits are dataprotection's live limits (subsystems.dataprotection.limits).
type Limits struct {
	// MaxConcurrentOperations > 0 fixes how many jobs run at once; 0 lets
	// the controller adapt it to the disks' utilisation.
	MaxConcurrentOperations int `dw:"max_concurrent_operations" max:"1024" doc:"jobs that run at once; 0 adapts it to the disks' utilisation"`
	// UtilizationLow and UtilizationHigh bound the smoothed utilisation
	// between which the adaptive limit holds (below: +1, above: −1).
	UtilizationLow  float64 `dw:"utilization_low" max:"1" doc:"smoothed disk utilisation below which the adaptive job limit rises; above 0, below utilization_high"`
	UtilizationHigh float64 `dw:"utilization_high" max:"1" doc:"smoothed disk utilisation above which the adaptive job limit falls"`
	// EMAAlpha is the weight of a new utilisation sample (0 < α ≤ 1).
	EMAAlpha float64 `dw:"ema_alpha" max:"1" doc:"weight of a new utilisation sample in the moving average; above 0, at most 1"`
	// AdjustInterval is the time between utilisation samples.
	AdjustInterval time.Duration `dw:"adjust_interval" min:"100ms" max:"1h" doc:"time between utilisation samples (and adaptive limit decisions)"`
	// CheckpointInterval is the most a crash costs a running backup.
	CheckpointInterval time.Duration `dw:"checkpoint_interval" min:"100ms" max:"24h" doc:"time between checkpoints of a running backup: the most a crash costs it"`
	// Retention is the policy applied after each backup and every
	// RetentionInterval.
	Retention Retention `dw:"retention" doc:"which snapshots to keep, applied after each backup and every retention_interval"`
	// RetentionInterval is the time between background retention runs.
	RetentionInterval time.Duration `dw:"retention_interval" min:"1s" max:"8760h" doc:"time between background retention runs"`
}

// Retention is limits.retention; 0 means no bound for each.
type Retention struct {
	KeepLast      int           `dw:"keep_last" max:"1000000" doc:"keep the N newest snapshots of each source; 0 is no bound"`
	KeepWithin    time.Duration `dw:"keep_within" max:"876000h" doc:"keep the snapshots completed within this long; 0 is no bound"`
	MaxTotalBytes sdk.Size      `dw:"max_total_bytes" doc:"then forget the oldest snapshots until the repository fits; 0 is no bound"`
}

// DefaultLimits are the limits of DESIGN.md.
func DefaultLimits() Limits {
	return Limits{
		UtilizationLow:     0.60,
		UtilizationHigh:    0.80,
		EMAAlpha:           0.3,
		AdjustInterval:     5 * time.Second,
		CheckpointInterval: 10 * time.Second,
		RetentionInterval:  time.Hour,
	}
}

// Validate applies the rules between fields.
func (l *Limits) Validate() error {
	var de sdk.DecodeError
	bad := func(path, format string, args ...any) {
		de.Problems = append(de.Problems, sdk.FieldProblem{Path: path, Message: fmt.Sprintf(format, args...)})
	}
	if l.MaxConcurrentOperations < 0 {
		bad("max_concurrent_operations", "%d is negative; use 0 for adaptive or a fixed number of jobs", l.MaxConcurrentOperations)
	}
	if l.UtilizationLow <= 0 || l.UtilizationLow >= l.UtilizationHigh {
		bad("utilization_low", "%g must be above 0 and below utilization_high (%g)", l.UtilizationLow, l.UtilizationHigh)
	}
	if l.UtilizationHigh > 1 {
		bad("utilization_high", "%g is above 1 (100%%)", l.UtilizationHigh)
	}
	if l.EMAAlpha <= 0 || l.EMAAlpha > 1 {
		bad("ema_alpha", "%g must be above 0 and at most 1", l.EMAAlpha)
	}
	if l.Retention.KeepLast < 0 {
		bad("retention.keep_last", "%d is negative; use 0 for no bound", l.Retention.KeepLast)
	}
	if l.Retention.KeepWithin < 0 {
		bad("retention.keep_within", "%s is negative; use 0s for no bound", l.Retention.KeepWithin)
	}
	if l.Retention.MaxTotalBytes < 0 {
		bad("retention.max_total_bytes", "%d is negative; use 0 for no bound", l.Retention.MaxTotalBytes)
	}
	if len(de.Problems) > 0 {
		return &de
	}
	return nil
}

var _ sdk.Validator = (*Limits)(nil)

// Settings are the start-time settings; a change restarts the plugin.
type Settings struct {
	// Repository is the backup repository's folder (relative to data_dir
	// unless absolute).
	Repository string `dw:"repository" doc:"the backup repository folder, relative to data_dir unless absolute"`
	// Sources name the folders that can be backed up.
	Sources map[string]string `dw:"sources" doc:"folders that can be backed up, by source name (relative to data_dir unless absolute)"`
	// RestoreRoot is the folder restores write into; a restore target is a
	// path inside it.
	RestoreRoot string `dw:"restore_root" doc:"folder restores write into; a restore target is a path inside it"`
}

func defaultSettings() Settings {
	return Settings{Repository: "backups", Sources: map[string]string{}, RestoreRoot: "restores"}
}

// DefaultSettings declares the settings (sdk.SettingsDeclarer): the
// defaults parseSettings decodes them onto.
func (s *Service) DefaultSettings() any { return defaultSettings() }

var _ sdk.SettingsDeclarer = (*Service)(nil)

var sourceName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// resolved are the settings with absolute paths.
type resolved struct {
	repository  string
	sources     map[string]string
	restoreRoot string
}

// parseSettings decodes and checks the settings.
func parseSettings(cfg sdk.Config) (resolved, error) {
	s := defaultSettings()
	if err := cfg.DecodeSettings(&s); err != nil {
		return resolved{}, err
	}
	root := "subsystems." + cfg.Subsystem
	var problems []string
	abs := func(key, p string) string {
		if p == "" {
			problems = append(problems, fmt.Sprintf("%s.%s: is empty; name a folder (relative to data_dir or absolute)", root, key))
			return ""
		}
		a, err := filepath.Abs(cfg.ResolvePath(p))
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s.%s: %v", root, key, err))
		}
		return a
	}
	r := resolved{repository: abs("repository", s.Repository), restoreRoot: abs("restore_root", s.RestoreRoot), sources: map[string]string{}}
	names := make([]string, 0, len(s.Sources))
	for n := range s.Sources {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		key := sdk.KeyPath("sources", n)
		if !sourceName.MatchString(n) {
			problems = append(problems, fmt.Sprintf("%s.%s: %q is not a valid source name (1–64 of letters, digits, '_', '-' and '.', starting with a letter or digit)", root, key, n))
			continue
		}
		r.sources[n] = abs(key, s.Sources[n])
	}
	for n, p := range r.sources {
		if p != "" && (within(p, r.repository) || within(r.repository, p)) {
			problems = append(problems, fmt.Sprintf("%s.%s: %s and the repository %s contain one another; a backup would back itself up", root, sdk.KeyPath("sources", n), p, r.repository))
		}
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return r, fmt.Errorf("%w: %s", sdk.ErrInvalidSettings, strings.Join(problems, "; "))
	}
	return r, nil
}

// within reports whether p is dir or inside it.
func within(p, dir string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}
