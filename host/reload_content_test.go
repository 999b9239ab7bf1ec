package host_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/datawarehouse/dw/config"
	"github.com/datawarehouse/dw/host"
)

// These tests pin down that a reload applies the bytes that were read and
// validated, never a second read of the file: the file is changed at the
// last moment (in the beforeParse hook, with the reload lock held) and the
// reload must still apply what was read before.

// parseCall is one call of the beforeParse hook.
type parseCall struct {
	source  string
	content string
}

// replaceFile replaces path with content by a rename, as editors save: a
// reader sees the old content or the new, whole.
func replaceFile(t testing.TB, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Error(err)
		return
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Error(err)
	}
}

// watch runs r's Host.Watch until the test ends.
func (r *reloadHost) watch() {
	r.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.h.Watch(ctx) }()
	r.t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				r.t.Errorf("Watch: %v", err)
			}
		case <-time.After(time.Minute):
			r.t.Errorf("Watch did not return within a minute of the cancel")
		}
	})
}

// nextCall returns the next call of the beforeParse hook.
func nextCall(t testing.TB, calls <-chan parseCall, what string) parseCall {
	t.Helper()
	select {
	case c := <-calls:
		return c
	case <-time.After(30 * time.Second):
		t.Fatalf("no reload parsed %s within 30s", what)
		return parseCall{}
	}
}

// waitGenerationIs waits until the host runs generation gen.
func (r *reloadHost) waitGenerationIs(gen uint64) {
	r.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for r.h.ConfigInfo().Generation != gen {
		if time.Now().After(deadline) {
			r.t.Fatalf("generation %d not reached within 30s: %+v", gen, r.h.ConfigInfo())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A change the watcher delivered is applied from the bytes it delivered,
// even when the file no longer holds them by the time the reload runs:
// emptied (a truncate-then-write caught in the middle, which read again
// would be the defaults alone) or replaced by the next save (applied by the
// next reload, not this one).
func TestWatchReloadAppliesDeliveredBytes(t *testing.T) {
	for _, tc := range []struct {
		name string
		// change changes the file after the watcher delivered content A,
		// before the reload parses it.
		change func(r *reloadHost)
		// next is the max_items of the content the next reload applies;
		// written by the test after the change unless change wrote it.
		next        int
		changeWrote bool
	}{
		{name: "emptied", next: 4, change: func(r *reloadHost) {
			if err := os.Truncate(r.cfgPath, 0); err != nil {
				r.t.Error(err)
			}
		}},
		{name: "replaced", next: 3, changeWrote: true, change: func(r *reloadHost) {
			replaceFile(r.t, r.cfgPath, r.head+"subsystems:\n  alpha: {limits: {max_items: 3}}\n")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newReloadHost(t, []string{"alpha"}, "subsystems:\n  alpha: {limits: {max_items: 1}}\n")
			contentA := r.head + "subsystems:\n  alpha: {limits: {max_items: 2}}\n"
			contentNext := r.head + fmt.Sprintf("subsystems:\n  alpha: {limits: {max_items: %d}}\n", tc.next)

			calls := make(chan parseCall, 16)
			release := make(chan struct{})
			var releaseOnce sync.Once
			releaseAll := func() { releaseOnce.Do(func() { close(release) }) }
			host.SetBeforeParse(r.h, func(source string, content []byte) {
				if string(content) == contentA {
					tc.change(r) // the file changes under the reload
				}
				calls <- parseCall{source, string(content)}
				if string(content) != contentA {
					select { // hold later reloads until the test has looked
					case <-release:
					case <-time.After(time.Minute):
					}
				}
			})
			r.watch()
			t.Cleanup(releaseAll) // runs before Watch's cleanup waits for Watch

			replaceFile(t, r.cfgPath, contentA)
			c := nextCall(t, calls, "content A")
			if c.content != contentA || !strings.HasPrefix(c.source, "file change (") {
				t.Fatalf("first reload parsed %q from %q, want content A from a file change\n(the start-up content must not be reloaded: the watcher starts from its hash)", c.content, c.source)
			}
			if !tc.changeWrote {
				replaceFile(t, r.cfgPath, contentNext)
			}

			// The next reload waits in the hook: A's reload is over.
			c = nextCall(t, calls, "the content after A")
			if c.content != contentNext {
				t.Fatalf("the reload after A parsed %q from %q, want max_items %d: an intermediate content was read", c.content, c.source, tc.next)
			}
			info := r.h.ConfigInfo()
			if info.Generation != 2 || info.FileHash != config.HashContent([]byte(contentA)) ||
				info.LastReload == nil || !info.LastReload.OK || !strings.HasPrefix(info.LastReload.Source, "file change (") {
				t.Fatalf("after the reload of A: %+v (last reload %+v); want generation 2 with the file hash of A", info, info.LastReload)
			}
			r.wantLimits("alpha", 2, "fast", 2)

			releaseAll()
			r.waitGenerationIs(3)
			if info := r.h.ConfigInfo(); info.FileHash != config.HashContent([]byte(contentNext)) {
				t.Errorf("file hash %s after the next reload, want that of the next content", info.FileHash)
			}
			r.wantLimits("alpha", float64(tc.next), "fast", 3)
			select {
			case c := <-calls:
				t.Errorf("an extra reload parsed %q from %q", c.content, c.source)
			default:
			}
		})
	}
}

// SIGHUP and POST /v1/config/reload read the file once: those bytes are
// parsed and applied, and their hash recorded, so that the watcher
// delivering the same content reloads nothing. An empty file is refused.
func TestReloadFileAppliesItsOneRead(t *testing.T) {
	r := newReloadHost(t, []string{"alpha"}, "subsystems:\n  alpha: {limits: {max_items: 1}}\n")
	var (
		mu    sync.Mutex
		calls []parseCall
	)
	host.SetBeforeParse(r.h, func(source string, content []byte) {
		mu.Lock()
		calls = append(calls, parseCall{source, string(content)})
		mu.Unlock()
		if source == "api" {
			// A save begins right after the read.
			if err := os.Truncate(r.cfgPath, 0); err != nil {
				t.Error(err)
			}
		}
	})
	callCount := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(calls)
	}
	ctx := context.Background()

	contentB := r.head + "subsystems:\n  alpha: {limits: {max_items: 2}}\n"
	hashB := config.HashContent([]byte(contentB))
	r.write("subsystems:\n  alpha: {limits: {max_items: 2}}\n")
	res := r.mustOK(r.h.ReloadFile(ctx, "api"))
	if res.Generation != 2 || res.FileHash != hashB || r.h.ConfigInfo().FileHash != hashB {
		t.Fatalf("reload of B: %+v, file hash in force %s; want generation 2 and B's file hash", res, r.h.ConfigInfo().FileHash)
	}
	r.wantLimits("alpha", 2, "fast", 2)
	mu.Lock()
	parsedB := len(calls) == 1 && calls[0].content == contentB
	mu.Unlock()
	if !parsedB {
		t.Fatalf("parsed %+v, want B once", calls)
	}

	// The watcher delivers B, which the API reload read first: nothing.
	res = host.ReloadChange(ctx, r.h, config.Change{Content: []byte(contentB), Hash: hashB, Cause: "write"})
	if !res.OK || res.Generation != 2 || res.FileHash != hashB {
		t.Fatalf("watcher delivery of the content in force: %+v", res)
	}
	if n := callCount(); n != 1 {
		t.Fatalf("the content in force was parsed again: %+v", calls)
	}
	if last := r.h.ConfigInfo().LastReload; last == nil || last.Source != "api" {
		t.Fatalf("last reload %+v, want the api one: a delivery of the content in force is not a reload", last)
	}

	// Another content is reloaded, from the delivered bytes (the file is
	// empty now).
	contentC := r.head + "subsystems:\n  alpha: {limits: {max_items: 3}}\n"
	res = r.mustOK(host.ReloadChange(ctx, r.h, config.Change{Content: []byte(contentC), Hash: config.HashContent([]byte(contentC)), Cause: "write"}))
	if res.Generation != 3 || res.FileHash != config.HashContent([]byte(contentC)) {
		t.Fatalf("watcher delivery of C: %+v", res)
	}
	r.wantLimits("alpha", 3, "fast", 3)

	// SIGHUP on the empty file: refused, not the defaults.
	res = r.mustFail(r.h.ReloadFile(ctx, "SIGHUP"))
	if !strings.Contains(res.Error, "empty") || res.Generation != 3 {
		t.Fatalf("reload of an empty file: %+v", res)
	}
	if n := callCount(); n != 2 {
		t.Fatalf("the empty file was parsed: %+v", calls)
	}
	r.wantLimits("alpha", 3, "fast", 3)

	// After a failed reload, the content in force delivered again (an
	// edit reverted) is a successful reload that changes nothing.
	res = r.mustOK(host.ReloadChange(ctx, r.h, config.Change{Content: []byte(contentC), Hash: config.HashContent([]byte(contentC)), Cause: "write"}))
	if last := r.h.ConfigInfo().LastReload; res.Generation != 3 || len(res.ChangedKeys) != 0 || last == nil || !last.OK || last.Source != "file change (write)" {
		t.Fatalf("revert to the content in force after a failure: %+v, last reload %+v", res, last)
	}
	if n := callCount(); n != 3 {
		t.Fatalf("parsed %+v, want the reverted content parsed", calls)
	}
}
