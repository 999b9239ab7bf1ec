package sqlite

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/datawarehouse/dw/plugins/dbstorage/internal/store"
	"github.com/datawarehouse/dw/plugins/internal/tmpfstest"
	"github.com/datawarehouse/dw/sdk/v6"
)

// volumeMiB is the size of the tmpfs the full-disk tests fill.
const volumeMiB = 64

// waitWAL waits until the WAL of the store at path is at most limit
// bytes (the collector checkpoints in the background).
func waitWAL(tb testing.TB, path string, limit int64) {
	tb.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for fileSize(path+"-wal") > limit {
		if time.Now().After(deadline) {
			tb.Fatalf("the WAL stays at %d bytes (db %d bytes), want at most %d", fileSize(path+"-wal"), fileSize(path), limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// fillVolume stores keep objects of 4 MiB and a filler file of fillerMiB,
// and returns the objects' data by key.
func fillVolume(tb testing.TB, s *Store, dir string, fillerMiB int64) map[string][]byte {
	tb.Helper()
	kept := map[string][]byte{}
	for i := range 4 {
		key := fmt.Sprintf("keep/%d", i)
		kept[key] = pattern(4<<20 + i)
		mustPut(tb, s, key, kept[key])
	}
	tmpfstest.Fill(tb, filepath.Join(dir, "filler"), fillerMiB<<20)
	return kept
}

func checkKept(tb testing.TB, s *Store, kept map[string][]byte) {
	tb.Helper()
	for key, want := range kept {
		got, err := readRange(tb, s, key, 0, -1)
		if err != nil || !bytes.Equal(got, want) {
			tb.Fatalf("read %s after the full disk: %d bytes, %v; want %d bytes", key, len(got), err, len(want))
		}
	}
}

// TestFullVolumeCostsTheFailedWriteOnly: on a 64 MiB volume, an upload of
// unknown size larger than the free space fails with a clear error;
// then the WAL goes back to zero, small writes succeed, the earlier
// objects read whole, an announced size that cannot fit is refused before
// anything is written, and a reopen on the still-tight volume reads and
// writes.
func TestFullVolumeCostsTheFailedWriteOnly(t *testing.T) {
	dir := tmpfstest.Mount(t, volumeMiB)
	path := filepath.Join(dir, "db", "objects.sqlite")
	s := openAt(t, path, store.DefaultChunkSize)
	kept := fillVolume(t, s, dir, 16)
	ctx := context.Background()

	_, err := s.Put(ctx, store.PutRequest{Key: "big", Size: -1}, io.LimitReader(zeros{}, 100<<20))
	if !errors.Is(err, sdk.ErrUnavailable) || !strings.Contains(err.Error(), "volume of "+filepath.Dir(path)) || !strings.Contains(err.Error(), "bytes free") {
		t.Fatalf("PUT of 100 MiB on a %d MiB volume: %v; want ErrUnavailable saying the volume is full", volumeMiB, err)
	}
	t.Logf("refused: %v", err)
	if sp, err := s.Space(ctx); err != nil || sp.WritesFailing == "" {
		t.Fatalf("Space after the refusal: %+v, %v; want WritesFailing", sp, err)
	}
	if err := s.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	waitWAL(t, path, 0)
	mustPut(t, s, "small", []byte("after the full disk"))
	if sp, err := s.Space(ctx); err != nil || sp.WritesFailing != "" || sp.FreeBytes <= 0 {
		t.Fatalf("Space after a Put succeeded: %+v, %v", sp, err)
	}
	checkKept(t, s, kept)

	rows, _ := s.ChunkRows(ctx)
	_, err = s.Put(ctx, store.PutRequest{Key: "announced", Size: 100 << 20}, io.LimitReader(zeros{}, 100<<20))
	if !errors.Is(err, sdk.ErrUnavailable) || !strings.Contains(err.Error(), "write of 104857600 bytes") {
		t.Fatalf("PUT announcing 100 MiB: %v; want a refusal naming the size", err)
	}
	if after, _ := s.ChunkRows(ctx); after != rows {
		t.Fatalf("the refused announced PUT wrote %d chunks", after-rows)
	}

	closeStore(t, s)
	s = openAt(t, path, store.DefaultChunkSize)
	defer closeStore(t, s)
	checkKept(t, s, kept)
	mustPut(t, s, "after/reopen", pattern(3<<20))
	waitWAL(t, path, walCap)
}

// zeros reads zero bytes forever.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// TestSQLiteFullRecovers: with the Store's own check off, SQLite itself
// runs into ENOSPC. The write fails with ErrUnavailable, reads go on, a
// reopen on the full volume reads (writing nothing at open), and once
// space is freed the collector's retried checkpoint brings the WAL back
// to zero and writes work again.
func TestSQLiteFullRecovers(t *testing.T) {
	dir := tmpfstest.Mount(t, volumeMiB)
	path := filepath.Join(dir, "db", "objects.sqlite")
	s := openAt(t, path, store.DefaultChunkSize)
	s.noSpaceCheck = true
	kept := fillVolume(t, s, dir, 16)
	ctx := context.Background()

	_, err := s.Put(ctx, store.PutRequest{Key: "big", Size: -1}, io.LimitReader(zeros{}, 100<<20))
	if !errors.Is(err, sdk.ErrUnavailable) || !isFull(err) {
		t.Fatalf("PUT of 100 MiB on a %d MiB volume: %v; want ErrUnavailable with SQLITE_FULL", volumeMiB, err)
	}
	t.Logf("failed: %v; wal %d bytes, db %d bytes", err, fileSize(path+"-wal"), fileSize(path))
	checkKept(t, s, kept)
	if sp, err := s.Space(ctx); err != nil || sp.WritesFailing == "" {
		t.Fatalf("Space: %+v, %v; want WritesFailing", sp, err)
	}
	closeStore(t, s)

	// Reopen on the volume still full: reads work.
	s = openAt(t, path, store.DefaultChunkSize)
	defer closeStore(t, s)
	checkKept(t, s, kept)
	t.Logf("reopened full: wal %d bytes, db %d bytes", fileSize(path+"-wal"), fileSize(path))

	if err := os.Remove(filepath.Join(dir, "filler")); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	s.gc.wantCheckpoint()
	waitWAL(t, path, 0)
	mustPut(t, s, "small", []byte("after space was freed"))
	checkKept(t, s, kept)
}
