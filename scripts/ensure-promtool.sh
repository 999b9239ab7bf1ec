#!/usr/bin/env bash
# Makes sure promtool is installed, for the test that lints the host's
# GET /metrics with `promtool check metrics` (host/metrics_e2e_test.go).
# Debian ships it in the prometheus package; this script installs that
# package without starting the Prometheus server it also contains.
#
# Under CI=true a failure is an error (the test must run there); elsewhere it
# prints how to install and succeeds, and the test skips with the same hint.
set -euo pipefail

have() {
	if [ -n "${DW_PROMTOOL:-}" ] && [ -x "$DW_PROMTOOL" ]; then return 0; fi
	command -v promtool >/dev/null 2>&1
}

if have; then
	exit 0
fi

ENSURE_NAME=ensure-promtool
ENSURE_SKIP="the promtool check will skip (install with: apt-get install prometheus)"
# shellcheck source=ensure-lib.sh
. "${BASH_SOURCE[0]%/*}/ensure-lib.sh"
need_apt promtool

# The package's maintainer scripts would start the Prometheus server: a
# policy-rc.d that answers 101 ("action forbidden") stops them, as in
# container images. An existing policy is left alone; ours is removed.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\n# ensure-promtool.sh: no service starts during its install.\nexit 101\n' | $SUDO tee "$policy" >/dev/null
	$SUDO chmod 755 "$policy"
	trap '$SUDO rm -f "$policy"' EXIT
fi

echo "ensure-promtool: installing prometheus for promtool (the server is not started)" >&2
apt_install prometheus
have || fail "prometheus installed but promtool was not found"
