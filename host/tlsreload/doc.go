// Package tlsreload serves the API's certificate over TLS and follows its
// files: a new certificate, key or client CA bundle written over the old
// ones is checked and put in service for new connections, without a
// restart; connections already made finish on the pair they were made
// with.
//
// # Serving
//
// The listener's tls.Config has only GetConfigForClient, which returns the
// tls.Config of the state in service, an atomic pointer swapped whole. So
// each handshake sees one consistent pair (certificate, key, client CAs,
// minimum version), and a swap never touches a connection already made.
// The settings are modern defaults: TLS 1.2 or 1.3 (server.tls.min_version,
// "" meaning 1.2), TLS 1.2 limited to ECDHE key exchange with AEAD ciphers
// (AES-GCM, ChaCha20-Poly1305), Go's default curves (X25519MLKEM768,
// X25519, P-256…). With server.tls.client_ca_file the client must present a
// certificate signed by one of those CAs (RequireAndVerifyClientCert), and
// session tickets are off: a resumed session is not checked against the
// pool again, so without tickets a CA removed from the bundle locks its
// clients out at their next connection.
//
// ALPN offers h2 then http/1.1: net/http serves HTTP/2 on the connections
// that choose it (curl and browsers do; the dw CLI speaks HTTP/1.1, which
// moved a 1 GiB file 27% faster than HTTP/2 here; see
// host/tls_bench_test.go). Streaming file bodies work over both: the
// benchmark downloads 1 GiB over each.
//
// # Rotation
//
// The files are read once per check, and what is checked is what is
// served. A change is put in service only when:
//   - the certificate file holds PEM certificates (leaf first) and
//     nothing else, and the key file a private key (PKCS #8, PKCS #1 or
//     SEC 1) that matches the leaf;
//   - the leaf is valid now (NotBefore ≤ now ≤ NotAfter: an expired
//     certificate is never put in service, nor one not yet valid) and, if
//     it has extended key usages, serverAuth is one;
//   - the client CA bundle, when set, holds PEM certificates and nothing
//     else.
//
// Anything else is rejected: the previous pair keeps serving, the error is
// logged at error level with the config key, the file and the reason,
// counted in dw_tls_reloads_total{result="error"}, dw_tls_last_reload_successful
// drops to 0, and Status (GET /v1/config, "tls") shows it until the files
// are good again. The same checks at start make dw serve fail with the key
// at fault (server.tls.cert_file …).
//
// A pair replaced one file after the other (the certificate written, the
// key not yet), or a file briefly missing or empty, is not served and not
// reported at once: it is checked again at the next event or poll, and
// reported as an error only when it is still incomplete PairGrace (2 s)
// after it was first seen.
//
// # Watching
//
// One goroutine (Start; Close stops it, at host shutdown) watches the
// folders of the three files with fsnotify, never the files (an atomic
// save replaces the inode; a Kubernetes secret swaps a ..data link in the
// same folder), plus the folder a file's symbolic link points into. Any
// event in those folders starts a settle window (100 ms, at most 10
// windows for a steady stream); then all files are read and hashed, and
// only a changed content is checked. A watcher error (an overflow
// included) re-creates the watcher and reads the files. A hash poll
// (every 5 s by default) reads the files anyway: network and FUSE file
// systems send no events, and links further up a chain are not watched.
// The files are small, so the poll costs three small reads.
//
// This is not config.Watcher: that one delivers one file's content, and
// the three files here are judged as one unit; any event in the folders
// leads to reading all three, which also covers symbolic-link swaps
// without following chains.
//
// # Config reloads
//
// Prepare and Use let a config reload change the file paths and
// min_version live: Prepare checks the new files (a problem rejects the
// reload, keyed by the config key), Use serves them and moves the watches.
// Turning TLS on or off changes what the listener speaks and needs a
// restart (the host refuses it in a reload).
package tlsreload
