package repo

import (
	"errors"
	"fmt"
	"os"

	"github.com/datawarehouse/dw/internal/flock"
)

// lockRepo takes the repository's exclusive lock (package flock), so that
// one process at a time uses the repository; a second Open in the same
// process conflicts too.
func lockRepo(path string) (*os.File, error) {
	f, err := flock.Lock(path)
	if errors.Is(err, flock.ErrHeld) {
		return nil, fmt.Errorf("repository is in use by another process or another Open (%v); close it first: %w", err, ErrLocked)
	}
	return f, err
}
