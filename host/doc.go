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
// [Run] adds SIGHUP (reload and rescan now) and signal handling. A reload
// acts on the bytes it validated: a change the watcher delivers is parsed
// and applied from the bytes the watcher read and hashed, never from a
// second read of the file (which could catch a save in progress, an empty
// file, and apply the defaults); SIGHUP and POST /v1/config/reload read
// the file once ([Host.ReloadFile]) and apply those bytes. The hash of the
// bytes in force ([ConfigInfo].FileHash) is recorded, so content already
// applied, however it was read, reloads nothing.
package host
