package config

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/datawarehouse/dw/sdk/v6/pluginhost"
)

// JSONSchema returns the JSON Schema (draft 2020-12) of a config file, as a
// value for encoding/json: the host's own keys (server, log, data_dir,
// plugins, and enabled and limits of every subsystem), and for each plugin
// in plugins the section subsystems.<name> its schema describes (a nil
// schema, from a plugin of sdk 6.0, describes enabled and limits only). A
// subsystem not in plugins may still be configured (a plugin not installed
// yet): its section is checked for enabled and limits only.
//
// It describes a file as written, before the embedded defaults and the
// environment are merged in: every key is optional, and a null section
// keeps the defaults. Editors use it through yaml-language-server (a
// "# yaml-language-server: $schema=<file>" line, see dw config schema).
// What a schema cannot say (a token's environment variable must be set, a
// listen address off loopback needs tokens, rules between a plugin's keys)
// is checked by dw config validate.
func JSONSchema(plugins map[string]*pluginhost.Schema) map[string]any {
	nullable := func(t string) []any { return []any{t, "null"} }
	str := func(desc string) map[string]any { return map[string]any{"type": "string", "description": desc} }

	subsystems := map[string]any{}
	for _, name := range slices.Sorted(maps.Keys(plugins)) {
		sec := plugins[name].JSONSchema()
		sec["description"] = "The " + name + " plugin's section: settings (a change restarts the plugin), enabled, and limits (applied live)."
		subsystems[name] = sec
	}
	// A section without a known plugin: enabled and open limits, as for a
	// plugin that reports no schema.
	generic := (*pluginhost.Schema)(nil).JSONSchema()
	generic["description"] = "A subsystem whose plugin was not found: its settings and limits are checked by the plugin when it starts."
	// The defaults shown are those of the embedded config/dw.yaml, without
	// the environment.
	def, err := parse(nil, sourceDefaults, func() []string { return nil })
	if err != nil {
		panic(fmt.Sprintf("config: the embedded defaults do not parse: %v", err)) // caught by every test
	}

	token := map[string]any{
		"type":                 "object",
		"additionalProperties": false,
		"required":             []any{"name", "token_env"},
		"properties": map[string]any{
			"name":      map[string]any{"type": "string", "minLength": 1, "description": "The caller identity the token stands for."},
			"token_env": map[string]any{"type": "string", "pattern": envNameRE.String(), "description": fmt.Sprintf("The environment variable holding the token (which must be set, at least %d bytes).", MinTokenBytes)},
			"policy": map[string]any{"type": "string", "enum": []any{PolicyRead, PolicyWrite, PolicyAdmin}, "default": PolicyAdmin,
				"description": "read: every GET; write: also data (objects, files, backups, restores, gateway calls); admin: also config reload and validate, plugin restart, prune, forget."},
			"subsystems": map[string]any{"type": nullable("array"), "items": map[string]any{"type": "string", "pattern": subsystemNameRE.String()},
				"description": "When set, the only subsystems the token may touch."},
		},
	}
	fileKey := func(what string) map[string]any {
		return map[string]any{"type": "string", "default": "", "description": what + "; relative to the working directory."}
	}
	return map[string]any{
		"$schema":              pluginhost.JSONSchemaDialect,
		"title":                "dw configuration",
		"description":          "The dw host's config file. Every key is optional: what is left out keeps the embedded defaults (config/dw.yaml).",
		"type":                 nullable("object"),
		"additionalProperties": false,
		"properties": map[string]any{
			"server": map[string]any{
				"type":                 nullable("object"),
				"description":          "The HTTP API.",
				"additionalProperties": false,
				"properties": map[string]any{
					"listen": map[string]any{"type": "string", "default": def.Server.Listen,
						"description": "host:port the API listens on; an address other than loopback needs server.auth.tokens."},
					"auth": map[string]any{
						"type":                 nullable("object"),
						"description":          "Bearer-token authentication of the API.",
						"additionalProperties": false,
						"properties": map[string]any{
							"tokens": map[string]any{"type": nullable("array"), "items": token,
								"description": "Accepted tokens, each {name, token_env, policy, subsystems}; none means no authentication (loopback only)."},
						},
					},
					"tls": map[string]any{
						"type":                 nullable("object"),
						"description":          "HTTPS for the API; the certificate and key files are watched and rotated live. dw tls init writes a pair.",
						"additionalProperties": false,
						"properties": map[string]any{
							"cert_file":      fileKey("PEM certificate chain of the server, leaf first; empty: plain HTTP"),
							"key_file":       fileKey("PEM private key of cert_file"),
							"client_ca_file": fileKey("PEM CAs whose client certificates are required (mutual TLS); empty: none asked for"),
							"min_version": map[string]any{"type": []any{"string", "number"}, "enum": []any{"1.2", "1.3", 1.2, 1.3}, "default": def.Server.TLS.MinVersion,
								"description": "The lowest TLS version accepted (quoted or not)."},
						},
					},
					"insecure_http": map[string]any{"type": "boolean", "default": def.Server.InsecureHTTP,
						"description": "Allow plain HTTP on an address other than loopback (logged at warn on every start)."},
					"audit": map[string]any{
						"type":                 nullable("object"),
						"description":          "The audit log: one JSON line per mutating or refused request, without tokens.",
						"additionalProperties": false,
						"properties": map[string]any{
							"path":      map[string]any{"type": "string", "default": def.Server.Audit.Path, "description": "The audit file (created 0600); relative to data_dir; empty: the host log."},
							"max_size":  map[string]any{"type": []any{"string", "integer"}, "default": "64MiB", "description": "Size at which the file is rotated, at least 1MiB."},
							"max_files": map[string]any{"type": "integer", "minimum": 0, "maximum": maxAuditFiles, "default": def.Server.Audit.MaxFiles, "description": "Rotated files kept besides the current one."},
						},
					},
					"max_connections_per_address": map[string]any{"type": "integer", "minimum": 0, "default": def.Server.MaxConnsPerAddress,
						"description": "Open connections allowed from one remote IP address; more are closed at once. 0: no bound."},
				},
			},
			"log": map[string]any{
				"type":                 nullable("object"),
				"description":          "The host's log output.",
				"additionalProperties": false,
				"properties": map[string]any{
					"level":  map[string]any{"type": "string", "pattern": caseInsensitive(logLevels), "default": def.Log.Level, "description": "One of " + strings.Join(logLevels, ", ") + " (any case)."},
					"format": map[string]any{"type": "string", "pattern": caseInsensitive(logFormats), "default": def.Log.Format, "description": "text or json (any case)."},
				},
			},
			"data_dir": str("The folder the host and its plugins keep their data in; relative to the working directory. Relative paths in subsystem settings are resolved against it."),
			"plugins": map[string]any{
				"type":                 nullable("object"),
				"description":          "Plugin discovery and launch.",
				"additionalProperties": false,
				"properties": map[string]any{
					"dir": str("The folder searched for dw-plugin-<name> executables; relative to the working directory."),
					"start_timeout": map[string]any{"type": "string", "pattern": pluginhost.DurationPattern, "default": def.Plugins.StartTimeout.String(),
						"description": fmt.Sprintf("Bound of a plugin's handshake and each start-up call: a duration such as \"10s\", more than 0 and at most %v.", MaxStartTimeout)},
					"checksums": map[string]any{
						"type":                 nullable("object"),
						"description":          "Optional pinning: dw-plugin-<name> to the SHA-256 its file must have.",
						"propertyNames":        map[string]any{"pattern": checksumKeyRE.String()},
						"additionalProperties": map[string]any{"type": "string", "pattern": sha256RE.String()},
					},
				},
			},
			"subsystems": map[string]any{
				"type":                 nullable("object"),
				"description":          "One section per subsystem (plugin) name.",
				"propertyNames":        map[string]any{"pattern": subsystemNameRE.String()},
				"properties":           subsystems,
				"additionalProperties": generic,
			},
		},
	}
}

// caseInsensitive returns a pattern matching exactly one of words, in any
// letter case (JSON Schema patterns have no flags).
func caseInsensitive(words []string) string {
	var b strings.Builder
	b.WriteString("^(")
	for i, w := range words {
		if i > 0 {
			b.WriteString("|")
		}
		for _, r := range w {
			lo, up := strings.ToLower(string(r)), strings.ToUpper(string(r))
			if lo == up {
				b.WriteString(lo)
			} else {
				b.WriteString("[" + lo + up + "]")
			}
		}
	}
	b.WriteString(")$")
	return b.String()
}
