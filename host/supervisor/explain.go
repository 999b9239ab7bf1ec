package supervisor

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/datawarehouse/dw/sdk/v6/pluginhost"
)

// launchError is why a start attempt failed. Permanent failures (the binary
// or its settings are wrong) make the plugin refused; transient ones (it
// crashed or hung while starting) count as a crash when they happen in a
// restart after a crash, and make it refused on a first start.
type launchError struct {
	msg       string
	permanent bool
	cause     error
}

func (e *launchError) Error() string { return e.msg }
func (e *launchError) Unwrap() error { return e.cause }

func permanent(cause error, format string, args ...any) *launchError {
	return &launchError{msg: fmt.Sprintf(format, args...), permanent: true, cause: cause}
}

func transient(cause error, format string, args ...any) *launchError {
	return &launchError{msg: fmt.Sprintf(format, args...), cause: cause}
}

// tailLines is how many lines of a plugin's stderr are kept to explain a
// crash, and tailLineBytes how long each may be.
const (
	tailLines     = 5
	tailLineBytes = 300
)

// tailWriter keeps the last lines written to it (a plugin's raw stderr).
// hclog JSON lines are shortened to "level: message (error)".
type tailWriter struct {
	mu    sync.Mutex
	lines []string
	cur   []byte
	cut   bool
}

func (t *tailWriter) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, b := range p {
		if b == '\n' {
			t.push()
			continue
		}
		if len(t.cur) < tailLineBytes*4 {
			t.cur = append(t.cur, b)
		} else {
			t.cut = true
		}
	}
	return len(p), nil
}

func (t *tailWriter) push() {
	line := summarizeLogLine(t.cur)
	t.cur = t.cur[:0]
	t.cut = false
	if strings.TrimSpace(line) == "" {
		return
	}
	if len(line) > tailLineBytes {
		line = line[:tailLineBytes] + "…"
	}
	if len(t.lines) == tailLines {
		copy(t.lines, t.lines[1:])
		t.lines = t.lines[:tailLines-1]
	}
	t.lines = append(t.lines, line)
}

// Lines returns the kept lines, oldest first, including an unfinished one.
func (t *tailWriter) Lines() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := append([]string(nil), t.lines...)
	if len(t.cur) > 0 {
		line := summarizeLogLine(t.cur)
		if len(line) > tailLineBytes {
			line = line[:tailLineBytes] + "…"
		}
		out = append(out, line)
		if len(out) > tailLines {
			out = out[1:]
		}
	}
	return out
}

// summarizeLogLine turns an hclog JSON line into "level: message (error)";
// other lines are kept as they are.
func summarizeLogLine(b []byte) string {
	if len(b) == 0 || b[0] != '{' {
		return string(b)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return string(b)
	}
	msg, ok := m["@message"].(string)
	if !ok {
		return string(b)
	}
	s := msg
	if lvl, ok := m["@level"].(string); ok {
		s = lvl + ": " + msg
	}
	for _, k := range []string{"error", "err", "reason"} {
		if v, ok := m[k]; ok {
			s += fmt.Sprintf(" (%s: %v)", k, v)
		}
	}
	return s
}

// stderrSuffix renders the tail for an error message.
func stderrSuffix(lines []string) string {
	if len(lines) == 0 {
		return "; it wrote nothing to stderr"
	}
	return "; last stderr lines: " + strings.Join(quoteAll(lines), " | ")
}

func quoteAll(lines []string) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = fmt.Sprintf("%q", l)
	}
	return out
}

// describeExit renders how a process ended: "exit status 2",
// "killed by signal killed".
func describeExit(err error) string {
	if err == nil {
		return "exit status 0"
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ee.Exited() {
			return fmt.Sprintf("exit status %d", ee.ExitCode())
		}
		return "killed by " + strings.TrimPrefix(ee.String(), "signal: ") + " signal"
	}
	return err.Error()
}

var (
	protoVersionRE = regexp.MustCompile(`Plugin version: (\d+)`)
	coreVersionRE  = regexp.MustCompile(`Plugin version: ([^,]+), Core version`)
)

const unrecognizedPrefix = "Unrecognized remote plugin message: "

// handshakeFacts is what is known about a start that failed before or
// during the go-plugin handshake.
type handshakeFacts struct {
	file         string        // dw-plugin-x
	err          error         // from go-plugin's Client()
	startTimeout time.Duration // plugins.start_timeout
	started      bool          // the process was started
	exitErr      error         // how it exited
	stderr       []string      // last stderr lines
}

// explainHandshake turns go-plugin's start errors into messages an operator
// can act on.
func explainHandshake(f handshakeFacts) *launchError {
	msg := f.err.Error()
	first, _, _ := strings.Cut(msg, "\n")
	crashed := func() *launchError {
		return transient(f.err, "%s exited during start (%s) before completing the handshake%s",
			f.file, describeExit(f.exitErr), stderrSuffix(f.stderr))
	}
	switch {
	case !f.started:
		return permanent(f.err, "cannot start %s: %v", f.file, f.err)
	case strings.Contains(msg, "incompatible API version with plugin"):
		got := "?"
		if m := protoVersionRE.FindStringSubmatch(msg); m != nil {
			got = m[1]
		}
		return permanent(f.err, "%s speaks plugin protocol %s, this host speaks %d: rebuild the plugin with a dw sdk for this host (go-plugin said: %s)",
			f.file, got, pluginhost.ProtocolVersion, first)
	case strings.Contains(msg, "incompatible core API version"):
		got := "?"
		if m := coreVersionRE.FindStringSubmatch(msg); m != nil {
			got = m[1]
		}
		return permanent(f.err, "%s speaks go-plugin core protocol %s, which this host does not: rebuild the plugin with a dw sdk for this host", f.file, got)
	case strings.HasPrefix(msg, unrecognizedPrefix):
		line := strings.TrimPrefix(first, unrecognizedPrefix)
		if line == "" && strings.Contains(msg, "Failed to read any lines") {
			return crashed()
		}
		return permanent(f.err, "%s wrote to stdout before the handshake (%q): plugins must log to stderr", f.file, line)
	case strings.Contains(msg, "timeout while waiting for plugin to start"):
		return transient(f.err, "%s did not complete the handshake within %s (plugins.start_timeout)%s",
			f.file, f.startTimeout, stderrSuffix(f.stderr))
	case strings.Contains(msg, "plugin exited before we could connect"):
		return crashed()
	case strings.Contains(msg, "unsupported plugin protocol"):
		return permanent(f.err, "%s does not serve gRPC (%s): dw plugins are built with the dw sdk, which serves gRPC", f.file, first)
	}
	return transient(f.err, "handshake with %s failed: %s%s", f.file, first, stderrSuffix(f.stderr))
}

// lineLogger logs what a plugin writes to os.Stdout or os.Stderr after the
// handshake (go-plugin forwards those over its stdio stream), one log
// entry per line.
type lineLogger struct {
	mu     sync.Mutex
	log    hclog.Logger
	stream string
	buf    []byte
}

// maxOutputLine bounds a buffered line of forwarded plugin output.
const maxOutputLine = 64 << 10

func (l *lineLogger) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			if len(l.buf) >= maxOutputLine {
				l.log.Info(string(l.buf), "stream", l.stream)
				l.buf = l.buf[:0]
			}
			return len(p), nil
		}
		if line := strings.TrimRight(string(l.buf[:i]), "\r"); line != "" {
			l.log.Info(line, "stream", l.stream)
		}
		l.buf = l.buf[i+1:]
	}
}
