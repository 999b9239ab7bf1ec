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

fail() {
	if [ "${CI:-}" = "true" ]; then
		echo "ensure-postgres: $*" >&2
		exit 1
	fi
	echo "ensure-postgres: $* — PostgreSQL tests will skip (install with: apt-get install postgresql-15)" >&2
	exit 0
}

command -v apt-get >/dev/null 2>&1 || fail "PostgreSQL is not installed and apt-get is not available"
if [ "$(id -u)" -ne 0 ]; then
	if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
		SUDO=sudo
	else
		fail "PostgreSQL is not installed and installing it needs root"
	fi
else
	SUDO=
fi

echo "ensure-postgres: installing postgresql-15 (no cluster is created or started)" >&2
# Tell postgresql-common not to create (and start) the main cluster.
$SUDO mkdir -p /etc/postgresql-common
echo "create_main_cluster = false" | $SUDO tee /etc/postgresql-common/createcluster.conf >/dev/null
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q >/dev/null || fail "apt-get update failed"
$SUDO apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confold postgresql-15 >/dev/null ||
	fail "apt-get install postgresql-15 failed"
have || fail "postgresql-15 installed but initdb was not found"
