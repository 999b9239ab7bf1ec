# Shared by the scripts/ensure-*.sh installers of test dependencies; source
# it after setting ENSURE_NAME (the script's name, for messages) and
# ENSURE_SKIP (what happens without the dependency, e.g. "the PostgreSQL
# tests will skip (install with: apt-get install postgresql-15)").
#
# fail MESSAGE: under CI=true an error (the tests must run there); elsewhere
# the message with ENSURE_SKIP, and success.
fail() {
	if [ "${CI:-}" = "true" ]; then
		echo "$ENSURE_NAME: $*" >&2
		exit 1
	fi
	echo "$ENSURE_NAME: $* — $ENSURE_SKIP" >&2
	exit 0
}

# need_apt WHAT: makes sure apt-get can run, as root or through sudo
# without a password, and sets SUDO accordingly.
need_apt() {
	command -v apt-get >/dev/null 2>&1 || fail "$1 is not installed and apt-get is not available"
	if [ "$(id -u)" -ne 0 ]; then
		if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
			SUDO=sudo
		else
			fail "$1 is not installed and installing it needs root"
		fi
	else
		SUDO=
	fi
}

# apt_install PACKAGE...: installs Debian packages quietly, keeping
# existing config files.
apt_install() {
	export DEBIAN_FRONTEND=noninteractive
	$SUDO apt-get update -q >/dev/null || fail "apt-get update failed"
	$SUDO apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confold "$@" >/dev/null ||
		fail "apt-get install $* failed"
}
