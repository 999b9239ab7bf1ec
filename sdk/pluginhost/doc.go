// Package pluginhost is the host's side of the dw plugin contract: what a
// program that starts and drives dw plugins needs (the dw host, the
// sdk/sdktest conformance harness, dw plugin check). Plugin authors never
// import it; they use package sdk alone.
//
// It holds the go-plugin wiring ([Handshake], [VersionedPlugins],
// [DialOptions]), the [Client] that calls a plugin's ScalableSubsystem in Go
// types, the host key-value service offered to plugins ([RegisterHostKV],
// on a server made with [ServerOptions]), the compatibility rule between
// host and plugin SDK versions ([Compatible]), the caller identity passed
// to plugins ([WithCaller]), and the [Schema] a plugin reports of its
// limits and settings with what tools make of it: offline checks
// ([Schema.CheckLimits], [Schema.CheckSettings]), a JSON Schema for editors
// ([Schema.JSONSchema]) and a Markdown reference ([Schema.Markdown]).
//
// Errors are translated at the boundary, by gRPC interceptors: those of
// [DialOptions] pass every error of a call on a plugin connection (the
// Client's, and any domain service called on [Client.Conn]) through
// sdk.FromStatus, so the host matches them with errors.Is against the sdk
// sentinels and finds refused key paths with errors.As(err,
// &*sdk.DecodeError); no call site converts by hand. Those of
// [ServerOptions] do the reverse for the services the host serves to
// plugins, and recover their panics. A plugin's own panics arrive as
// sdk.ErrPanicked.
//
// The client speaks both wire encodings of limits: sdk 6.1's exact JSON
// objects, and sdk 6.0's google.protobuf.Struct (every number a double) to
// plugins that report an sdk 6.0.x version, to which it also sends the
// starting limits in a first ApplyLimits after Configure, as a 6.0 host did.
package pluginhost
