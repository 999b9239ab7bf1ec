package supervisor

import (
	"math/rand/v2"
	"time"
)

// Backoff defaults.
const (
	DefaultBackoffInitial  = 200 * time.Millisecond
	DefaultBackoffMax      = 30 * time.Second
	DefaultQuarantineAfter = 5
	DefaultCrashWindow     = 2 * time.Minute
)

// Backoff says how crashed plugins are restarted. Zero fields take the
// defaults: Initial 200ms, Max 30s, QuarantineAfter 5, Window 2m.
type Backoff struct {
	// Initial is the delay before the first restart after a crash; each
	// further crash within Window doubles it.
	Initial time.Duration
	// Max caps the delay.
	Max time.Duration
	// QuarantineAfter is how many crashes within Window quarantine a
	// plugin instead of restarting it.
	QuarantineAfter int
	// Window is how far back crashes count.
	Window time.Duration
}

func (b Backoff) withDefaults() Backoff {
	if b.Initial <= 0 {
		b.Initial = DefaultBackoffInitial
	}
	if b.Max <= 0 {
		b.Max = DefaultBackoffMax
	}
	if b.Max < b.Initial {
		b.Max = b.Initial
	}
	if b.QuarantineAfter <= 0 {
		b.QuarantineAfter = DefaultQuarantineAfter
	}
	if b.Window <= 0 {
		b.Window = DefaultCrashWindow
	}
	return b
}

// crashHistory is the crash times of one plugin within the window.
type crashHistory struct {
	times []time.Time
}

// record adds a crash at now, forgets those older than window, and returns
// how many remain.
func (h *crashHistory) record(now time.Time, window time.Duration) int {
	keep := h.times[:0]
	for _, t := range h.times {
		if now.Sub(t) < window {
			keep = append(keep, t)
		}
	}
	h.times = append(keep, now)
	return len(h.times)
}

func (h *crashHistory) reset() { h.times = h.times[:0] }

// delay is the wait before restarting after the n-th crash within the
// window (n >= 1): Initial·2^(n-1), capped at Max, then jittered by ±20%
// (jitter in [0,1) picks where in that band) so that plugins that crashed
// together do not restart in lockstep. The result never exceeds Max.
func (b Backoff) delay(n int, jitter float64) time.Duration {
	d := b.Initial
	for i := 1; i < n && d < b.Max; i++ {
		d *= 2
	}
	if d > b.Max {
		d = b.Max
	}
	d = time.Duration(float64(d) * (0.8 + 0.4*jitter))
	if d > b.Max {
		d = b.Max
	}
	return d
}

func randJitter() float64 { return rand.Float64() }
