#!/usr/bin/env bash
# Makes sure PostgreSQL server binaries (initdb, postgres) are installed, for
# the dbstorage tests that start throwaway servers (internal/pgtest). They
# never use a system cluster: this script installs the Debian package without
# creating or starting one.
#
# Under CI=true a failure is an error (the tests must run there); elsewhere it
# prints how to install and succeeds, and those tests skip with the same hint.
set -euo pipefail

have() {
	if [ -n "${DW_PG_BINDIR:-}" ] && [ -x "$DW_PG_BINDIR/initdb" ]; then return 0; fi
	compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null && return 0
	command -v initdb >/dev/null 2>&1
}

if have; then
	exit 0
fi

ENSURE_NAME=ensure-postgres
ENSURE_SKIP="PostgreSQL tests will skip (install with: apt-get install postgresql-15)"
# shellcheck source=ensure-lib.sh
. "${BASH_SOURCE[0]%/*}/ensure-lib.sh"
need_apt PostgreSQL

echo "ensure-postgres: installing postgresql-15 (no cluster is created or started)" >&2
# Tell postgresql-common not to create (and start) the main cluster.
$SUDO mkdir -p /etc/postgresql-common
echo "create_main_cluster = false" | $SUDO tee /etc/postgresql-common/createcluster.conf >/dev/null
apt_install postgresql-15
have || fail "postgresql-15 installed but initdb was not found"
