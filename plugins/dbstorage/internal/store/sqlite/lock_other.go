//go:build !unix

package sqlite

import (
	"fmt"
	"os"
)

// lockFile opens path; without flock the database is not guarded against a
// second process.
func lockFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	return f, nil
}
