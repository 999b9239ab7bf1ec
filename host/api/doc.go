// Package api is the dw host's admin HTTP API: health and readiness probes,
// Prometheus metrics (the host's and every plugin's), the plugin list and
// restarts, each subsystem's limits, metrics and health, and a JSON gateway
// to the plugins' domain gRPC methods (see package rpcgateway).
//
// The package serves an http.Handler; the caller runs the http.Server, its
// listener and its shutdown. It consumes the plugin manager through the
// small [Plugins] interface.
//
// Conventions every endpoint follows:
//
//   - Responses are JSON; errors are {"error":{"code":"...","message":"..."}}
//     with a status chosen in one place, [WriteError], from the sdk sentinel
//     errors (sdk.ErrNotFound → 404 not_found, sdk.ErrBackpressure → 429
//     backpressure with Retry-After, a plugin that is down → 503, …).
//   - With tokens configured, every endpoint except GET /healthz and
//     GET /readyz needs "Authorization: Bearer <token>"; the token's name is
//     the caller identity ([Caller]) and is passed to plugins as the gRPC
//     metadata dw-caller. Each route is registered with the [Scope] it
//     needs (public, read, write, admin) and the subsystem it touches; a
//     token whose policy does not reach the scope, or that is limited to
//     other subsystems, gets 403 forbidden naming the token, its policy
//     and what is missing ([Server.Routes] lists the table; scope.go
//     documents it). Tokens are at least config.MinTokenBytes long.
//   - Answers of the auth layer (401, 403, 429) carry "Connection: close"
//     and never wait for an unread request body (see Server.refuse).
//     Wrong tokens from one address are slowed down (failtable.go).
//   - Mutating and refused requests are written to the audit log
//     (audit.go); an admin request whose audit line cannot be written
//     is refused with 500 audit_failed.
//   - GET /readyz without a token answers only {"status":"ready"} or 503
//     {"status":"not_ready"}; a valid token (or no tokens configured)
//     gets the plugins that are not ready, their states and errors.
//   - {name} path values must match ^[a-z][a-z0-9_-]{0,62}$.
//   - Unknown paths answer 404 and known paths with the wrong method 405
//     with Allow, both as JSON errors.
//   - Every request is measured in dw_http_request_duration_seconds by
//     route pattern and status code.
//
// Object routes (objects.go): PUT, GET, HEAD and DELETE /v1/objects/{key...}
// and GET /v1/objects speak dw.sdk.v1.ObjectStore to the plugin of the
// dbstorage subsystem, streaming bodies both ways in 1 MiB messages. Object
// keys are taken from the escaped path and decoded by the handler, so that
// keys such as "a//b" or "x/../y" reach the store unchanged: these routes
// bypass http.ServeMux's path cleaning (and its redirects), and only they
// and the file routes do. A plugin error after the response headers are
// out aborts the connection, so that a client never takes a short body for
// a whole one.
//
// File routes (files.go): PUT, GET, HEAD and DELETE /v1/files/{path...}
// and the folder listings GET /v1/files/ and /v1/files/{dir}/ speak
// dw.sdk.v1.FileStore to the plugin of the filesystem subsystem, with the
// X-DW-Priority of the request. Paths are decoded once from the escaped
// path and must pass sdk.ValidateFilePath before any plugin call: a name
// that climbs out of the root is a logged 400, never cleaned into another
// path. They share the object routes' streaming, Range and conditional
// request code (serveDownload, sendBody).
//
// More routes (the config endpoints) are added with [Server.Handle], with
// their scope, and get the same authentication, scope check, audit,
// metrics, logging and panic recovery.
package api
