package sqlite

import (
	"errors"
	"fmt"
	"os"

	"github.com/datawarehouse/dw/internal/flock"
)

// lockFile takes the database's exclusive lock (package flock), so that
// only one process uses the database at a time.
func lockFile(path string) (*os.File, error) {
	f, err := flock.Lock(path)
	if errors.Is(err, flock.ErrHeld) {
		return nil, fmt.Errorf("database is in use by another process (%w)", err)
	}
	return f, err
}
