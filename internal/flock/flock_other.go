//go:build !unix

package flock

import (
	"errors"
	"fmt"
	"os"
)

// ErrHeld is returned when another open file holds the lock.
var ErrHeld = errors.New("lock is held")

// Lock opens path; without flock nothing is guarded against a second
// process.
func Lock(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	return f, nil
}
