package sdktest

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// timeUnit is the precision durations are shown with.
const timeUnit = time.Millisecond

// WriteText writes the report for people: a heading naming the plugin, one
// line per check marked ✓ (passed), ✗ (failed) or - (skipped) with its
// duration, the detail indented below it, and a summary line.
func (r Report) WriteText(w io.Writer) error {
	var b strings.Builder
	name := r.Plugin
	if name == "" {
		name = "(unknown)"
	}
	fmt.Fprintf(&b, "plugin %s", name)
	if r.Info.Version != "" {
		fmt.Fprintf(&b, " %s", r.Info.Version)
	}
	if r.Info.SDKVersion != "" {
		fmt.Fprintf(&b, ", sdk %s", r.Info.SDKVersion)
	}
	if r.ProtocolVersion != 0 {
		fmt.Fprintf(&b, ", protocol %d", r.ProtocolVersion)
	}
	fmt.Fprintf(&b, "\n  %s\n", r.Path)
	var passed, failed, skipped int
	for _, c := range r.Checks {
		mark := "✓"
		switch {
		case c.Skipped:
			mark = "-"
			skipped++
		case !c.Passed:
			mark = "✗"
			failed++
		default:
			passed++
		}
		fmt.Fprintf(&b, "%s %s (%v)", mark, c.Name, c.Duration.Round(timeUnit))
		if c.Skipped {
			b.WriteString(" skipped")
		}
		b.WriteString("\n")
		if c.Detail != "" {
			for _, line := range strings.Split(strings.TrimRight(c.Detail, "\n"), "\n") {
				b.WriteString("    " + line + "\n")
			}
		}
	}
	verdict := "PASS"
	if !r.Passed() {
		verdict = "FAIL"
	}
	fmt.Fprintf(&b, "%s: %d passed, %d failed, %d skipped\n", verdict, passed, failed, skipped)
	_, err := io.WriteString(w, b.String())
	return err
}
