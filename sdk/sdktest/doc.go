// Package sdktest is the conformance harness for dw plugins: it starts a
// plugin binary the way the dw host does and checks that it keeps the
// contract of the SDK — the same suite dw's own plugins pass.
//
// Run it from a test of your plugin, after building the binary:
//
//	func TestConformance(t *testing.T) {
//		bin := filepath.Join(t.TempDir(), "dw-plugin-foo")
//		if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
//			t.Fatalf("build: %v\n%s", err, out)
//		}
//		sdktest.Run(t, bin, sdktest.Options{
//			Settings:      map[string]any{"root": "files"},
//			ValidLimits:   []map[string]any{{}, {"max_entries": 5}},
//			InvalidLimits: []map[string]any{{"max_entries": 0}},
//		})
//	}
//
// Every check becomes a subtest (TestConformance/handshake, …), so a failure
// names the broken part of the contract. Or check a built binary from the
// command line, which prints the same report:
//
//	dw plugin check ./bin/dw-plugin-foo
//
// [Check] is what both use: it returns a [Report] that [Report.WriteText]
// prints, one line per check.
//
// For fast unit tests of a plugin's own gRPC services, without building a
// binary, [ServeInProcess] serves them in the test's process behind the
// same interceptors as sdk.Serve (errors become statuses, panics are
// recovered) and connects with the host's dial options, so the test sees
// what the host sees: errors.Is(err, sdk.ErrNotFound) on a call's error.
//
// # The checks
//
// In order, on one plugin process (and a second one for the last check):
//
//   - handshake: the go-plugin handshake succeeds (AutoMTLS, within
//     StartTimeout) and negotiates pluginhost.ProtocolVersion. Anything the plugin
//     prints to stdout before the handshake is reported as such.
//   - get_info: name, version and sdk_version are set, and the sdk_version
//     is one this SDK's host accepts (pluginhost.Compatible). A name that does not
//     match the binary's dw-plugin-<name> is a warning.
//   - configure: Configure with Options.Settings, a fresh temporary data
//     folder and an in-memory host key-value store succeeds, and the limits
//     in force afterwards are the defaults GetInfo reports.
//   - validate_limits: every valid candidate is accepted; every invalid one
//     — an unknown key, a value of the wrong type for each default key, the
//     edges of every limit of the plugin's schema (below its min, above its
//     max or past the range of its integer type, outside its enum, a wrong
//     type; keys of maps probed with a made-up key, keys inside lists not
//     probed), and Options.InvalidLimits — is rejected with
//     sdk.ErrInvalidLimits and an error naming the key path (limits.<key>);
//     and validating changes nothing. An accepted one is reported with the
//     limit and the value ("accepted invalid limits limits.rate = 0 (below
//     its minimum 1)"), so the checks need no hand-written InvalidLimits for
//     the rules the struct tags state.
//   - apply_limits: applying each valid candidate twice gives the same
//     result both times and the result ValidateLimits announced; GetLimits
//     then echoes it with its generation; invalid candidates are refused
//     and leave the limits in force unchanged.
//   - metrics: GetMetrics answers with a known backpressure state; metric
//     names and label names are snake_case; no name and label set appears
//     twice; a name is always of one kind (gauge, counter or histogram);
//     counters are not negative and do not go down; a histogram's buckets
//     are consistent (finite ascending bounds, cumulative counts, at most
//     64), its count does not go down, and no other metric is named as one
//     of its series (x_bucket, x_sum, x_count).
//   - health: CheckHealth answers with a known status, for the plugin and
//     for each (named, unique) component.
//   - shutdown: go-plugin's Kill returns and the process has exited by
//     itself, with status 0, within ShutdownWithin, leaving no process of
//     its process group behind.
//   - host_death: the plugin is started under an intermediate parent that is
//     then killed with SIGKILL, as if the host crashed; the plugin must be
//     gone within OrphanWithin (Linux only; skipped elsewhere).
//
// A panic in a method or handler is recovered by sdk.Serve and fails only
// that call, which the check reports as it reads ("panicked in ApplyLimits:
// <value> (main.go:42)"); the plugin keeps serving the next checks. A
// plugin process that dies during a check (a panic in a goroutine of its
// own, an os.Exit) is reported as a crash with the panic's first line and
// the plugin's source line that raised it, read from its stderr, and the
// later checks of that process are skipped rather than failed with the
// connection errors the crash causes.
//
// Checks run even when an earlier one failed, as far as they can; those
// that cannot are skipped with the reason.
//
// [Start] launches a plugin for a test of its own domain services, and
// [MemKV] is an in-memory sdk.KV for unit tests of Configure.
package sdktest
