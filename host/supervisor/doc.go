// Package supervisor discovers, launches and supervises dw plugin
// processes: the host side of hashicorp/go-plugin, with the process
// ownership, refusals and restart policy dw needs.
//
// # Lifecycle
//
// [NewManager] checks the options; [Manager.Start] scans plugins.dir and
// starts every plugin in parallel; [Manager.Stop] stops them all. In
// between, each plugin has one supervision goroutine that owns its process
// and moves it through these states ([State]):
//
//	starting ─► serving ─(exit)─► restarting ─(backoff)─► starting …
//	    │                              │
//	    └─► refused                    └─(QuarantineAfter crashes in Window)─► quarantined
//
//	serving ─(Stop / Restart / binary removed or changed)─► stopping ─► stopped
//
// plus disabled (subsystems.<name>.enabled is false) and missing (enabled
// in the config, no binary). Statuses lists them all, sorted by name. A
// binary with no config section runs with its default limits and empty
// settings, so a dropped-in third-party plugin just works.
//
// # Discovery
//
// Every regular, executable file named dw-plugin-<name> in plugins.dir
// (name: a lowercase letter, then up to 62 of a-z, 0-9, '_', '-') is a
// plugin; symlinks are followed. Files named dw-plugin-* that are not
// loadable (a folder, not executable, unreadable, a bad name, a dangling
// link) are skipped with one warning naming the file and why (repeated only
// if the reason changes); other files are ignored. Each binary's SHA-256 is
// computed by streaming it; Rescan re-hashes only files whose device,
// inode, size, mtime or ctime changed. A plugins.dir that does not exist
// holds no plugins (a warning says so); one that cannot be read fails
// Start.
//
// A binary still being written is never launched: one whose mtime is less
// than DefaultSettle (250 ms) old is loaded only after it was seen
// unchanged for that long (Start or Rescan may wait that long), and one
// that is empty or open for writing by another process is left for a later
// scan. WatchDir (see its doc comment) follows the folder live: new,
// replaced and removed binaries are loaded, swapped and stopped, and a
// settled change of a refused plugin's file retries it.
//
// # Launch
//
// go-plugin starts the process through a custom runner (runner.go), so the
// supervisor owns it:
//
//   - All fork/execs run on one goroutine locked to one OS thread (the
//     spawner), which lives until Stop has reaped every plugin. Plugins are
//     started with Pdeathsig SIGTERM, which Linux fires when the *thread*
//     that forked them exits; a locked, long-lived thread makes that mean
//     "when the host dies". SIGTERM rather than SIGKILL so that an sdk
//     plugin runs its Shutdown on the way out (a fabric node leaves,
//     stores close their files); the sdk bounds that by a hard exit and then
//     kills the plugin's process group, so children do not outlive it
//     either. A process that does not catch SIGTERM dies of it, as of
//     SIGKILL. (The sdk additionally watches the host: see
//     sdk/orphan_linux.go.)
//   - Each plugin is the leader of its own process group (Setpgid). When
//     the plugin exits — crash, graceful stop or kill — the whole group is
//     killed with SIGKILL, so children it started do not outlive it
//     (go-plugin's Kill does not do this, issue #136). The exit is observed
//     at once with waitid(WNOWAIT) — no polling — and the group is killed
//     before the leader is reaped, so its pid cannot have been reused.
//   - stdin is /dev/null; stdout carries the handshake; stderr (hclog JSON)
//     is logged through Options.Logger named after the plugin, and its last
//     lines are kept to explain crashes. What a plugin prints to os.Stdout
//     or os.Stderr after the handshake is forwarded by go-plugin and logged
//     too (stream=stdout|stderr).
//   - The environment is the host's, plus go-plugin's variables,
//     DW_HOST_PID (pluginhost.EnvHostPID) and DW_PLUGIN_LOG_LEVEL
//     (pluginhost.EnvLogLevel). Plugins inherit the host environment on purpose:
//     settings such as fabric's encrypt_key_env name variables the plugin
//     reads.
//   - gRPC only, AutoMTLS, StartTimeout from plugins.start_timeout (also
//     the bound of each start-up call: GetInfo, Configure, ApplyLimits).
//
// After the handshake the supervisor dispenses the sdk client, asks
// GetInfo, checks pluginhost.Compatible(sdk.Version, plugin's SDK version),
// calls Configure (settings, data_dir, host version, the plugin's host KV)
// and ApplyLimits with the current limits and config generation. Only then
// is the plugin serving.
//
// # Probe
//
// [Probe] starts a plugin binary outside any Manager, for the offline
// commands (dw config validate, dw config schema, dw plugin docs): the
// same runner, spawner thread, process group and host pid as above, then
// the handshake and GetInfo, and nothing else: no Configure, so the plugin
// opens nothing. Probed.Stop kills the process group (a plugin never
// configured has nothing to flush) and waits until it is reaped and the
// spawner thread has ended. A pinned checksum is compared before the exec
// (the file is executed in place, not copied: a check tool, not the host).
//
// # Checksum pinning and the time-of-check gap
//
// When plugins.checksums names a binary, the supervisor copies it into a
// private folder (data_dir/host/plugin-exec-*, mode 0700, removed at Stop;
// the OS temp folder when there is no data_dir) while hashing the bytes it
// copies, compares the hash, and executes the copy. What runs is exactly
// what was hashed, however plugins.dir changes meanwhile; the copy is
// deleted once the process started. The cost is one copy of the binary per
// start (about 20 MB, a few ms); data_dir must be on a file system that
// allows executing files. Unpinned binaries are executed in place;
// their recorded sha256 is informational and could in theory differ from
// what runs if the file is replaced between the scan and the exec (the
// next Rescan notices). The remaining risk for pinned binaries is a
// private folder writable by someone with the host's own uid — who could
// also replace the host.
//
// # Refusals
//
// A plugin that cannot be loaded as it is becomes refused with a last_error
// an operator can act on, and the others carry on: checksum mismatch,
// wrong go-plugin protocol version, stray stdout before the handshake,
// handshake timeout, crash during start (exit status and last stderr
// lines), incompatible SDK version, settings rejected by Configure, limits
// rejected by ApplyLimits (with the key path). Refused plugins are not
// retried automatically; Restart, a changed binary (Rescan) or a changed
// section (Reconfigure, from a config reload) tries again.
//
// # Crashes, backoff and quarantine
//
// A serving plugin that exits on its own is noticed at once, logged,
// marked restarting (Restarts counts these automatic restarts), and
// started again after a backoff of Initial·2^(n-1) capped at Max, with
// ±20% jitter, n being the number of crashes within Window. It gets its
// settings and the current limits (those last applied through
// Manager.ApplyLimits, else the config's) again. Defaults: Initial 200ms,
// Max 30s, QuarantineAfter 5, Window 2m. In a restart after a crash, a
// start that fails for a transient reason (crash during start, handshake
// timeout, no answer) counts as one more crash; a permanent one (checksum,
// protocol, SDK, stdout, rejected settings or limits) makes it refused.
// At QuarantineAfter crashes within Window the plugin is quarantined:
// logged at error, shown in Statuses with the last crash, and left down
// until Restart or a changed binary (Rescan). An exit during Stop,
// Restart or Rescan is not a crash.
//
// # Clients
//
// Client returns the *pluginhost.Client of a serving plugin. It is bound to one
// process: after a restart its calls fail, so ask the Manager again
// rather than keeping it.
//
// # Goroutines
//
// Every goroutine has an owner and an exit: one supervision loop per
// plugin (ends at Stop or when its binary is removed or replaced), one
// waiter per process (ends when the process is reaped and its pipes are
// closed), the spawner (ends after the last loop), go-plugin's own (ended
// by its Kill, which the supervisor always calls and waits for), and one
// goroutine of Stop that waits for the loops. After Stop returns none is
// left.
package supervisor
