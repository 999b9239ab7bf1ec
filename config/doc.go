// Package config is the dw host's configuration: its schema ([Config]), its
// defaults ([DefaultYAML], the file config/dw.yaml) and its loading ([Load],
// [Parse]). [Watcher] watches the file and delivers each settled, changed
// content with its hash ([Change]); the host parses exactly those bytes with
// [Parse], never reading the file again, and swaps the result in whole.
// [ReadFile] is the one way the file is read (by Load, the Watcher, and the
// host's SIGHUP and API reloads): one whole read, refused when the file
// changed during it.
//
// # Sources
//
// A configuration is built from three layers, each over the one before:
//
//  1. the embedded defaults, dw.yaml;
//  2. the config file (YAML, one document, at most [MaxFileSize] bytes; an
//     empty file means the defaults alone);
//  3. environment variables DW_<SECTION>__<KEY>: "__" separates levels,
//     single underscores stay inside key names, names are lower-cased.
//     DW_SERVER__LISTEN sets server.listen, DW_DATA_DIR sets data_dir,
//     DW_SUBSYSTEMS__DBSTORAGE__LIMITS__MAX_PAGE_SIZE sets
//     subsystems.dbstorage.limits.max_page_size. Values are read as YAML
//     scalars or flow collections ("100" is a number, "true" a bool,
//     "[a, b]" a list) and otherwise taken as written ("64MiB",
//     "[::1]:7070"). A DW_ variable without "__" is configuration only when
//     it names a top-level key (DW_DATA_DIR, DW_LOG, …), so DW_ADDR,
//     DW_TOKEN, DW_HOST_PID and token variables such as DW_ADMIN_TOKEN are
//     left alone.
//
// Mappings merge key by key: a subsystem section in the file merges over the
// default section of the same name, its limits key by key (nested mappings
// too). The value of a settings key (any key of a section but enabled and
// limits) given in the file replaces the default value whole, so
// "sources: {docs: /srv/docs}" means that one source. Lists and scalars
// replace; a null over a mapping changes nothing. Every load uses a fresh
// koanf instance, so a key removed from the file is gone at the next load.
//
// # Schema
//
// The host's own keys (server, log, data_dir, plugins, and enabled and
// limits of each subsystem) are decoded strictly: an unknown key, a wrong
// type or a bad value is an error naming the key path and what is allowed,
// with a suggestion for a misspelt key. Everything else in a subsystem
// section is the plugin's: [Subsystem.Settings] and [Subsystem.Limits] pass
// it through verbatim, and the plugin judges it (ValidateLimits). Sections of
// subsystems the host has no default for (third-party plugins) are allowed.
// data_dir and plugins.dir are made absolute against the process working
// directory; relative paths inside subsystem settings are left for whoever
// uses them to resolve against data_dir.
//
// # Errors
//
// Load, Parse and [Config.Validate] report every problem at once, as an
// [*Error] whose problems are sorted by key path and prefixed with their
// source:
//
//	config dw.yaml: log.level: must be one of trace, debug, info, warn, error, got "loud"
//	config dw.yaml: server.lisen: unknown key (did you mean "listen"?); allowed: auth, listen
//	config environment: plugins.start_timeout: must be a duration such as "10s", got "soon"
//
// YAML syntax errors name the file and the line. Hostile input is bounded:
// besides the file size, a document may nest at most 64 levels and hold at
// most 100,000 keys and values once its aliases are expanded.
package config
