package config

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/datawarehouse/dw/sdk/v6"
)

// keyPath is the path of a value in the configuration: string keys and int
// list indexes.
type keyPath []any

// key returns p extended by a mapping key.
func (p keyPath) key(k string) keyPath { return append(slices.Clip(p), k) }

// index returns p extended by a list index.
func (p keyPath) index(i int) keyPath { return append(slices.Clip(p), i) }

// String formats p as in error messages: server.auth.tokens[0].name.
func (p keyPath) String() string {
	var b strings.Builder
	for _, e := range p {
		switch e := e.(type) {
		case int:
			b.WriteString("[" + strconv.Itoa(e) + "]")
		case string:
			if b.Len() > 0 {
				b.WriteString(".")
			}
			b.WriteString(pathSegment(e))
		}
	}
	return b.String()
}

// issue is a problem at a key path, before its source is known.
type issue struct {
	path keyPath
	msg  string
}

// Allowed keys of the host's mappings, sorted.
var (
	rootKeys    = []string{"data_dir", "log", "plugins", "server", "subsystems"}
	serverKeys  = []string{"audit", "auth", "insecure_http", "listen", "max_connections_per_address", "tls"}
	authKeys    = []string{"tokens"}
	tokenKeys   = []string{"name", "policy", "subsystems", "token_env"}
	tlsKeys     = []string{"cert_file", "client_ca_file", "key_file", "min_version"}
	auditKeys   = []string{"max_files", "max_size", "path"}
	logKeys     = []string{"format", "level"}
	pluginsKeys = []string{"checksums", "dir", "start_timeout"}
)

// decoder turns the raw merged configuration map into a Config, strictly:
// every key outside subsystems.<name>.* must be known and of the right type.
// It collects every issue rather than stopping at the first.
type decoder struct {
	issues []issue
}

// addf records an issue at p.
func (d *decoder) addf(p keyPath, format string, args ...any) {
	d.issues = append(d.issues, issue{path: p, msg: fmt.Sprintf(format, args...)})
}

// decode decodes raw, the merged configuration, into a Config. Values that
// fail to decode are left zero and reported.
func decode(raw map[string]any) (*Config, []issue) {
	d := &decoder{}
	c := &Config{
		Plugins:    Plugins{Checksums: map[string]string{}},
		Subsystems: map[string]Subsystem{},
	}
	root, _ := d.mapping(nil, raw, rootKeys)
	for k, v := range root {
		p := keyPath{k}
		switch k {
		case "server":
			d.server(p, v, &c.Server)
		case "log":
			d.log(p, v, &c.Log)
		case "data_dir":
			c.DataDir = d.str(p, v, "a folder path")
		case "plugins":
			d.plugins(p, v, &c.Plugins)
		case "subsystems":
			d.subsystems(p, v, c.Subsystems)
		}
	}
	return c, d.issues
}

// mapping returns v as a mapping, reporting an issue when it is none and
// one for every key not in allowed.
func (d *decoder) mapping(p keyPath, v any, allowed []string) (map[string]any, bool) {
	m, ok := v.(map[string]any)
	if !ok {
		d.addf(p, "must be a mapping with the keys %s, got %s", strings.Join(allowed, ", "), describe(v))
		return nil, false
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if slices.Contains(allowed, k) {
			continue
		}
		msg := "unknown key"
		if s := suggest(k, allowed); s != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", s)
		}
		d.addf(p.key(k), "%s; allowed: %s", msg, strings.Join(allowed, ", "))
	}
	return m, true
}

// str returns v as a string, reporting an issue ("must be <want>") when it
// is none.
func (d *decoder) str(p keyPath, v any, want string) string {
	s, ok := v.(string)
	if !ok {
		d.addf(p, "must be %s, got %s", want, describe(v))
	}
	return s
}

// server decodes the server section.
func (d *decoder) server(p keyPath, v any, s *Server) {
	m, ok := d.mapping(p, v, serverKeys)
	if !ok {
		return
	}
	if v, ok := m["listen"]; ok {
		s.Listen = d.str(p.key("listen"), v, "host:port")
	}
	if v, ok := m["auth"]; ok {
		d.auth(p.key("auth"), v, &s.Auth)
	}
	if v, ok := m["insecure_http"]; ok {
		s.InsecureHTTP = d.boolean(p.key("insecure_http"), v)
	}
	if v, ok := m["max_connections_per_address"]; ok {
		s.MaxConnsPerAddress = d.integer(p.key("max_connections_per_address"), v, "a whole number of connections (0: no bound)")
	}
	if v, ok := m["tls"]; ok {
		tp := p.key("tls")
		if m, ok := d.mapping(tp, v, tlsKeys); ok {
			for key, dst := range map[string]*string{"cert_file": &s.TLS.CertFile, "key_file": &s.TLS.KeyFile, "client_ca_file": &s.TLS.ClientCAFile} {
				if v, ok := m[key]; ok && v != nil {
					*dst = d.str(tp.key(key), v, "a file path")
				}
			}
			if v, ok := m["min_version"]; ok {
				switch v := v.(type) {
				case float64: // min_version: 1.2 without quotes
					s.TLS.MinVersion = strconv.FormatFloat(v, 'f', -1, 64)
				default:
					s.TLS.MinVersion = d.str(tp.key("min_version"), v, "one of "+strings.Join(tlsVersions, ", "))
				}
			}
		}
	}
	if v, ok := m["audit"]; ok {
		ap := p.key("audit")
		if m, ok := d.mapping(ap, v, auditKeys); ok {
			if v, ok := m["path"]; ok && v != nil {
				s.Audit.Path = d.str(ap.key("path"), v, "a file path (empty: the host log)")
			}
			if v, ok := m["max_size"]; ok {
				s.Audit.MaxSize = d.size(ap.key("max_size"), v)
			}
			if v, ok := m["max_files"]; ok {
				s.Audit.MaxFiles = d.integer(ap.key("max_files"), v, "a whole number of files")
			}
		}
	}
}

// boolean decodes true or false.
func (d *decoder) boolean(p keyPath, v any) bool {
	b, ok := v.(bool)
	if !ok {
		d.addf(p, "must be true or false, got %s", describe(v))
	}
	return b
}

// integer decodes a whole number that fits an int.
func (d *decoder) integer(p keyPath, v any, want string) int {
	switch n := v.(type) {
	case int:
		return n
	case int64:
		if n >= math.MinInt && n <= math.MaxInt {
			return int(n)
		}
	case uint64:
		if n <= math.MaxInt {
			return int(n)
		}
	case float64:
		if n == math.Trunc(n) && n >= -1<<52 && n <= 1<<52 {
			return int(n)
		}
	}
	d.addf(p, "must be %s, got %s", want, describe(v))
	return 0
}

// size decodes a size: a string such as "64MiB", or a whole number of
// bytes.
func (d *decoder) size(p keyPath, v any) int64 {
	if s, ok := v.(string); ok {
		n, err := sdk.ParseSize(s)
		if err != nil {
			d.addf(p, "must be a size such as \"64MiB\": %v", err)
			return 0
		}
		return int64(n)
	}
	return int64(d.integer(p, v, "a size such as \"64MiB\""))
}

// auth decodes server.auth.
func (d *decoder) auth(p keyPath, v any, a *Auth) {
	m, ok := d.mapping(p, v, authKeys)
	if !ok {
		return
	}
	v, ok = m["tokens"]
	if !ok || v == nil {
		return
	}
	p = p.key("tokens")
	list, ok := v.([]any)
	if !ok {
		d.addf(p, "must be a list of {name, token_env, policy, subsystems}, got %s", describe(v))
		return
	}
	for i, e := range list {
		ep := p.index(i)
		m, ok := d.mapping(ep, e, tokenKeys)
		if !ok {
			a.Tokens = append(a.Tokens, Token{})
			continue
		}
		t := Token{Policy: PolicyAdmin}
		if v, ok := m["policy"]; ok {
			t.Policy = d.str(ep.key("policy"), v, "one of "+strings.Join(Policies, ", "))
			if t.Policy == "" {
				d.addf(ep.key("policy"), "must be one of %s (leave the key out for admin), got \"\"", strings.Join(Policies, ", "))
			}
		}
		if v, ok := m["subsystems"]; ok && v != nil {
			sp := ep.key("subsystems")
			if list, ok := v.([]any); ok {
				for k, e := range list {
					t.Subsystems = append(t.Subsystems, d.str(sp.index(k), e, "a subsystem name"))
				}
			} else {
				d.addf(sp, "must be a list of subsystem names, got %s", describe(v))
			}
		}
		if v, ok := m["name"]; ok {
			t.Name = d.str(ep.key("name"), v, "a caller name")
		}
		if v, ok := m["token_env"]; ok {
			t.TokenEnv = d.str(ep.key("token_env"), v, "the name of an environment variable")
		}
		a.Tokens = append(a.Tokens, t)
	}
}

// log decodes the log section. Level and format are case-insensitive.
func (d *decoder) log(p keyPath, v any, l *Log) {
	m, ok := d.mapping(p, v, logKeys)
	if !ok {
		return
	}
	if v, ok := m["level"]; ok {
		l.Level = strings.ToLower(d.str(p.key("level"), v, "one of "+strings.Join(logLevels, ", ")))
	}
	if v, ok := m["format"]; ok {
		l.Format = strings.ToLower(d.str(p.key("format"), v, "one of "+strings.Join(logFormats, ", ")))
	}
}

// plugins decodes the plugins section. Checksums are stored lower-case.
func (d *decoder) plugins(p keyPath, v any, pl *Plugins) {
	m, ok := d.mapping(p, v, pluginsKeys)
	if !ok {
		return
	}
	if v, ok := m["dir"]; ok {
		pl.Dir = d.str(p.key("dir"), v, "a folder path")
	}
	if v, ok := m["start_timeout"]; ok {
		sp := p.key("start_timeout")
		s, isStr := v.(string)
		dur, err := time.ParseDuration(s)
		if !isStr || err != nil {
			d.addf(sp, "must be a duration such as \"10s\", got %s", describe(v))
		} else {
			pl.StartTimeout = dur
		}
	}
	if v, ok := m["checksums"]; ok && v != nil {
		cp := p.key("checksums")
		sums, ok := v.(map[string]any)
		if !ok {
			d.addf(cp, "must be a mapping of dw-plugin-<name> to a hex SHA-256, got %s", describe(v))
			return
		}
		for k, v := range sums {
			pl.Checksums[k] = strings.ToLower(d.str(cp.key(k), v, "a 64-character hex SHA-256"))
		}
	}
}

// subsystems decodes the subsystems section. Only enabled and limits are
// the host's; every other key is the plugin's and passes through.
func (d *decoder) subsystems(p keyPath, v any, out map[string]Subsystem) {
	if v == nil {
		return
	}
	m, ok := v.(map[string]any)
	if !ok {
		d.addf(p, "must be a mapping of subsystem name to section, got %s", describe(v))
		return
	}
	for name, sec := range m {
		sp := p.key(name)
		s := Subsystem{Enabled: true, Settings: map[string]any{}, Limits: map[string]any{}}
		switch sec := sec.(type) {
		case nil:
			// An empty section: enabled, no settings, no limits.
		case map[string]any:
			for k, v := range sec {
				switch k {
				case "enabled":
					b, ok := v.(bool)
					if !ok {
						d.addf(sp.key(k), "must be true or false, got %s", describe(v))
					}
					s.Enabled = b
				case "limits":
					switch l := v.(type) {
					case nil:
					case map[string]any:
						s.Limits = l
					default:
						d.addf(sp.key(k), "must be a mapping of limit names to values, got %s", describe(v))
					}
				default:
					s.Settings[k] = v
				}
			}
		default:
			d.addf(sp, "must be a mapping (the subsystem's section), got %s", describe(sec))
		}
		out[name] = s
	}
}
