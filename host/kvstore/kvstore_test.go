package kvstore

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	bolt "go.etcd.io/bbolt"
	"go.uber.org/goleak"

	"github.com/datawarehouse/dw/sdk/v6"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func openTemp(t testing.TB) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "host", "kv.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, path
}

func keys(t *testing.T, kv sdk.KV, prefix string) []string {
	t.Helper()
	var out []string
	if err := kv.List(context.Background(), prefix, func(k string, _ []byte) error {
		out = append(out, k)
		return nil
	}); err != nil {
		t.Fatalf("list %q: %v", prefix, err)
	}
	return out
}

// bulkLoad writes n keys made with format into plugin's space in one
// transaction (Put's own durability is tested elsewhere; one fsync per key
// would make these tests slow).
func bulkLoad(t *testing.T, s *Store, plugin, format string, n int) {
	t.Helper()
	err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.Bucket(pluginsBucket).CreateBucketIfNotExists([]byte(plugin))
		if err != nil {
			return err
		}
		for i := range n {
			if err := b.Put(fmt.Appendf(nil, format, i), fmt.Append(nil, i)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func mustPut(t *testing.T, kv sdk.KV, k, v string) {
	t.Helper()
	if err := kv.Put(context.Background(), k, []byte(v)); err != nil {
		t.Fatalf("put %q: %v", k, err)
	}
}

func TestPutGetDelete(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	kv := s.ForPlugin("dataprotection")
	if _, err := kv.Get(ctx, "missing"); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("get missing from a plugin with no keys: %v, want ErrNotFound", err)
	}
	mustPut(t, kv, "dw://internal/backup/job-1", "running")
	got, err := kv.Get(ctx, "dw://internal/backup/job-1")
	if err != nil || string(got) != "running" {
		t.Fatalf("get = %q, %v", got, err)
	}
	if _, err := kv.Get(ctx, "dw://internal/backup/job-"); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("get of a prefix of a key: %v, want ErrNotFound", err)
	}
	// Empty values are values.
	if err := kv.Put(ctx, "empty", nil); err != nil {
		t.Fatal(err)
	}
	got, err = kv.Get(ctx, "empty")
	if err != nil || got == nil || len(got) != 0 {
		t.Fatalf("get empty = %#v, %v; want a non-nil empty value", got, err)
	}
	// The value returned is a copy.
	got, _ = kv.Get(ctx, "dw://internal/backup/job-1")
	got[0] = 'X'
	again, _ := kv.Get(ctx, "dw://internal/backup/job-1")
	if string(again) != "running" {
		t.Fatalf("mutating a returned value changed the store: %q", again)
	}
	mustPut(t, kv, "dw://internal/backup/job-1", "done")
	if got, _ := kv.Get(ctx, "dw://internal/backup/job-1"); string(got) != "done" {
		t.Fatalf("overwrite: %q", got)
	}
	if err := kv.Delete(ctx, "dw://internal/backup/job-1"); err != nil {
		t.Fatal(err)
	}
	if err := kv.Delete(ctx, "dw://internal/backup/job-1"); err != nil {
		t.Fatalf("deleting a missing key: %v", err)
	}
	if err := s.ForPlugin("nobody").Delete(ctx, "x"); err != nil {
		t.Fatalf("deleting from a plugin with no bucket: %v", err)
	}
	if _, err := kv.Get(ctx, "dw://internal/backup/job-1"); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("get after delete: %v", err)
	}
}

func TestNamespacing(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	a, b := s.ForPlugin("a"), s.ForPlugin("b")
	ab := s.ForPlugin("ab")
	mustPut(t, b, "dw://internal/backup/x", "b's secret")
	mustPut(t, b, "secret", "b")
	mustPut(t, b, "../a/secret", "b")
	mustPut(t, ab, "k", "ab")
	mustPut(t, a, "own", "a")

	for _, k := range []string{"dw://internal/backup/x", "secret", "b/secret", "plugins/b/secret", "../b/secret", "/b/secret", "k", "b\x01secret"} {
		if _, err := a.Get(ctx, k); !errors.Is(err, sdk.ErrNotFound) {
			t.Errorf("plugin a reads %q: %v, want ErrNotFound", k, err)
		}
	}
	for _, p := range []string{"", "dw://", "dw://internal/backup/", "s", "b", "../", "k"} {
		got := keys(t, a, p)
		if p == "" || p == "o" {
			if !slices.Equal(got, []string{"own"}) {
				t.Errorf("plugin a lists %q: %v, want only its own key", p, got)
			}
			continue
		}
		if len(got) != 0 {
			t.Errorf("plugin a lists %q: %v, want nothing", p, got)
		}
	}
	// Deleting b's key names through a is a no-op on b.
	for _, k := range []string{"dw://internal/backup/x", "secret", "../a/secret"} {
		if err := a.Delete(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	if got := keys(t, b, ""); !slices.Equal(got, []string{"../a/secret", "dw://internal/backup/x", "secret"}) {
		t.Fatalf("b's keys after a's deletes: %v", got)
	}
	// "a" is a prefix of "ab": bucket names do not nest.
	if got := keys(t, ab, ""); !slices.Equal(got, []string{"k"}) {
		t.Fatalf("ab's keys: %v", got)
	}
	// Prefix listing within one space.
	mustPut(t, b, "dw://internal/backup/y", "2")
	mustPut(t, b, "dw://internal/backupz", "3")
	if got := keys(t, b, "dw://internal/backup/"); !slices.Equal(got, []string{"dw://internal/backup/x", "dw://internal/backup/y"}) {
		t.Fatalf("prefix list: %v", got)
	}
}

func TestBadPluginNames(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	for _, name := range []string{"", "A", "1abc", "a/b", "../b", "plugins", "a b", strings.Repeat("a", 64), "a\x00"} {
		if name == "plugins" {
			continue // a valid name: buckets are nested under the top bucket, so no clash
		}
		kv := s.ForPlugin(name)
		err := kv.Put(ctx, "k", []byte("v"))
		if !errors.Is(err, sdk.ErrInvalidArgument) || !strings.Contains(err.Error(), "plugin name") {
			t.Errorf("put through plugin %q: %v, want an invalid plugin name error", name, err)
		}
		if _, err := kv.Get(ctx, "k"); !errors.Is(err, sdk.ErrInvalidArgument) {
			t.Errorf("get through plugin %q: %v", name, err)
		}
		if err := kv.List(ctx, "", func(string, []byte) error { return nil }); !errors.Is(err, sdk.ErrInvalidArgument) {
			t.Errorf("list through plugin %q: %v", name, err)
		}
	}
	// A plugin named like the top bucket is just another plugin.
	mustPut(t, s.ForPlugin("plugins"), "k", "v")
	if got := keys(t, s.ForPlugin("plugins"), ""); !slices.Equal(got, []string{"k"}) {
		t.Fatal(got)
	}
}

func TestBadKeysAndValues(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	kv := s.ForPlugin("p")
	bad := map[string]string{
		"empty":        "",
		"1025 bytes":   strings.Repeat("k", 1025),
		"invalid utf8": "a\xffb",
		"NUL":          "a\x00b",
	}
	for what, k := range bad {
		if err := kv.Put(ctx, k, []byte("v")); !errors.Is(err, sdk.ErrInvalidArgument) {
			t.Errorf("put with %s key: %v, want ErrInvalidArgument", what, err)
		}
		if _, err := kv.Get(ctx, k); !errors.Is(err, sdk.ErrInvalidArgument) {
			t.Errorf("get with %s key: %v", what, err)
		}
		if err := kv.Delete(ctx, k); !errors.Is(err, sdk.ErrInvalidArgument) {
			t.Errorf("delete with %s key: %v", what, err)
		}
	}
	for what, p := range map[string]string{"1025 bytes": strings.Repeat("k", 1025), "invalid utf8": "\xff", "NUL": "\x00"} {
		if err := kv.List(ctx, p, func(string, []byte) error { return nil }); !errors.Is(err, sdk.ErrInvalidArgument) {
			t.Errorf("list with %s prefix: %v", what, err)
		}
	}
	if err := kv.Put(ctx, strings.Repeat("k", 1024), []byte("v")); err != nil {
		t.Errorf("1024-byte key: %v", err)
	}
	if err := kv.Put(ctx, "big", make([]byte, sdk.MaxKVValueBytes)); err != nil {
		t.Errorf("value of exactly the max: %v", err)
	}
	err := kv.Put(ctx, "too-big", make([]byte, sdk.MaxKVValueBytes+1))
	if !errors.Is(err, sdk.ErrInvalidArgument) || !strings.Contains(err.Error(), "at most 1048576") {
		t.Errorf("value over the max: %v", err)
	}
	if _, err := kv.Get(ctx, "too-big"); !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("rejected put stored something: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := kv.Put(cctx, "k", nil); !errors.Is(err, context.Canceled) {
		t.Errorf("put with a cancelled context: %v", err)
	}
}

func TestDurableAcrossReopen(t *testing.T) {
	s, path := openTemp(t)
	ctx := context.Background()
	mustPut(t, s.ForPlugin("a"), "k1", "v1")
	mustPut(t, s.ForPlugin("b"), "k1", "b1")
	mustPut(t, s.ForPlugin("a"), "gone", "x")
	if err := s.ForPlugin("a").Delete(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if v, err := s2.ForPlugin("a").Get(ctx, "k1"); err != nil || string(v) != "v1" {
		t.Fatalf("after reopen: %q, %v", v, err)
	}
	if v, err := s2.ForPlugin("b").Get(ctx, "k1"); err != nil || string(v) != "b1" {
		t.Fatalf("after reopen: %q, %v", v, err)
	}
	if _, err := s2.ForPlugin("a").Get(ctx, "gone"); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("deleted key after reopen: %v", err)
	}
}

func TestSecondOpenFailsFast(t *testing.T) {
	_, path := openTemp(t)
	_, err := Open(path)
	if err == nil || !strings.Contains(err.Error(), "is in use by another dw process") || !strings.Contains(err.Error(), path) {
		t.Fatalf("second open: %v", err)
	}
}

func TestListBatching(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	kv := s.ForPlugin("p")
	const n = 1300
	bulkLoad(t, s, "p", "job/%05d", n)
	mustPut(t, kv, "other", "x")
	mustPut(t, s.ForPlugin("q"), "job/00001", "q")

	got := keys(t, kv, "job/")
	if len(got) != n || got[0] != "job/00000" || got[n-1] != fmt.Sprintf("job/%05d", n-1) || !slices.IsSorted(got) {
		t.Fatalf("listed %d keys (first %q), want %d in order", len(got), got[0], n)
	}

	// Mutations from inside the callback: deleting the key just seen and
	// keys ahead, and adding keys ahead and behind. Keys present for the
	// whole listing are seen exactly once; deleted ones ahead are not seen.
	seen := map[string]int{}
	i := 0
	err := kv.List(ctx, "job/", func(k string, v []byte) error {
		seen[k]++
		// No read transaction is held while fn runs.
		if open := s.db.Stats().OpenTxN; open != 0 {
			return fmt.Errorf("%d read transactions open during the callback for %s", open, k)
		}
		if i%100 == 0 {
			if err := kv.Delete(ctx, k); err != nil {
				return err
			}
		}
		if i == 10 {
			for j := 1000; j < 1010; j++ {
				if err := kv.Delete(ctx, fmt.Sprintf("job/%05d", j)); err != nil {
					return err
				}
			}
			if err := kv.Put(ctx, "job/00000-behind", nil); err != nil {
				return err
			}
		}
		i++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for j := range n {
		k := fmt.Sprintf("job/%05d", j)
		want := 1
		if j >= 1000 && j < 1010 {
			want = 0
		}
		if seen[k] != want {
			t.Fatalf("%s seen %d times, want %d", k, seen[k], want)
		}
	}
	if left := keys(t, kv, "job/"); len(left) != n-13-10+1 || left[0] != "job/00000-behind" || left[1] != "job/00001" {
		t.Fatalf("left after deleting while listing: %d keys starting %v", len(left), left[:2])
	}

	// An error from fn stops the listing and comes back.
	stop := errors.New("stop")
	calls := 0
	bulkLoad(t, s, "p", "s/%04d", 600)
	err = kv.List(ctx, "s/", func(string, []byte) error {
		calls++
		if calls == 300 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || calls != 300 {
		t.Fatalf("list with stopping fn: %v after %d calls", err, calls)
	}
	// A cancelled context stops it too.
	cctx, cancel := context.WithCancel(ctx)
	calls = 0
	err = kv.List(cctx, "s/", func(string, []byte) error {
		calls++
		if calls == 5 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) || calls != 5 {
		t.Fatalf("list with cancelled context: %v after %d calls", err, calls)
	}
}

// TestListBoundedByBytes checks that large values are listed across batches
// smaller than ListBatch entries, and all of them are seen.
func TestListBoundedByBytes(t *testing.T) {
	s, _ := openTemp(t)
	kv := s.ForPlugin("p")
	big := make([]byte, 1<<20)
	for i := range 10 {
		big[0] = byte(i)
		if err := kv.Put(context.Background(), fmt.Sprintf("big/%d", i), big); err != nil {
			t.Fatal(err)
		}
	}
	n := 0
	if err := kv.List(context.Background(), "big/", func(k string, v []byte) error {
		if len(v) != 1<<20 || int(v[0]) != n {
			return fmt.Errorf("%s: %d bytes starting %d", k, len(v), v[0])
		}
		n++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n != 10 {
		t.Fatalf("listed %d", n)
	}
}

func TestConcurrentUse(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for w := range 4 {
		kv := s.ForPlugin(fmt.Sprintf("p%d", w%2))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 40 {
				k := fmt.Sprintf("w%d/%03d", w, i)
				if err := kv.Put(ctx, k, []byte(k)); err != nil {
					errs <- err
					return
				}
				v, err := kv.Get(ctx, k)
				if err != nil || string(v) != k {
					errs <- fmt.Errorf("get %s: %q %v", k, v, err)
					return
				}
				if err := kv.List(ctx, fmt.Sprintf("w%d/", w), func(string, []byte) error { return nil }); err != nil {
					errs <- err
					return
				}
				if i%3 == 0 {
					if err := kv.Delete(ctx, k); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// Writers 0 and 2 share plugin p0; each kept 26 of 40 keys.
	if got := keys(t, s.ForPlugin("p0"), ""); len(got) != 2*26 {
		t.Fatalf("p0 holds %d keys, want 52", len(got))
	}
}

func BenchmarkPut(b *testing.B) {
	s, _ := openTemp(b)
	kv := s.ForPlugin("bench")
	v := make([]byte, 256)
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if err := kv.Put(ctx, fmt.Sprintf("dw://internal/bench/%08d", i), v); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkGet(b *testing.B) {
	s, _ := openTemp(b)
	kv := s.ForPlugin("bench")
	ctx := context.Background()
	v := make([]byte, 256)
	const n = 1000
	for i := range n {
		if err := kv.Put(ctx, fmt.Sprintf("dw://internal/bench/%08d", i), v); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := kv.Get(ctx, fmt.Sprintf("dw://internal/bench/%08d", i%n)); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
