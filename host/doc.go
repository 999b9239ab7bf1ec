// Package host is the dw host: it loads the configuration, opens the host
// key-value store, starts and supervises every plugin (package
// host/supervisor), and serves the admin HTTP API (package host/api).
//
// Start-up order: config → data_dir → KV store → plugins (all in parallel;
// a refused plugin never stops the others) → HTTP listener. Shutdown order,
// on SIGINT or SIGTERM: stop accepting connections, drain in-flight requests
// up to the drain deadline, stop plugins (graceful, then their process
// groups are killed), close the KV store.
//
// Live reconfiguration: [Host.Watch] follows the config file and
// plugins.dir; every settled change of the file goes through
// [Host.Reload], one all-or-nothing transaction (see its doc comment);
// [Run] adds SIGHUP (reload and rescan now) and signal handling.
package host
