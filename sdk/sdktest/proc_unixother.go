//go:build unix && !linux

package sdktest

import "syscall"

// groupMembers reports whether process group pgid has members: [-1] when it
// has (they cannot be listed portably), nil otherwise.
func groupMembers(pgid int) []int {
	if syscall.Kill(-pgid, 0) == nil {
		return []int{-1}
	}
	return nil
}
