package node

import (
	"testing"
	"time"
)

func TestMissedBeats(t *testing.T) {
	t0 := time.Unix(1000, 0)
	s := time.Second
	tests := []struct {
		since    time.Duration
		interval time.Duration
		want     int
	}{
		{0, s, 0},
		{-5 * s, s, 0}, // clock went back
		{1499 * time.Millisecond, s, 0},
		{1500 * time.Millisecond, s, 1},
		{2499 * time.Millisecond, s, 1},
		{2500 * time.Millisecond, s, 2},
		{3500 * time.Millisecond, s, 3},
		{350 * time.Millisecond, 200 * time.Millisecond, 1},
		{time.Hour, s, 3599},
		{time.Hour, 0, 0},
		{1 << 62, time.Nanosecond, 1<<31 - 1}, // capped
	}
	for _, tt := range tests {
		if got := missedBeats(t0.Add(tt.since), t0, tt.interval); got != tt.want {
			t.Errorf("missedBeats(+%s, %s) = %d, want %d", tt.since, tt.interval, got, tt.want)
		}
	}
}

func TestStateFor(t *testing.T) {
	tests := []struct {
		missed, limit int
		want          State
	}{
		{0, 3, StateAlive}, {1, 3, StateSuspect}, {2, 3, StateSuspect}, {3, 3, StateDead}, {9, 3, StateDead},
		{0, 1, StateAlive}, {1, 1, StateDead},
	}
	for _, tt := range tests {
		if got := stateFor(tt.missed, tt.limit); got != tt.want {
			t.Errorf("stateFor(%d, %d) = %s, want %s", tt.missed, tt.limit, got, tt.want)
		}
	}
}

// TestDetectionBound walks an injected clock over a crash at every phase
// of the heartbeat cycle: the watcher (evaluating every interval/4)
// declares the node dead within (M + ½)·interval + interval/4 of the
// crash (the worst case: a crash right after an ack), inside the issue's
// bound interval × (M + 1); at best (a crash just before the next
// heartbeat) it takes (M − ½)·interval.
func TestDetectionBound(t *testing.T) {
	for _, c := range []struct {
		iv time.Duration
		m  int
	}{{200 * time.Millisecond, 3}, {time.Second, 3}, {time.Second, 1}, {15 * time.Second, 5}} {
		t0 := time.Unix(1000, 0)
		worst, best := time.Duration(0), time.Duration(1<<62)
		for phase := time.Duration(0); phase < c.iv; phase += c.iv / 16 {
			crash := t0.Add(c.iv + phase)
			// Acks arrive at each interval tick until the crash.
			last := t0
			for tick := t0; !tick.After(crash); tick = tick.Add(c.iv) {
				last = tick
			}
			var declared time.Time
			for now := t0; ; now = now.Add(c.iv / 4) {
				if now.After(crash) && stateFor(missedBeats(now, last, c.iv), c.m) == StateDead {
					declared = now
					break
				}
			}
			worst = max(worst, declared.Sub(crash))
			best = min(best, declared.Sub(crash))
		}
		want := time.Duration(c.m)*c.iv + c.iv/2 + c.iv/4
		if worst > want || worst >= time.Duration(c.m+1)*c.iv {
			t.Errorf("interval %s × %d: worst detection %s, want <= %s", c.iv, c.m, worst, want)
		}
		if lo := time.Duration(c.m)*c.iv - c.iv/2; best < lo {
			t.Errorf("interval %s × %d: best detection %s, want >= %s", c.iv, c.m, best, lo)
		}
	}
}
