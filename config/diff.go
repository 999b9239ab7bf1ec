package config

import (
	"maps"
	"math"
	"reflect"
	"slices"
	"strings"
)

// Diff is what changes from one configuration to another: the host-level
// keys, and per subsystem what a reload has to do to its plugin. [Compare]
// computes it; the host's reload acts on it.
//
// Values are compared deeply and regardless of number type: YAML's 100 and
// 100.0 are the same limit. Mappings are compared key by key (each changed
// key is reported with its full path), lists and scalars as a whole (a
// changed list is reported at the list's key path).
//
// A subsystem without a section is treated as the host runs it: enabled,
// with no settings and no limits (a binary in plugins.dir without a section
// runs with its default limits). So removing the section of an enabled
// plugin that had no settings only resets its limits, live; removing the
// section of a disabled one enables it. Added and Removed say that the
// section itself appeared or went away.
type Diff struct {
	// Host lists the host-level keys that changed, sorted: server.listen,
	// server.auth.tokens, log.level, log.format, data_dir, plugins.dir,
	// plugins.start_timeout and plugins.checksums.<binary> (one per binary
	// whose pin was added, changed or removed).
	Host []string
	// Subsystems lists the subsystems whose section changed, sorted by
	// name.
	Subsystems []SubsystemDiff
}

// SubsystemDiff is what changes in one subsystem's section.
type SubsystemDiff struct {
	// Name is the subsystem's name.
	Name string
	// Added: the new configuration has a section the old one had not.
	Added bool
	// Removed: the old configuration had a section the new one has not.
	Removed bool
	// Enabled: the subsystem was disabled and is now enabled (a removed
	// section counts as enabled).
	Enabled bool
	// Disabled: the subsystem was enabled and is now disabled.
	Disabled bool
	// NowEnabled says whether the subsystem is enabled in the new
	// configuration.
	NowEnabled bool
	// Limits lists the changed limit keys, as full key paths
	// (subsystems.<name>.limits.max_entries), sorted.
	Limits []string
	// Settings lists the changed settings keys (every key of the section
	// but enabled and limits), as full key paths
	// (subsystems.<name>.strategies), sorted.
	Settings []string
}

// Restart reports whether a reload starts, stops or restarts the
// subsystem's plugin: it is enabled or disabled, or its settings change
// while it is enabled. (Whether a plugin actually runs also depends on its
// binary being in plugins.dir.)
func (s SubsystemDiff) Restart() bool {
	return s.Enabled || s.Disabled || (s.NowEnabled && len(s.Settings) > 0)
}

// LiveLimits reports whether a reload applies the subsystem's new limits to
// its running plugin live, without a restart.
func (s SubsystemDiff) LiveLimits() bool {
	return len(s.Limits) > 0 && s.NowEnabled && !s.Restart()
}

// ChangedKeys lists the key paths that changed in this section, sorted:
// subsystems.<name> alone for an added or removed section, else
// subsystems.<name>.enabled and the changed settings and limits keys.
func (s SubsystemDiff) ChangedKeys() []string {
	if s.Added || s.Removed {
		return []string{keyPath{"subsystems", s.Name}.String()}
	}
	var keys []string
	if s.Enabled || s.Disabled {
		keys = append(keys, keyPath{"subsystems", s.Name, "enabled"}.String())
	}
	keys = append(keys, s.Settings...)
	keys = append(keys, s.Limits...)
	slices.Sort(keys)
	return slices.Compact(keys)
}

// Empty reports whether nothing changes.
func (d Diff) Empty() bool { return len(d.Host) == 0 && len(d.Subsystems) == 0 }

// ChangedKeys lists every changed key path, host-level and subsystem keys,
// sorted.
func (d Diff) ChangedKeys() []string {
	keys := slices.Clone(d.Host)
	for _, s := range d.Subsystems {
		keys = append(keys, s.ChangedKeys()...)
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

// Restarts lists, sorted, the subsystems whose plugin a reload would start,
// stop or restart (see [SubsystemDiff.Restart]).
func (d Diff) Restarts() []string {
	var names []string
	for _, s := range d.Subsystems {
		if s.Restart() {
			names = append(names, s.Name)
		}
	}
	return names
}

// Subsystem returns the diff of the named subsystem, if its section
// changed.
func (d Diff) Subsystem(name string) (SubsystemDiff, bool) {
	for _, s := range d.Subsystems {
		if s.Name == name {
			return s, true
		}
	}
	return SubsystemDiff{}, false
}

// HostChanged reports whether the host-level key (as listed in Diff.Host)
// changed; for plugins.checksums it reports whether any pin changed.
func (d Diff) HostChanged(key string) bool {
	for _, k := range d.Host {
		if k == key || (key == "plugins.checksums" && strings.HasPrefix(k, "plugins.checksums.")) {
			return true
		}
	}
	return false
}

// Compare returns what changes from the configuration old to new. Both
// must be valid configurations (as Parse returns them); neither is
// modified. (It is not called Diff because the type is.)
func Compare(old, new *Config) Diff {
	var d Diff
	add := func(changed bool, p keyPath) {
		if changed {
			d.Host = append(d.Host, p.String())
		}
	}
	add(old.Server.Listen != new.Server.Listen, keyPath{"server", "listen"})
	add(!slices.EqualFunc(old.Server.Auth.Tokens, new.Server.Auth.Tokens, Token.equal), keyPath{"server", "auth", "tokens"})
	add(old.Server.TLS != new.Server.TLS, keyPath{"server", "tls"})
	add(old.Server.InsecureHTTP != new.Server.InsecureHTTP, keyPath{"server", "insecure_http"})
	add(old.Server.Audit != new.Server.Audit, keyPath{"server", "audit"})
	add(old.Server.MaxConnsPerAddress != new.Server.MaxConnsPerAddress, keyPath{"server", "max_connections_per_address"})
	add(old.Log.Level != new.Log.Level, keyPath{"log", "level"})
	add(old.Log.Format != new.Log.Format, keyPath{"log", "format"})
	add(old.DataDir != new.DataDir, keyPath{"data_dir"})
	add(old.Plugins.Dir != new.Plugins.Dir, keyPath{"plugins", "dir"})
	add(old.Plugins.StartTimeout != new.Plugins.StartTimeout, keyPath{"plugins", "start_timeout"})
	for _, bin := range unionKeys(old.Plugins.Checksums, new.Plugins.Checksums) {
		o, inOld := old.Plugins.Checksums[bin]
		n, inNew := new.Plugins.Checksums[bin]
		add(inOld != inNew || !strings.EqualFold(o, n), keyPath{"plugins", "checksums", bin})
	}
	slices.Sort(d.Host)

	for _, name := range unionKeys(old.Subsystems, new.Subsystems) {
		o, inOld := old.Subsystems[name]
		n, inNew := new.Subsystems[name]
		if !inOld {
			o = Subsystem{Enabled: true}
		}
		if !inNew {
			n = Subsystem{Enabled: true}
		}
		s := SubsystemDiff{
			Name:       name,
			Added:      !inOld && inNew,
			Removed:    inOld && !inNew,
			Enabled:    !o.Enabled && n.Enabled,
			Disabled:   o.Enabled && !n.Enabled,
			NowEnabled: n.Enabled,
		}
		s.Settings = diffMaps(keyPath{"subsystems", name}, o.Settings, n.Settings, nil)
		s.Limits = diffMaps(keyPath{"subsystems", name, "limits"}, o.Limits, n.Limits, nil)
		slices.Sort(s.Settings)
		slices.Sort(s.Limits)
		if s.Added || s.Removed || s.Enabled || s.Disabled || len(s.Settings) > 0 || len(s.Limits) > 0 {
			d.Subsystems = append(d.Subsystems, s)
		}
	}
	return d
}

// unionKeys returns the keys of a and b, sorted.
func unionKeys[V any](a, b map[string]V) []string {
	keys := slices.Collect(maps.Keys(a))
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// diffMaps appends to out the paths under p of the keys whose values differ
// between a and b, descending into mappings. A nil map equals an empty one.
func diffMaps(p keyPath, a, b map[string]any, out []string) []string {
	for _, k := range unionKeys(a, b) {
		av, inA := a[k]
		bv, inB := b[k]
		kp := p.key(k)
		am, aIsMap := av.(map[string]any)
		bm, bIsMap := bv.(map[string]any)
		switch {
		case inA != inB:
			out = append(out, kp.String())
		case aIsMap && bIsMap:
			out = diffMaps(kp, am, bm, out)
		case !equalValues(av, bv):
			out = append(out, kp.String())
		}
	}
	return out
}

// equalValues reports whether two configuration values (as parsed from
// YAML: mappings, lists, strings, numbers, booleans, null) are equal,
// comparing deeply and numbers by value whatever their type: 100, int64(100),
// uint64(100) and 100.0 are equal; 100 and 100.5 are not.
func equalValues(a, b any) bool {
	if x, ok := number(a); ok {
		y, ok := number(b)
		return ok && x.equal(y)
	}
	switch a := a.(type) {
	case nil:
		return b == nil
	case map[string]any:
		bm, ok := b.(map[string]any)
		if !ok || len(a) != len(bm) {
			return false
		}
		for k, av := range a {
			bv, ok := bm[k]
			if !ok || !equalValues(av, bv) {
				return false
			}
		}
		return true
	case []any:
		bl, ok := b.([]any)
		if !ok || len(a) != len(bl) {
			return false
		}
		for i := range a {
			if !equalValues(a[i], bl[i]) {
				return false
			}
		}
		return true
	case string:
		bs, ok := b.(string)
		return ok && a == bs
	case bool:
		bb, ok := b.(bool)
		return ok && a == bb
	default:
		// Not produced by the YAML parser (a config built in code).
		return reflect.DeepEqual(a, b)
	}
}

// num is a number of any parsed type: an integer (neg, mag: sign and
// magnitude, exact over the whole int64 and uint64 ranges) or a float.
type num struct {
	isFloat bool
	f       float64
	neg     bool
	mag     uint64
}

// number returns v as a num if it is a number.
func number(v any) (num, bool) {
	switch v := v.(type) {
	case int:
		return intNum(int64(v)), true
	case int8:
		return intNum(int64(v)), true
	case int16:
		return intNum(int64(v)), true
	case int32:
		return intNum(int64(v)), true
	case int64:
		return intNum(v), true
	case uint:
		return num{mag: uint64(v)}, true
	case uint8:
		return num{mag: uint64(v)}, true
	case uint16:
		return num{mag: uint64(v)}, true
	case uint32:
		return num{mag: uint64(v)}, true
	case uint64:
		return num{mag: v}, true
	case float32:
		return floatNum(float64(v)), true
	case float64:
		return floatNum(v), true
	}
	return num{}, false
}

func intNum(i int64) num {
	if i < 0 {
		return num{neg: true, mag: uint64(-(i + 1)) + 1}
	}
	return num{mag: uint64(i)}
}

// floatNum keeps an integral float in the integer ranges as an integer, so
// that it compares exactly with integers.
func floatNum(f float64) num {
	if f == math.Trunc(f) && math.Abs(f) < 1<<64 {
		if f < 0 {
			return num{neg: true, mag: uint64(-f)}
		}
		return num{mag: uint64(f)}
	}
	return num{isFloat: true, f: f}
}

func (x num) equal(y num) bool {
	if x.isFloat || y.isFloat {
		return x.isFloat && y.isFloat && x.f == y.f
	}
	if x.mag == 0 && y.mag == 0 {
		return true // -0 and 0
	}
	return x.neg == y.neg && x.mag == y.mag
}

// equal reports whether t and u are the same token entry.
func (t Token) equal(u Token) bool {
	return t.Name == u.Name && t.TokenEnv == u.TokenEnv && t.Policy == u.Policy && slices.Equal(t.Subsystems, u.Subsystems)
}
