// Package moduletest proves, with the real go command, that the SDK is a
// Go module a third party can use on its own:
//
//   - a plugin written in an empty folder outside the repository, whose
//     go.mod has no replace directive, gets
//     github.com/datawarehouse/dw/sdk/v6 through a module proxy (a local
//     file-system proxy holding the repository's sdk/ folder as the version
//     the host requires, v6.1.0, in place of a released sdk/v6.1.0 tag),
//     builds, and passes `dw plugin check`;
//   - that plugin is the Go code of the README's "Writing a plugin" section,
//     read from README.md, so the README cannot drift from what works;
//   - neither that plugin's module graph nor examples/kvcache's holds the
//     host's libraries (pgx, sqlite, memberlist, cobra, bbolt, koanf,
//     prometheus): depending on the SDK costs a plugin author go-plugin,
//     grpc, protobuf and hclog, nothing more;
//   - the SDK module and examples/kvcache build and vet with the oldest Go
//     their go lines allow (go 1.24.0), fetched as a toolchain by the go
//     command.
//
// The package holds tests only. They need the go command and the module
// proxy of `go env GOPROXY` (or a module cache that already holds the
// SDK's dependencies); they fail, never skip, when either is missing. The
// old-toolchain test is skipped under -short.
package moduletest
