package config

import (
	_ "embed" // for DefaultYAML
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// DefaultYAML is the default configuration file, config/dw.yaml, as embedded
// in the binary. Every load starts from it.
//
//go:embed dw.yaml
var DefaultYAML []byte

// MaxFileSize is the largest configuration file, in bytes, that [Load] and
// [Parse] accept.
const MaxFileSize = 4 << 20

// MaxStartTimeout is the largest plugins.start_timeout allowed.
const MaxStartTimeout = 10 * time.Minute

// Config is a loaded, validated host configuration.
type Config struct {
	// Server is the HTTP API listener (key server).
	Server Server
	// Log configures the host's log output (key log).
	Log Log
	// DataDir is the folder the host and its plugins keep their data in (key
	// data_dir). Parse and Load make it absolute, relative to the process
	// working directory. Relative paths in subsystem settings are resolved
	// against it by whoever uses them.
	DataDir string
	// Plugins configures plugin discovery and launch (key plugins).
	Plugins Plugins
	// Subsystems holds one section per subsystem name (key subsystems),
	// first-party and third-party alike.
	Subsystems map[string]Subsystem
}

// Server configures the host's HTTP API.
type Server struct {
	// Listen is the host:port the API listens on (key listen). A listen
	// address that is not loopback needs at least one token, and TLS
	// unless InsecureHTTP is set.
	Listen string
	// Auth lists the callers allowed to use the API (key auth).
	Auth Auth
	// TLS serves the API over HTTPS (key tls); off when TLS.CertFile is
	// empty.
	TLS TLS
	// InsecureHTTP allows plain HTTP on a listen address that is not
	// loopback (key insecure_http). The host logs a warning on every
	// start while it is set.
	InsecureHTTP bool
	// Audit configures the audit log of the API (key audit).
	Audit Audit
	// MaxConnsPerAddress bounds the open connections from one remote IP
	// address (key max_connections_per_address); 0 means no bound.
	// Connections past it are closed at once.
	MaxConnsPerAddress int
}

// TLS configures HTTPS for the API. The certificate and key files are
// watched: a new valid pair is used for new connections without a
// restart.
type TLS struct {
	// CertFile is the PEM certificate chain of the server, leaf first (key
	// cert_file). Parse and Load make it absolute, relative to the
	// process working directory.
	CertFile string
	// KeyFile is the PEM private key of CertFile (key key_file).
	KeyFile string
	// ClientCAFile, when set, is a PEM bundle of the CAs whose client
	// certificates the API requires (key client_ca_file): mutual TLS.
	ClientCAFile string
	// MinVersion is the lowest TLS version accepted: "1.2" or "1.3" (key
	// min_version); "" means 1.2.
	MinVersion string
}

// Enabled reports whether the API is served over TLS.
func (t TLS) Enabled() bool { return t.CertFile != "" }

// TLS versions of server.tls.min_version.
var tlsVersions = []string{"1.2", "1.3"}

// Audit configures the audit log: one JSON line per mutating or refused
// request.
type Audit struct {
	// Path is the audit file (key path); empty means the host log. Parse
	// and Load make it absolute, relative to data_dir. The file is created
	// 0600 and rotated by size.
	Path string
	// MaxSize is the size, in bytes, at which the file is rotated (key
	// max_size, a size string such as "64MiB"); at least 1 MiB, and 0
	// means [DefaultAuditMaxSize].
	MaxSize int64
	// MaxFiles is how many rotated files are kept besides the current
	// one (key max_files).
	MaxFiles int
}

// Token policies: what a token may do.
const (
	// PolicyRead may call every GET and HEAD route.
	PolicyRead = "read"
	// PolicyWrite may also change data: objects, files, backups and
	// restores, gateway calls.
	PolicyWrite = "write"
	// PolicyAdmin may do everything: also reload and validate the
	// config, restart plugins, prune and forget snapshots.
	PolicyAdmin = "admin"
)

// Policies lists the token policies, weakest first.
var Policies = []string{PolicyRead, PolicyWrite, PolicyAdmin}

// MinTokenBytes is the shortest token accepted.
const MinTokenBytes = 16

// Auth configures bearer-token authentication of the HTTP API.
type Auth struct {
	// Tokens are the accepted tokens (key tokens). Empty means no
	// authentication, which is only allowed on a loopback listener.
	Tokens []Token
}

// Token names one accepted bearer token. The token itself is never in the
// configuration: it is read from the environment variable TokenEnv.
type Token struct {
	// Name is the caller identity the token stands for (key name).
	Name string
	// TokenEnv is the name of the environment variable holding the token
	// (key token_env). The token must be at least [MinTokenBytes] long.
	TokenEnv string
	// Policy is what the token may do (key policy): read, write or admin
	// (see [Policies]). A token without a policy is admin, as every token
	// was before policies existed; so is "" in a Config built in Go (the
	// file cannot say policy: "").
	Policy string
	// Subsystems, when not empty, are the only subsystems the token may
	// touch (key subsystems); host-wide routes stay open to it as its
	// policy allows.
	Subsystems []string
}

// Log configures the host's log output.
type Log struct {
	// Level is one of trace, debug, info, warn, error (key level).
	Level string
	// Format is text or json (key format).
	Format string
}

// Plugins configures plugin discovery and launch.
type Plugins struct {
	// Dir is the folder searched for dw-plugin-<name> executables (key dir).
	// Parse and Load make it absolute, relative to the process working
	// directory.
	Dir string
	// StartTimeout bounds a plugin's start-up handshake (key start_timeout,
	// a duration string such as "10s"); more than 0 and at most
	// [MaxStartTimeout].
	StartTimeout time.Duration
	// Checksums optionally pins plugin binaries: binary name
	// (dw-plugin-<name>) to the lower-case hex SHA-256 of its file (key
	// checksums).
	Checksums map[string]string
}

// Subsystem is the section of one subsystem, subsystems.<name>.
type Subsystem struct {
	// Enabled says whether the host starts the subsystem's plugin (key
	// enabled); true when the section exists without it.
	Enabled bool
	// Settings holds every key of the section except enabled and limits,
	// passed through to the plugin verbatim. A change restarts the plugin.
	// Never nil after Parse.
	Settings map[string]any
	// Limits is the section's limits mapping, passed through verbatim; the
	// plugin's ValidateLimits judges it. A change is applied live. Never nil
	// after Parse.
	Limits map[string]any
}

// DefaultAuditMaxSize is the rotation size of the audit file when
// server.audit.max_size is 0.
const DefaultAuditMaxSize = 64 << 20

// Bounds of server.audit.
const (
	minAuditSize  = 1 << 20
	maxAuditFiles = 1000
)

// Allowed values of the host's enumerated keys.
var (
	logLevels  = []string{"trace", "debug", "info", "warn", "error"}
	logFormats = []string{"text", "json"}
)

var (
	// subsystemNameRE is what a subsystem name must match.
	subsystemNameRE = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)
	// checksumKeyRE is what a plugins.checksums key must match.
	checksumKeyRE = regexp.MustCompile(`^dw-plugin-[a-z][a-z0-9_-]{0,62}$`)
	// sha256RE is what a plugins.checksums value must match.
	sha256RE = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)
	// envNameRE is what an environment variable name must match.
	envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// PluginBinaryPrefix starts the file name of every plugin binary:
// dw-plugin-<subsystem>.
const PluginBinaryPrefix = "dw-plugin-"

// Validate checks the values of c: listen address, log level and format,
// folders, start timeout, checksums, subsystem names and tokens (whose
// environment variables must be set). It returns nil or an [*Error] listing
// every problem, sorted by key path. Parse and Load call it.
func (c *Config) Validate() error {
	issues := c.check(lookupOS)
	if len(issues) == 0 {
		return nil
	}
	ps := make([]Problem, len(issues))
	for i, is := range issues {
		ps[i] = Problem{Path: is.path.String(), Message: is.msg}
	}
	sortProblems(ps)
	return &Error{Problems: ps}
}

// check returns what is wrong with the values of c, reading token
// variables with lookup.
func (c *Config) check(lookup func(string) (string, bool)) []issue {
	var issues []issue
	add := func(p keyPath, format string, args ...any) {
		issues = append(issues, issue{path: p, msg: fmt.Sprintf(format, args...)})
	}

	listen := keyPath{"server", "listen"}
	hint, listenOK := checkHostPort(c.Server.Listen)
	if !listenOK {
		add(listen, "must be host:port%s, got %s", hint, describe(c.Server.Listen))
	}

	names := map[string]int{}
	values := map[string]int{}
	for i, t := range c.Server.Auth.Tokens {
		at := keyPath{"server", "auth", "tokens", i}
		switch j, dup := names[t.Name]; {
		case t.Name == "":
			add(at.key("name"), "must not be empty")
		case dup:
			add(at.key("name"), "duplicate token name %s (also server.auth.tokens[%d])", describe(t.Name), j)
		default:
			names[t.Name] = i
		}
		if t.Policy != "" && !slices.Contains(Policies, t.Policy) {
			add(at.key("policy"), "must be one of %s, got %s", strings.Join(Policies, ", "), describe(t.Policy))
		}
		seen := map[string]bool{}
		for k, sub := range t.Subsystems {
			sp := at.key("subsystems").index(k)
			switch _, known := c.Subsystems[sub]; {
			case !subsystemNameRE.MatchString(sub):
				add(sp, "subsystem name must be %s, got %s", subsystemNameRule, describe(sub))
			case !known:
				add(sp, "names no subsystem of the subsystems section, got %s", describe(sub))
			case seen[sub]:
				add(sp, "duplicate subsystem %s", describe(sub))
			}
			seen[sub] = true
		}
		env := at.key("token_env")
		switch {
		case t.TokenEnv == "":
			add(env, "must name the environment variable holding the token")
		case !envNameRE.MatchString(t.TokenEnv):
			add(env, "must be an environment variable name (letters, digits, _), got %s", describe(t.TokenEnv))
		default:
			v, problem := tokenValue(t, lookup)
			switch j, dup := values[v]; {
			case problem != "":
				add(env, "%s", problem)
			case dup:
				add(env, "environment variable %s holds the same token as server.auth.tokens[%d]", t.TokenEnv, j)
			default:
				values[v] = i
			}
		}
	}
	if listenOK && len(c.Server.Auth.Tokens) == 0 && !isLoopback(c.Server.Listen) {
		add(listen, "%s is not a loopback address and server.auth.tokens is empty; add a token or listen on 127.0.0.1", c.Server.Listen)
	}
	if listenOK && !c.Server.TLS.Enabled() && !c.Server.InsecureHTTP && !isLoopback(c.Server.Listen) {
		add(listen, "%s is not a loopback address and server.tls is not set: tokens would travel in clear text; set server.tls.cert_file and key_file (dw tls init makes them), or server.insecure_http: true to allow plain HTTP", c.Server.Listen)
	}
	tp := keyPath{"server", "tls"}
	switch tls := c.Server.TLS; {
	case tls.CertFile == "" && tls.KeyFile != "":
		add(tp.key("cert_file"), "must be set when server.tls.key_file is")
	case tls.CertFile != "" && tls.KeyFile == "":
		add(tp.key("key_file"), "must be set when server.tls.cert_file is")
	case tls.CertFile == "" && tls.ClientCAFile != "":
		add(tp.key("client_ca_file"), "needs server.tls.cert_file and key_file: client certificates are asked for over TLS only")
	}
	if v := c.Server.TLS.MinVersion; v != "" && !slices.Contains(tlsVersions, v) {
		add(tp.key("min_version"), "must be one of %s, got %s", strings.Join(tlsVersions, ", "), describe(c.Server.TLS.MinVersion))
	}
	ap := keyPath{"server", "audit"}
	if n := c.Server.Audit.MaxSize; n != 0 && n < minAuditSize {
		add(ap.key("max_size"), "must be at least 1MiB, got %d bytes", c.Server.Audit.MaxSize)
	}
	if n := c.Server.Audit.MaxFiles; n < 0 || n > maxAuditFiles {
		add(ap.key("max_files"), "must be from 0 to %d, got %d", maxAuditFiles, n)
	}
	if n := c.Server.MaxConnsPerAddress; n < 0 {
		add(keyPath{"server", "max_connections_per_address"}, "must be 0 (no bound) or more, got %d", n)
	}

	if !slices.Contains(logLevels, c.Log.Level) {
		add(keyPath{"log", "level"}, "must be one of %s, got %s", strings.Join(logLevels, ", "), describe(c.Log.Level))
	}
	if !slices.Contains(logFormats, c.Log.Format) {
		add(keyPath{"log", "format"}, "must be one of %s, got %s", strings.Join(logFormats, ", "), describe(c.Log.Format))
	}

	if c.DataDir == "" {
		add(keyPath{"data_dir"}, "must be a folder path, got \"\"")
	}
	if c.Plugins.Dir == "" {
		add(keyPath{"plugins", "dir"}, "must be a folder path, got \"\"")
	}
	if d := c.Plugins.StartTimeout; d <= 0 || d > MaxStartTimeout {
		add(keyPath{"plugins", "start_timeout"}, "must be more than 0s and at most 10m, got %q", d.String())
	}
	for key, sum := range c.Plugins.Checksums {
		at := keyPath{"plugins", "checksums", key}
		if !checksumKeyRE.MatchString(key) {
			add(at, "key must be %s<name>, the file name of a plugin binary, where <name> is %s", PluginBinaryPrefix, subsystemNameRule)
			continue
		}
		if !sha256RE.MatchString(sum) {
			add(at, "must be a 64-character hex SHA-256, got %s", describe(sum))
		}
	}

	for name := range c.Subsystems {
		if !subsystemNameRE.MatchString(name) {
			add(keyPath{"subsystems", name}, "subsystem name must be %s", subsystemNameRule)
		}
	}
	return issues
}

// subsystemNameRule describes subsystemNameRE to people.
const subsystemNameRule = "a lower-case letter followed by up to 62 lower-case letters, digits, _ or -"

// checkHostPort returns "" when s is host:port with a numeric port from 0
// to 65535, else what to add to "must be host:port".
func checkHostPort(s string) (hint string, ok bool) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", false
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return " with a port from 0 to 65535", false
	}
	if strings.ContainsAny(host, " \t\r\n/") {
		return " with an IP address or host name as host", false
	}
	return "", true
}

// isLoopback reports whether the host of the host:port address s is a
// loopback address (127.0.0.0/8, ::1) or localhost.
func isLoopback(s string) bool {
	host, _, err := net.SplitHostPort(s)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// lookupOS looks an environment variable up in the process environment.
func lookupOS(name string) (string, bool) { return os.LookupEnv(name) }

// tokenValue reads t's token from its environment variable; problem says
// what is wrong with it ("" for nothing), never showing the value.
func tokenValue(t Token, lookup func(string) (string, bool)) (value, problem string) {
	v, ok := lookup(t.TokenEnv)
	switch {
	case !ok:
		return "", fmt.Sprintf("environment variable %s is not set", t.TokenEnv)
	case v == "":
		return "", fmt.Sprintf("environment variable %s is empty", t.TokenEnv)
	case len(v) < MinTokenBytes:
		return "", fmt.Sprintf("environment variable %s holds a token of %d bytes; tokens must be at least %d bytes (openssl rand -hex 32 makes one)", t.TokenEnv, len(v), MinTokenBytes)
	}
	return v, ""
}

// Credential is a token of server.auth.tokens with its value, read from
// the environment: what the API checks bearer tokens against. Its
// Policy is never empty (see [Token.PolicyOrAdmin]).
type Credential struct {
	Token
	// Value is the secret token. Never print it.
	Value string
}

// Credentials reads every token of server.auth.tokens from its
// environment variable, in the order of the file, with the checks of
// Validate (the environment may have changed since).
func (c *Config) Credentials() ([]Credential, error) {
	return c.credentials(lookupOS)
}

// credentials is Credentials with a given variable lookup.
func (c *Config) credentials(lookup func(string) (string, bool)) ([]Credential, error) {
	out := make([]Credential, 0, len(c.Server.Auth.Tokens))
	seen := make(map[string]int, len(c.Server.Auth.Tokens))
	for i, t := range c.Server.Auth.Tokens {
		v, problem := tokenValue(t, lookup)
		if problem != "" {
			return nil, fmt.Errorf("config: server.auth.tokens[%d].token_env: %s", i, problem)
		}
		if j, dup := seen[v]; dup {
			return nil, fmt.Errorf("config: server.auth.tokens[%d].token_env: environment variable %s holds the same token as server.auth.tokens[%d]", i, t.TokenEnv, j)
		}
		seen[v] = i
		t.Policy = t.PolicyOrAdmin()
		t.Subsystems = slices.Clone(t.Subsystems)
		out = append(out, Credential{Token: t, Value: v})
	}
	return out, nil
}

// Redacted returns c as a map with the key names of the config file, for
// display and logs. Token environment variable names are shown, token values
// never (they are not part of the configuration). In subsystem settings and
// limits, values under keys that look secret (password, secret, credential,
// token, …_key; but not …_env, which name a variable) are replaced by
// "<redacted>", and so are passwords in URLs ("postgres://u:<redacted>@h/db").
// The map shares nothing with c.
func (c *Config) Redacted() map[string]any {
	tokens := make([]any, 0, len(c.Server.Auth.Tokens))
	for _, t := range c.Server.Auth.Tokens {
		subs := make([]any, len(t.Subsystems))
		for i, n := range t.Subsystems {
			subs[i] = n
		}
		tokens = append(tokens, map[string]any{"name": t.Name, "token_env": t.TokenEnv, "policy": t.Policy, "subsystems": subs})
	}
	checksums := make(map[string]any, len(c.Plugins.Checksums))
	for k, v := range c.Plugins.Checksums {
		checksums[k] = v
	}
	subsystems := make(map[string]any, len(c.Subsystems))
	for name, s := range c.Subsystems {
		sec := make(map[string]any, len(s.Settings)+2)
		for k, v := range s.Settings {
			sec[k] = redact(k, v)
		}
		sec["enabled"] = s.Enabled
		limits := make(map[string]any, len(s.Limits))
		for k, v := range s.Limits {
			limits[k] = redact(k, v)
		}
		sec["limits"] = limits
		subsystems[name] = sec
	}
	return map[string]any{
		"server": map[string]any{
			"listen": c.Server.Listen,
			"auth":   map[string]any{"tokens": tokens},
			"tls": map[string]any{
				"cert_file":      c.Server.TLS.CertFile,
				"key_file":       c.Server.TLS.KeyFile,
				"client_ca_file": c.Server.TLS.ClientCAFile,
				"min_version":    c.Server.TLS.MinVersion,
			},
			"insecure_http": c.Server.InsecureHTTP,
			"audit": map[string]any{
				"path":      c.Server.Audit.Path,
				"max_size":  c.Server.Audit.MaxSize,
				"max_files": c.Server.Audit.MaxFiles,
			},
			"max_connections_per_address": c.Server.MaxConnsPerAddress,
		},
		"log":      map[string]any{"level": c.Log.Level, "format": c.Log.Format},
		"data_dir": c.DataDir,
		"plugins": map[string]any{
			"dir":           c.Plugins.Dir,
			"start_timeout": c.Plugins.StartTimeout.String(),
			"checksums":     checksums,
		},
		"subsystems": subsystems,
	}
}

// redacted replaces secret values in Redacted.
const redacted = "<redacted>"

// redact deep-copies v, the value of key, replacing secrets.
func redact(key string, v any) any {
	if secretKey(key) {
		if v == nil {
			return nil
		}
		return redacted
	}
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[k] = redact(k, e)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = redact(key, e)
		}
		return out
	case string:
		return redactURL(v)
	default:
		return v
	}
}

// secretKey reports whether a settings key looks like it holds a secret.
func secretKey(key string) bool {
	k := strings.ToLower(key)
	if strings.HasSuffix(k, "_env") || strings.HasSuffix(k, "-env") {
		return false
	}
	for _, w := range []string{"password", "passwd", "secret", "credential", "private_key", "api_key", "apikey"} {
		if strings.Contains(k, w) {
			return true
		}
	}
	return k == "token" || k == "key" || strings.HasSuffix(k, "_token") || strings.HasSuffix(k, "_key")
}

// redactURL hides the password of a URL with user info; other strings are
// returned as they are.
func redactURL(s string) string {
	if !strings.Contains(s, "://") || !strings.Contains(s, "@") {
		return s
	}
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	if _, has := u.User.Password(); !has {
		return s
	}
	u.User = url.UserPassword(u.User.Username(), redacted)
	// url.URL.String escapes "<" and ">" in user info; show them plainly.
	return strings.Replace(u.String(), url.QueryEscape(redacted), redacted, 1)
}

// PolicyOrAdmin returns t.Policy, or admin when it is empty.
func (t Token) PolicyOrAdmin() string {
	if t.Policy == "" {
		return PolicyAdmin
	}
	return t.Policy
}
