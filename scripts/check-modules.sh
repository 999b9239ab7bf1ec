#!/usr/bin/env bash
# Usage: check-modules.sh MODULE...
# Fails when the repository holds a go.mod (outside testdata folders) whose
# folder is not among the MODULE arguments, or when an argument has no
# go.mod: every Makefile target visits exactly the modules listed, and a
# nested module is invisible to `go test ./...` at the root.
set -euo pipefail
cd "$(dirname "$0")/.."
declare -A listed=()
for m in "$@"; do
	m=${m%/}
	[[ $m == "." ]] || m=${m#./}
	if [[ ! -f $m/go.mod ]]; then
		echo "check-modules: MODULES lists $m, which has no go.mod" >&2
		exit 1
	fi
	listed[$m]=1
done
status=0
while IFS= read -r f; do
	d=$(dirname "$f")
	case "/$d/" in */testdata/*) continue ;; esac
	if [[ -z ${listed[$d]:-} ]]; then
		echo "check-modules: $d/go.mod is a Go module that MODULES in the Makefile leaves out: make build, test and lint would skip it" >&2
		status=1
	fi
done < <(find . -name go.mod -not -path './bin/*' -not -path './.git/*' | sed 's#^\./##')
exit $status
