//go:build unix

package flock

import (
	"errors"
	"path/filepath"
	"testing"
)

func TestLockIsExclusive(t *testing.T) {
	p := filepath.Join(t.TempDir(), "lock")
	f, err := Lock(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Lock(p); !errors.Is(err, ErrHeld) {
		t.Fatalf("second Lock: %v, want ErrHeld", err)
	}
	f.Close()
	g, err := Lock(p)
	if err != nil {
		t.Fatalf("Lock after release: %v", err)
	}
	g.Close()
	if _, err := Lock(filepath.Join(t.TempDir(), "missing", "lock")); err == nil {
		t.Fatal("Lock in a missing folder succeeded")
	}
}
