package concurrency

import (
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

// newController returns an adaptive controller with the default limits
// changed by edit, and the limits passed to OnLimit.
func newController(t testing.TB, disks int, edit func(*Limits)) (*Controller, *[]int) {
	t.Helper()
	l := DefaultLimits()
	if edit != nil {
		edit(&l)
	}
	var applied []int
	c := NewController(l, Options{Disks: disks, OnLimit: func(n int) { applied = append(applied, n) },
		Now: func() time.Time { return time.Unix(0, 0) }})
	return c, &applied
}

// util is a sample with utilisation u and jobs waiting.
func util(u float64) Sample { return Sample{Utilization: u, Queued: 3, Running: 1} }

// run steps c through samples and returns the limit after each.
func run(t testing.TB, c *Controller, samples ...Sample) []int {
	t.Helper()
	var limits []int
	for i, s := range samples {
		d := c.Step(s)
		if d.New != c.Limit() {
			t.Fatalf("step %d: decision says %d, limit is %d", i, d.New, c.Limit())
		}
		limits = append(limits, d.New)
	}
	return limits
}

func repeat(s Sample, n int) []Sample {
	out := make([]Sample, n)
	for i := range out {
		out[i] = s
	}
	return out
}

func TestControllerSeries(t *testing.T) {
	alpha1 := func(l *Limits) { l.EMAAlpha = 1 }
	tests := []struct {
		name    string
		disks   int
		edit    func(*Limits)
		samples []Sample
		want    []int
	}{
		{name: "rise to 4 × 1 disk and hold there", disks: 1, samples: repeat(util(0.1), 6), want: []int{2, 3, 4, 4, 4, 4}},
		{name: "no disks found bounds like one disk", disks: 0, samples: repeat(util(0.1), 5), want: []int{2, 3, 4, 4, 4}},
		{name: "two disks bound at 8", disks: 2, samples: repeat(util(0), 9), want: []int{2, 3, 4, 5, 6, 7, 8, 8, 8}},
		{
			name: "rise then fall to 1 and not below", disks: 1, edit: alpha1,
			samples: append(repeat(util(0.1), 3), repeat(util(0.95), 5)...),
			want:    []int{2, 3, 4, 3, 2, 1, 1, 1},
		},
		{
			name: "between low and high holds", disks: 1,
			samples: repeat(util(0.7), 4), want: []int{1, 1, 1, 1},
		},
		{
			name: "no job waiting: no raise", disks: 1,
			samples: repeat(Sample{Utilization: 0.1, Running: 1}, 3), want: []int{1, 1, 1},
		},
		{
			// The average climbs from 0.1 by 30% of the gap each step:
			// 0.1, 0.37, 0.559, 0.6913, 0.78391, 0.848737: the limit
			// keeps rising while below 60% and falls only once above 80%.
			name: "EMA delays the reaction to a jump", disks: 1,
			samples: append([]Sample{util(0.1)}, repeat(util(1), 5)...),
			want:    []int{2, 3, 4, 4, 4, 3},
		},
		{
			name: "utilisation over 100% and below 0 are clamped", disks: 1, edit: alpha1,
			samples: []Sample{util(-3), util(7), util(1)}, want: []int{2, 1, 1},
		},
		{
			name: "fixed mode ignores utilisation", disks: 1, edit: func(l *Limits) { l.MaxConcurrentOperations = 6 },
			samples: []Sample{util(0), util(1), util(0.5)}, want: []int{6, 6, 6},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := newController(t, tt.disks, tt.edit)
			if got := run(t, c, tt.samples...); !slices.Equal(got, tt.want) {
				t.Fatalf("limits = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestControllerOscillation feeds a utilisation that jumps between 95% and
// 30% every interval: unsmoothed, the limit follows every jump; with the
// default EMA it mostly holds.
func TestControllerOscillation(t *testing.T) {
	var series []Sample
	for range 20 {
		series = append(series, util(0.3), util(0.95))
	}
	changes := func(alpha float64) int {
		c, applied := newController(t, 1, func(l *Limits) { l.EMAAlpha = alpha })
		run(t, c, series...)
		return len(*applied)
	}
	raw, smoothed := changes(1), changes(0.3)
	if raw != 40 {
		t.Errorf("alpha 1: %d limit changes over 40 alternating samples, want 40", raw)
	}
	if smoothed > 10 {
		t.Errorf("alpha 0.3: %d limit changes over 40 alternating samples, want at most 10", smoothed)
	}
}

func TestControllerBoundsNeverCrossed(t *testing.T) {
	for disks := range 4 {
		c, applied := newController(t, disks, func(l *Limits) { l.EMAAlpha = 1 })
		for i := range 200 {
			// A deterministic mix of low, middle and high utilisation.
			c.Step(util(float64((i*37)%100) / 100))
		}
		hi := 4 * max(disks, 1)
		for _, n := range *applied {
			if n < 1 || n > hi {
				t.Fatalf("disks %d: limit %d outside [1, %d]", disks, n, hi)
			}
		}
		if len(*applied) == 0 {
			t.Fatalf("disks %d: the limit never moved", disks)
		}
	}
}

func TestControllerNotMeasured(t *testing.T) {
	c, _ := newController(t, 1, nil)
	run(t, c, util(0.7))
	d := c.Step(Sample{Utilization: 0, Err: errors.New("diskstats unreadable"), Queued: 3})
	if d.Kind != Hold || d.New != 1 || d.Smoothed != 0.7 || !strings.Contains(d.Reason, "diskstats unreadable") {
		t.Fatalf("decision on an unmeasured sample = %+v, want a hold keeping the average 0.7 and naming the error", d)
	}
}

func TestControllerLiveLimits(t *testing.T) {
	c, applied := newController(t, 1, func(l *Limits) { l.EMAAlpha = 1 })
	run(t, c, util(0.7))
	if c.Limit() != 1 {
		t.Fatalf("limit %d after 70%%, want 1", c.Limit())
	}

	// A band moved up: 70% is now below low.
	l := c.Limits()
	l.UtilizationLow, l.UtilizationHigh = 0.75, 0.9
	c.SetLimits(l)
	if got := run(t, c, util(0.7), util(0.85)); !slices.Equal(got, []int{2, 2}) {
		t.Fatalf("limits after raising the band = %v, want [2 2]", got)
	}

	// A slower average: one high sample no longer crosses high.
	l.EMAAlpha = 0.1
	c.SetLimits(l)
	if got := run(t, c, util(1)); !slices.Equal(got, []int{2}) {
		t.Fatalf("limit after a jump with alpha 0.1 = %v, want [2]", got)
	}

	// Fixed: applied at once, recorded and passed on.
	l.MaxConcurrentOperations = 7
	c.SetLimits(l)
	last := c.Decisions()[len(c.Decisions())-1]
	if c.Limit() != 7 || last.Kind != Fixed || last.Old != 2 || last.New != 7 || (*applied)[len(*applied)-1] != 7 {
		t.Fatalf("after fixing at 7: limit %d, last decision %+v, applied %v", c.Limit(), last, *applied)
	}

	// Adaptive again: 7 is over the bound of 4 × 1 disk.
	l.MaxConcurrentOperations = 0
	c.SetLimits(l)
	if c.Limit() != 4 {
		t.Fatalf("limit %d after returning to adaptive with 1 disk, want 4", c.Limit())
	}

	// The interval is kept for Run.
	l.AdjustInterval = time.Minute
	c.SetLimits(l)
	if got := c.Limits().AdjustInterval; got != time.Minute {
		t.Fatalf("interval %v, want 1m", got)
	}
	st := c.State()
	if st.Fixed || st.Limit != 4 || st.MaxLimit != 4 || st.Disks != 1 || st.Counts.Fixed != 1 || st.Counts.Lower != 1 {
		t.Fatalf("state = %+v", st)
	}
}

// TestLimitsClamped: limits are checked where they are decoded; the
// controller keeps valid ones as they are and clamps the rest to a defined
// value instead of failing.
func TestLimitsClamped(t *testing.T) {
	def := DefaultLimits()
	tests := []struct {
		name string
		edit func(*Limits)
		want func(*Limits) // applied to the defaults; nil = the edit itself
	}{
		{name: "defaults", edit: func(*Limits) {}},
		{name: "fixed", edit: func(l *Limits) { l.MaxConcurrentOperations = 3 }},
		{name: "full band", edit: func(l *Limits) { l.UtilizationLow, l.UtilizationHigh = 0, 1 }},
		{name: "alpha 1", edit: func(l *Limits) { l.EMAAlpha = 1 }},
		{name: "interval 1ms", edit: func(l *Limits) { l.AdjustInterval = time.Millisecond }},
		{name: "negative max", edit: func(l *Limits) { l.MaxConcurrentOperations = -1 }, want: func(*Limits) {}},
		{name: "low equals high", edit: func(l *Limits) { l.UtilizationLow, l.UtilizationHigh = 0.7, 0.7 }, want: func(*Limits) {}},
		{name: "low above high", edit: func(l *Limits) { l.UtilizationLow, l.UtilizationHigh = 0.9, 0.5 }, want: func(*Limits) {}},
		{name: "low negative", edit: func(l *Limits) { l.UtilizationLow = -0.1 }, want: func(*Limits) {}},
		{name: "high above 1", edit: func(l *Limits) { l.UtilizationHigh = 1.5 }, want: func(*Limits) {}},
		{name: "high NaN", edit: func(l *Limits) { l.UtilizationHigh = math.NaN() }, want: func(*Limits) {}},
		{name: "alpha 0", edit: func(l *Limits) { l.EMAAlpha, l.AdjustInterval = 0, time.Second }, want: func(l *Limits) { l.AdjustInterval = time.Second }},
		{name: "alpha above 1", edit: func(l *Limits) { l.EMAAlpha = 1.01 }, want: func(*Limits) {}},
		{name: "interval 0", edit: func(l *Limits) { l.AdjustInterval = 0 }, want: func(*Limits) {}},
		{name: "interval negative", edit: func(l *Limits) { l.AdjustInterval, l.EMAAlpha = -time.Second, 1 }, want: func(l *Limits) { l.EMAAlpha = 1 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, want := def, def
			tt.edit(&l)
			if tt.want == nil {
				tt.edit(&want)
			} else {
				tt.want(&want)
			}
			c, _ := newController(t, 1, func(x *Limits) { x.MaxConcurrentOperations = 2 })
			c.SetLimits(l)
			if got := c.Limits(); got != want {
				t.Fatalf("SetLimits(%+v) applied %+v, want %+v", l, got, want)
			}
			if got := NewController(l, Options{}).Limits(); got != want {
				t.Fatalf("NewController(%+v) kept %+v, want %+v", l, got, want)
			}
		})
	}
}

// tput is a sample with jobs waiting, running jobs on average over a
// one-second interval, having processed mib MiB in all.
func tput(u, running, mib float64) Sample {
	return Sample{Utilization: u, Queued: 2, Running: int(running), Elapsed: time.Second,
		JobTime: time.Duration(running * float64(time.Second)), Bytes: int64(mib * (1 << 20))}
}

func TestControllerThroughput(t *testing.T) {
	alpha1 := func(l *Limits) { l.EMAAlpha = 1 }
	tests := []struct {
		name       string
		samples    []Sample
		want       []int
		wantReason string // in the decision of the second sample
	}{
		{
			// One job does 100 MiB/s; two do 110: the second job added
			// 10, less than half of 100.
			name:       "diminishing returns undo the raise and bar raising for 12 intervals",
			samples:    append([]Sample{tput(0.2, 1, 100), tput(0.3, 2, 110)}, repeat(tput(0.2, 1, 100), 13)...),
			want:       []int{2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2},
			wantReason: "diminishing returns: the raise to 2 added 10.0 MiB/s, less than half the throughput of the job it let in (50.0 MiB/s needed)",
		},
		{
			name:       "a raise that pays off is kept and the next one tried",
			samples:    []Sample{tput(0.2, 1, 100), tput(0.3, 2, 180), tput(0.4, 3, 250)},
			want:       []int{2, 3, 4},
			wantReason: "is below utilization_low",
		},
		{
			// The raise to 2 took utilisation from 50% to 95% and
			// throughput from 100 to 190 MiB/s: the device is parallel.
			name:       "a paid-off raise holds against high utilisation",
			samples:    []Sample{tput(0.5, 1, 100), tput(0.95, 2, 190), tput(0.95, 2, 190)},
			want:       []int{2, 2, 2},
			wantReason: "but the raise to 2 paid off in throughput (a parallel device)",
		},
		{
			name:       "without throughput the same series oscillates",
			samples:    []Sample{util(0.5), util(0.95), util(0.5), util(0.95)},
			want:       []int{2, 1, 2, 1},
			wantReason: "is above utilization_high",
		},
		{
			// The job count did not grow after the raise: no verdict.
			name:       "an unused slot gives no verdict",
			samples:    []Sample{tput(0.2, 1, 100), tput(0.2, 1, 50), tput(0.2, 1, 50)},
			want:       []int{2, 3, 4},
			wantReason: "is below utilization_low",
		},
		{
			name:       "bytes unknown give no verdict",
			samples:    []Sample{tput(0.2, 1, 100), {Utilization: 0.2, Queued: 2, Elapsed: time.Second, JobTime: 2 * time.Second, Bytes: -1}},
			want:       []int{2, 3},
			wantReason: "is below utilization_low",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := newController(t, 1, alpha1)
			if got := run(t, c, tt.samples...); !slices.Equal(got, tt.want) {
				t.Fatalf("limits = %v, want %v\n%s", got, tt.want, reasons(c))
			}
			if r := c.Decisions()[1].Reason; !strings.Contains(r, tt.wantReason) {
				t.Fatalf("second decision: %q, want it to contain %q", r, tt.wantReason)
			}
		})
	}
}

func reasons(c *Controller) string {
	var b strings.Builder
	for _, d := range c.Decisions() {
		b.WriteString(string(d.Kind) + " " + d.Reason + "\n")
	}
	return b.String()
}

func TestControllerRecords(t *testing.T) {
	l := DefaultLimits()
	l.EMAAlpha = 1
	c := NewController(l, Options{Disks: 1, History: 3})
	at := func(i int) time.Time { return time.Unix(int64(i), 0) }
	us := []float64{0.1, 0.1, 0.7, 0.9, 0.1}
	for i, u := range us {
		s := util(u)
		s.At, s.Device = at(i), "vda"
		c.Step(s)
	}
	got := c.Decisions()
	want := []Decision{
		{At: at(2), Raw: 0.7, Smoothed: 0.7, Device: "vda", Old: 3, New: 3, Kind: Hold},
		{At: at(3), Raw: 0.9, Smoothed: 0.9, Device: "vda", Old: 3, New: 2, Kind: Lower},
		{At: at(4), Raw: 0.1, Smoothed: 0.1, Device: "vda", Old: 2, New: 3, Kind: Raise},
	}
	if len(got) != len(want) {
		t.Fatalf("%d decisions kept, want %d", len(got), len(want))
	}
	for i := range want {
		g := got[i]
		g.Reason = ""
		if g != want[i] {
			t.Errorf("decision %d = %+v, want %+v", i, g, want[i])
		}
		if got[i].Reason == "" {
			t.Errorf("decision %d has no reason", i)
		}
	}
	if st := c.State(); st.Counts != (Counts{Raise: 3, Lower: 1, Hold: 1}) || st.Raw != 0.1 || st.Limit != 3 {
		t.Fatalf("state = %+v", st)
	}
}
