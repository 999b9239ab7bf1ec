package sdktest

import (
	"path/filepath"
	"strings"
	"time"
)

// crashWait is how long a check that failed waits for the plugin process
// to be seen gone, so that a crash is reported as one instead of as the
// connection errors it caused.
const crashWait = 2 * time.Second

// exited reports whether the plugin process of the first checks has ended
// without being stopped by the harness. After a failed check it waits up
// to crashWait for the end to be noticed.
func (r *run) exited(failed bool) bool {
	if r.proc == nil || r.proc.client == nil || r.stopped {
		return false
	}
	if r.proc.client.Exited() {
		return true
	}
	if !failed {
		return false
	}
	// A plugin that answers a ping is alive: no need to wait.
	if cp, err := r.proc.client.Client(); err == nil && cp.Ping() == nil {
		return false
	}
	deadline := time.Now().Add(crashWait)
	for time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		if r.proc.client.Exited() {
			return true
		}
	}
	return false
}

// crashDetail describes how the plugin died, from its stderr: the panic
// (or fatal error) message and the source line of the plugin's own code
// that raised it, e.g. `panic: boom (ratelimit.go:42 in main.(*Limiter).ApplyLimits)`;
// the exit alone when stderr says nothing.
func crashDetail(stderr []string) string {
	msg, at := panicOf(stderr)
	if msg == "" {
		return "the plugin process exited"
	}
	if at != "" {
		return msg + " (" + at + ")"
	}
	return msg
}

// panicOf finds a Go panic or fatal error in stderr lines: its first line
// and the first frame of its stack that is not the runtime's, as
// "file.go:line in function".
func panicOf(lines []string) (msg, at string) {
	start := -1
	for i, l := range lines {
		// go-plugin may prefix relayed lines; the runtime's own start
		// with "panic: " or "fatal error: ".
		if j := strings.Index(l, "panic: "); j >= 0 && !strings.Contains(l, `"@level"`) {
			start, msg = i, strings.TrimSpace(l[j:])
			break
		}
		if j := strings.Index(l, "fatal error: "); j >= 0 && !strings.Contains(l, `"@level"`) {
			start, msg = i, strings.TrimSpace(l[j:])
			break
		}
	}
	if start < 0 {
		return "", ""
	}
	// A stack is pairs of lines: "pkg.Func(args)" then "\t/path/file.go:N +0x..".
	for i := start + 1; i+1 < len(lines); i++ {
		fn := strings.TrimSpace(lines[i])
		loc := strings.TrimSpace(lines[i+1])
		if !strings.HasPrefix(lines[i+1], "\t") || !strings.Contains(loc, ".go:") {
			continue
		}
		name := fn
		if k := strings.LastIndexByte(name, '('); k > 0 {
			name = name[:k]
		}
		if strings.HasPrefix(name, "runtime.") || strings.HasPrefix(name, "panic") {
			i++
			continue
		}
		if k := strings.Index(loc, " +0x"); k >= 0 {
			loc = loc[:k]
		}
		return msg, filepath.Base(loc) + " in " + name
	}
	return msg, ""
}
