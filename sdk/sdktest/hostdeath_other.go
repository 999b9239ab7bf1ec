//go:build !linux

package sdktest

import "runtime"

// hostDeath needs /proc to tell a live process from one that exited; it is
// skipped elsewhere.
func (r *run) hostDeath() outcome {
	return skip("checked on Linux only (needs /proc); this is %s", runtime.GOOS)
}
