//go:build unix

// Package flock takes exclusive advisory locks on files, so that one
// process at a time uses a database or a repository. The lock belongs to
// the open file: it goes with the process however the process ends, and a
// second Lock of the same file, in this process or another, fails at once
// with ErrHeld.
package flock

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// ErrHeld is returned when another open file holds the lock.
var ErrHeld = errors.New("lock is held")

// Lock opens (creating) path and takes an exclusive, non-blocking flock on
// it. Closing the returned file releases the lock.
func Lock(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("lock %s: %w", path, ErrHeld)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return f, nil
}
