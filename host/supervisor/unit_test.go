package supervisor

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestBackoffDelay(t *testing.T) {
	b := Backoff{}.withDefaults()
	if b.Initial != 200*time.Millisecond || b.Max != 30*time.Second || b.QuarantineAfter != 5 || b.Window != 2*time.Minute {
		t.Fatalf("defaults %+v", b)
	}
	for n, want := range map[int]time.Duration{1: 200 * time.Millisecond, 2: 400 * time.Millisecond, 3: 800 * time.Millisecond, 8: 25600 * time.Millisecond, 9: 30 * time.Second, 60: 30 * time.Second} {
		if got := b.delay(n, 0.5); got != want {
			t.Errorf("delay(%d) = %s, want %s", n, got, want)
		}
		lo, hi := b.delay(n, 0), b.delay(n, 0.999999)
		if lo > want || hi < want && want < b.Max || hi > b.Max {
			t.Errorf("delay(%d) jitter band [%s, %s] around %s", n, lo, hi, want)
		}
	}
	if got := b.delay(1, 0); got != 160*time.Millisecond {
		t.Errorf("lowest jitter: %s", got)
	}
	if got := (Backoff{Initial: time.Second, Max: time.Millisecond}).withDefaults(); got.Max != time.Second {
		t.Errorf("max below initial: %+v", got)
	}
}

func TestCrashHistory(t *testing.T) {
	var h crashHistory
	t0 := time.Unix(1000, 0)
	if n := h.record(t0, time.Minute); n != 1 {
		t.Fatal(n)
	}
	if n := h.record(t0.Add(30*time.Second), time.Minute); n != 2 {
		t.Fatal(n)
	}
	// The first falls out of the window.
	if n := h.record(t0.Add(61*time.Second), time.Minute); n != 2 {
		t.Fatal(n)
	}
	h.reset()
	if n := h.record(t0.Add(62*time.Second), time.Minute); n != 1 {
		t.Fatal(n)
	}
}

func TestTailWriter(t *testing.T) {
	var w tailWriter
	for i := range 8 {
		w.Write([]byte("line "))
		w.Write([]byte{byte('0' + i), '\n'})
	}
	w.Write([]byte(`{"@level":"error","@message":"open db","@module":"x","error":"locked"}` + "\n"))
	w.Write([]byte("\n\npartial"))
	got := w.Lines()
	want := []string{"line 5", "line 6", "line 7", "error: open db (error: locked)", "partial"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("lines %q, want %q", got, want)
	}
	var long tailWriter
	long.Write([]byte(strings.Repeat("x", 5000) + "\n"))
	if l := long.Lines(); len(l) != 1 || len(l[0]) > tailLineBytes+len("…") {
		t.Fatalf("long line kept as %d bytes", len(l[0]))
	}
}

func TestExplainHandshake(t *testing.T) {
	exit1 := exec.Command("sh", "-c", "exit 1").Run()
	killed := exec.Command("sh", "-c", "kill -9 $$").Run()
	cases := []struct {
		name      string
		facts     handshakeFacts
		want      string
		permanent bool
	}{
		{"protocol", handshakeFacts{err: errors.New("incompatible API version with plugin. Plugin version: 2, Client versions: [1]"), started: true},
			"dw-plugin-x speaks plugin protocol 2, this host speaks 1: rebuild the plugin with a dw sdk for this host", true},
		{"stdout", handshakeFacts{err: errors.New("Unrecognized remote plugin message: hello from plugin\nmore"), started: true},
			`dw-plugin-x wrote to stdout before the handshake ("hello from plugin"): plugins must log to stderr`, true},
		{"no output", handshakeFacts{err: errors.New("Unrecognized remote plugin message: \nFailed to read any lines from plugin's stdout"), started: true, exitErr: exit1, stderr: []string{"boom"}},
			`dw-plugin-x exited during start (exit status 1) before completing the handshake; last stderr lines: "boom"`, false},
		{"exited", handshakeFacts{err: errors.New("plugin exited before we could connect"), started: true, exitErr: killed},
			"dw-plugin-x exited during start (killed by killed signal) before completing the handshake; it wrote nothing to stderr", false},
		{"timeout", handshakeFacts{err: errors.New("timeout while waiting for plugin to start"), started: true, startTimeout: 10 * time.Second},
			"dw-plugin-x did not complete the handshake within 10s (plugins.start_timeout)", false},
		{"netrpc", handshakeFacts{err: errors.New(`unsupported plugin protocol "netrpc". Supported: [grpc]`), started: true},
			"dw-plugin-x does not serve gRPC", true},
		{"core", handshakeFacts{err: errors.New("incompatible core API version with plugin. Plugin version: 9, Core version: 1\n\nTo fix"), started: true},
			"dw-plugin-x speaks go-plugin core protocol 9", true},
		{"exec", handshakeFacts{err: errors.New("start /p/dw-plugin-x: fork/exec /p/dw-plugin-x: exec format error")},
			"cannot start dw-plugin-x: start /p/dw-plugin-x: fork/exec /p/dw-plugin-x: exec format error", true},
		{"other", handshakeFacts{err: errors.New("error parsing server cert: bad"), started: true},
			"handshake with dw-plugin-x failed: error parsing server cert: bad", false},
	}
	for _, c := range cases {
		c.facts.file = "dw-plugin-x"
		le := explainHandshake(c.facts)
		if !strings.Contains(le.msg, c.want) || le.permanent != c.permanent {
			t.Errorf("%s: %q (permanent %v)\nwant %q (permanent %v)", c.name, le.msg, le.permanent, c.want, c.permanent)
		}
		if !errors.Is(le, c.facts.err) {
			t.Errorf("%s: does not wrap the cause", c.name)
		}
	}
}

func TestDiscoverUnit(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, mode os.FileMode, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
	write("dw-plugin-a", 0o755, "a")
	write("dw-plugin-b", 0o700, "b")
	write("dw-plugin-c", 0o600, "c")
	write("dw-plugin-", 0o755, "")
	write("dw-plugin-"+strings.Repeat("z", 64), 0o755, "")
	write("other", 0o755, "")
	found, skips, err := discover(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 2 || found["a"] == nil || found["b"] == nil {
		t.Fatalf("found %v", found)
	}
	// sha256 of "a"
	if found["a"].sha256 != "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb" {
		t.Fatalf("sha256 %s", found["a"].sha256)
	}
	if len(skips) != 3 {
		t.Fatalf("skips %v", skips)
	}
	// Unchanged files keep their hash without a re-read; changed ones are
	// hashed again.
	prev := found
	prev["a"].sha256 = "kept"
	write("dw-plugin-b", 0o700, "bb")
	found, _, _ = discover(dir, prev)
	if found["a"].sha256 != "kept" || found["b"].sha256 == prev["b"].sha256 {
		t.Fatalf("rescan: a %s b %s", found["a"].sha256, found["b"].sha256)
	}
	if _, _, err := discover(filepath.Join(dir, "dw-plugin-a"), nil); err == nil || errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a file as plugins.dir: %v", err)
	}
	if found, _, err := discover(filepath.Join(dir, "nope"), nil); !errors.Is(err, fs.ErrNotExist) || len(found) != 0 {
		t.Fatalf("a missing plugins.dir: %v %v", found, err)
	}
}

func TestPrivateCopy(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "dw-plugin-a")
	if err := os.WriteFile(src, []byte("a"), 0o755); err != nil {
		t.Fatal(err)
	}
	cp, sum, err := privateCopy(dir, src)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(cp) != "dw-plugin-a" || filepath.Dir(filepath.Dir(cp)) != dir || sum != "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb" {
		t.Fatalf("copy %s sum %s", cp, sum)
	}
	fi, err := os.Stat(cp)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("copy mode %v %v", fi.Mode(), err)
	}
}

func TestWithoutEnvHidesTokenVariables(t *testing.T) {
	env := []string{"PATH=/bin", "DW_ADMIN_TOKEN=secret", "DW_TOKEN=x", "DW_ADMIN_TOKEN_OTHER=keep", "NOEQUALS"}
	got := withoutEnv(env, []string{"DW_ADMIN_TOKEN", "DW_TOKEN"})
	want := []string{"PATH=/bin", "DW_ADMIN_TOKEN_OTHER=keep", "NOEQUALS"}
	if !slices.Equal(got, want) {
		t.Fatalf("withoutEnv = %q, want %q", got, want)
	}
	if got := withoutEnv(env, nil); !slices.Equal(got, env) {
		t.Fatalf("no hidden names must keep env: %q", got)
	}
}
