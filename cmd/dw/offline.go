package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/datawarehouse/dw/config"
	"github.com/datawarehouse/dw/host"
	"github.com/datawarehouse/dw/host/supervisor"
	"github.com/datawarehouse/dw/sdk/v6"
	"github.com/datawarehouse/dw/sdk/v6/pluginhost"
)

// The offline commands (dw config validate, dw config schema, dw plugin
// docs) learn what a plugin accepts by starting its binary briefly with
// supervisor.Probe: the handshake, GetInfo (which carries the schema of
// its limits and settings) and, for validate, ValidateLimits, which before
// Configure checks the rules of the limits struct only. Configure is never
// called, so a probed plugin opens nothing: this is safe next to a running
// host with the same data_dir. Each plugin is stopped (its process group
// killed) before the next one starts.

// probe starts the plugin binary at path under cfg's plugins options.
func probe(ctx context.Context, cfg *config.Config, path string) (*supervisor.Probed, error) {
	return supervisor.Probe(ctx, path, supervisor.ProbeOptions{
		StartTimeout: cfg.Plugins.StartTimeout,
		SHA256:       cfg.Plugins.Checksums[filepath.Base(path)],
		HiddenEnv:    host.TokenEnvNames(cfg),
	})
}

// offlineReport is what dw config validate found in the plugins' sections.
type offlineReport struct {
	// Problems make the file invalid: a key a plugin refuses, or a plugin
	// the host would refuse.
	Problems []host.Problem `json:"problems"`
	// Warnings are what could not be checked (a missing binary).
	Warnings []string `json:"warnings"`
	// Notes say how each plugin was checked.
	Notes []string `json:"notes"`
}

// checkPlugins checks the section of every enabled subsystem of cfg with
// its plugin from plugins.dir: the settings and limits against the
// plugin's schema, then (when the schema found nothing wrong with the
// limits, or the plugin reports no schema, as sdk 6.0 plugins do) the
// limits with the plugin's ValidateLimits, which adds the rules between
// keys. A subsystem whose binary is missing is a warning: the file may be
// fine, it just cannot be checked here (the host would show the subsystem
// as missing). A plugin that cannot start, or whose SDK the host would
// refuse, is a problem.
func checkPlugins(ctx context.Context, cfg *config.Config) offlineReport {
	var rep offlineReport
	for _, name := range slices.Sorted(maps.Keys(cfg.Subsystems)) {
		sec := cfg.Subsystems[name]
		if !sec.Enabled {
			continue
		}
		at := "subsystems." + name
		path, err := supervisor.BinaryPath(cfg.Plugins.Dir, name)
		if err != nil {
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("%s: enabled, but %v: its settings and limits are not checked (the host would show it as missing)", at, err))
			continue
		}
		p, err := probe(ctx, cfg, path)
		if err != nil {
			rep.Problems = append(rep.Problems, host.Problem{Path: at, Plugin: name, Message: "the host could not start the plugin: " + err.Error()})
			continue
		}
		rep.check(ctx, name, sec, p)
		p.Stop()
	}
	slices.SortStableFunc(rep.Problems, func(a, b host.Problem) int { return strings.Compare(a.Path, b.Path) })
	return rep
}

// check checks one subsystem's section with its probed plugin.
func (rep *offlineReport) check(ctx context.Context, name string, sec config.Subsystem, p *supervisor.Probed) {
	at := "subsystems." + name
	file := supervisor.BinaryPrefix + name
	if err := supervisor.CheckSDK(file, p.Info.SDKVersion); err != nil {
		rep.Problems = append(rep.Problems, host.Problem{Path: at, Plugin: name, Message: err.Error()})
		return
	}
	add := func(probs []sdk.FieldProblem) int {
		for _, fp := range probs {
			rep.Problems = append(rep.Problems, host.Problem{Path: joinPath(at, fp.Path), Plugin: name, Message: fp.Message})
		}
		return len(probs)
	}
	s := p.Info.Schema
	limitProblems := 0
	switch {
	case s == nil:
		rep.Notes = append(rep.Notes, fmt.Sprintf("%s: %s (sdk %s) reports no schema: its limits were checked by the plugin (ValidateLimits), its settings are checked only when it starts",
			at, file, p.Info.SDKVersion))
	default:
		add(s.CheckSettings(sec.Settings)) // none when it declares no settings
		limitProblems = add(s.CheckLimits(sec.Limits))
		what := "settings and limits"
		if !s.SettingsDeclared {
			what = "limits (it declares no settings, which it checks only when it starts)"
		}
		rep.Notes = append(rep.Notes, fmt.Sprintf("%s: %s checked against the schema of %s", at, what, file))
	}
	if limitProblems > 0 {
		return // ValidateLimits would say the same again
	}
	limits := sec.Limits
	if limits == nil {
		limits = map[string]any{}
	}
	cctx, cancel := context.WithTimeout(ctx, host.ValidateTimeout)
	defer cancel()
	if _, err := p.Client.ValidateLimits(cctx, limits); err != nil {
		rep.Problems = append(rep.Problems, host.ValidateLimitsProblems(cctx, name, "refused its limits", err)...)
	}
}

// joinPath puts a problem's path (relative to a section) under the
// section's path.
func joinPath(section, p string) string {
	switch {
	case p == "":
		return section
	case strings.HasPrefix(p, "["):
		return section + p
	}
	return section + "." + p
}

// loadConfigForPlugins loads the config whose plugins.dir a command
// looks in: the file given with --config, or config/dw.yaml when it
// exists, else the embedded defaults (as dw serve does).
func loadConfigForPlugins(path string, explicit bool) (*config.Config, error) {
	return config.Load(configPath(path, explicit))
}

// configPath is the config file a command reads: path when given with
// --config (explicit), else the default path when it exists, else ""
// (the embedded defaults). Only a default file that does not exist falls
// back: one that cannot be read (permissions) is reported by the load.
func configPath(path string, explicit bool) string {
	if !explicit {
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return ""
		}
	}
	return path
}

// pluginSchemas probes every plugin binary of plugins.dir and returns
// their schemas by name (nil for a plugin of sdk 6.0); a plugin that
// cannot be probed is reported through warn and left out.
func pluginSchemas(ctx context.Context, cfg *config.Config, warn func(string)) (map[string]*pluginhost.Schema, error) {
	bins, skipped, err := supervisor.Binaries(cfg.Plugins.Dir)
	if err != nil {
		return nil, err
	}
	for _, path := range slices.Sorted(maps.Keys(skipped)) {
		warn(fmt.Sprintf("plugins.dir: %s is left out: %s", path, skipped[path]))
	}
	out := map[string]*pluginhost.Schema{}
	for _, name := range slices.Sorted(maps.Keys(bins)) {
		p, err := probe(ctx, cfg, bins[name])
		if err != nil {
			warn(fmt.Sprintf("subsystems.%s: %v", name, err))
			continue
		}
		out[name] = p.Info.Schema
		p.Stop()
	}
	return out, nil
}
