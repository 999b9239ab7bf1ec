// Package pgtest starts real, throwaway PostgreSQL servers for tests.
//
// A server is a `postgres` child process of the test binary on a fresh
// cluster (initdb) in its own temporary folder, listening on 127.0.0.1 and a
// free port, with its unix socket inside that folder. It is stopped (SIGINT,
// PostgreSQL's fast shutdown, then SIGKILL after a bound) and its folder
// removed when the test ends.
//
// Use Start for a server of one test:
//
//	srv := pgtest.Start(t)
//	dsn := srv.CreateDatabase(t, "") // a fresh database
//
// or share one server per test binary, started on first use and stopped
// after all tests by TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
//
//	func TestX(t *testing.T) { dsn := pgtest.Shared(t).CreateDatabase(t, "") }
//
// With go.uber.org/goleak: goleak.VerifyTestMain(pgtest.TestingM(m)).
//
// Design decisions:
//
//   - Binaries: the folder in DW_PG_BINDIR, else the newest
//     /usr/lib/postgresql/<version>/bin holding initdb and postgres (Debian
//     keeps them outside PATH), else initdb and postgres on PATH. If none is
//     found the test is skipped with a message saying how to enable it
//     (`apt-get install postgresql-15`, or DW_PG_BINDIR) — unless CI=true,
//     where the test fails, because CI must run these tests. A DW_PG_BINDIR
//     that does not hold the binaries always fails the test.
//   - PostgreSQL refuses to run as root. When the test binary runs as root,
//     initdb and postgres run as the `postgres` system user that Debian's
//     package creates (SysProcAttr.Credential), on a folder that user owns
//     (made with os.MkdirTemp: t.TempDir() lives under root-only folders).
//     Otherwise they run as the current user.
//   - No orphans: postgres is started directly (not daemonized by pg_ctl)
//     with SysProcAttr.Pdeathsig = SIGKILL, so it dies with the test binary
//     however that ends (a panic, a -timeout, kill -9); its backends notice
//     the postmaster's death and exit too. The shared server is stopped by
//     Main after m.Run; Shared refuses to start one without Main. A test
//     binary killed before its cleanup leaves its folder behind; the next
//     Start removes such folders (their server gone) from the temp folder.
//   - Settings are PostgreSQL's defaults (benchmarks measure those);
//     WithFastSettings turns durability off for tests that want speed.
//   - The cluster's superuser is `postgres` with trust authentication on
//     127.0.0.1 only; DSNs disable TLS.
package pgtest
