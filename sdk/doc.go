// Package sdk is the dw plugin SDK: the only package a plugin author imports.
//
// A dw plugin is a separate executable named dw-plugin-<subsystem> that the
// dw host starts, talks to over gRPC (hashicorp/go-plugin, AutoMTLS), and
// supervises. A plugin implements [Subsystem] for its limits struct and calls
// [Serve] from main:
//
//	type Limits struct {
//		MaxEntries int      `dw:"max_entries" min:"1"`
//		MaxBytes   sdk.Size `dw:"max_bytes" min:"1KiB"`
//	}
//
//	func main() { sdk.Serve[Limits](cache.New()) }
//
// The lifecycle a plugin goes through is documented once, on [Subsystem].
//
// Limits are a Go struct with defaults (DefaultLimits) and rules in struct
// tags (min, max, enum) or a Validate method; the SDK decodes what the host
// sends onto the defaults with [Decode] and rejects unknown keys, wrong
// types and out-of-range values with the key path, so the plugin's
// ApplyLimits only ever sees valid limits.
//
// Settings (the other keys of the plugin's config section, handed to
// Configure) follow the same rules through [Config.DecodeSettings]. A
// plugin that implements [SettingsDeclarer] (DefaultSettings) declares
// them, so that the host can check them before starting it.
//
// The schema: from the limits and settings structs the SDK derives a
// description of every key — type, default, bounds, enum, whether a change
// applies live (limits) or restarts the plugin (settings), and a one-line
// doc from a `doc:"..."` tag (field comments are not in a compiled binary,
// so write the doc tag) — and GetInfo sends it. The host uses it for
// `dw config validate` (checks a config file offline), `dw config schema`
// (a JSON Schema for editors) and `dw plugin docs` (a Markdown reference).
//
// Errors cross the connection as gRPC statuses, translated at the boundary
// by gRPC interceptors that [Serve] installs, not by the plugin: a handler,
// of the contract or of the plugin's own services, returns the sentinels of
// this package wrapped as it likes ("stat %q: %w", ErrNotFound), and the
// host sees them with errors.Is (an HTTP status: 404 for ErrNotFound).
// [WithRetryAfter] adds a retry hint that becomes an HTTP Retry-After, and
// the key paths of a [*DecodeError] (refused limits or settings) reach the
// host as structured field problems. [ToStatus] and [FromStatus] are the
// two conversions; the interceptors apply them on both sides, so a plugin
// need not call them (one written for sdk 6.0 that does still works). The
// same interceptors recover a panic in any handler: the call fails with
// [ErrPanicked] ("panicked in Put: <value> (store/grpc.go:42)", HTTP 500),
// the stack goes to the plugin's log, and the plugin keeps serving. Until
// Configure has succeeded, the plugin's own services answer
// [ErrUnavailable] without being called, so they need no "configured
// yet?" guard.
//
// Module and compatibility: this package is github.com/datawarehouse/dw/sdk/v6
// (go get github.com/datawarehouse/dw/sdk/v6@v6.1.0); the module's version
// is the contract's, [Version]. A plugin reports the SDK version it was
// built with, and a host accepts it when the majors are equal and the
// plugin's minor is not newer than the host's; a plugin built with sdk
// 6.0 loads on a 6.1 host. The go-plugin protocol version is negotiated
// separately in the handshake. See the module's README.md for what 6.1
// changed.
//
// A plugin served by Serve exits promptly when its host dies, even by
// kill -9: see watchHost in orphan_linux.go.
package sdk
