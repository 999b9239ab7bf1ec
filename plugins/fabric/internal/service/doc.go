// Package service is the fabric subsystem: it turns the host's settings and
// live limits into a fabric node (package node), serves dw.sdk.v1.Fabric
// and reports metrics and health.
//
// Decisions where DESIGN.md is silent:
//
//   - Node id. A node's memberlist name is "<hostname>-<8 hex digits>",
//     made once and kept in the host KV (key "node-id"), so that a
//     restarted node rejoins under the same id. Without a KV (tests) each
//     start makes a new one.
//   - Start. The node binds and starts joining at the first ApplyLimits,
//     which the SDK runs right after Configure with the configured limits
//     (they come with the Configure request), so that it never runs on
//     other limits. Unreachable seeds do not
//     fail the start: the node runs alone and keeps trying (see node).
//   - Gossip key. encrypt_key_env names an environment variable holding a
//     standard base64 key of 16, 24 or 32 bytes (AES-128/192/256). A named
//     variable that is unset or malformed fails Configure; no name means
//     unencrypted gossip, reported as a degraded "gossip_encryption"
//     health component (and degraded overall when bind is not loopback).
//   - API address. Node metadata carries the host's API address as the host
//     bound it (sdk.Config.HostAPIAddress).
//   - Backpressure. elevated from switching.up_at × max_nodes of the
//     topology in force, saturated at max_nodes (joins are refused).
package service
