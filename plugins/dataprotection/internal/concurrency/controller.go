package concurrency

import (
	"fmt"
	"math"
	"sync"
	"time"
)

// Limits are the live limits of the controller (subsystems.dataprotection
// limits in the configuration).
//
// Precondition: the caller checks limits where they are decoded, with a
// message naming the key (protection.Limits.Validate and the field rules of
// the limits decode). The controller does not check them a second time: it
// only clamps values out of the ranges below (see clamped), so that a
// caller that skipped the check gets a defined controller, not a busy loop
// or an undefined average.
type Limits struct {
	// MaxConcurrentOperations > 0 fixes the job limit; 0 adapts it.
	MaxConcurrentOperations int
	// UtilizationLow and UtilizationHigh bound the band in which the
	// limit holds: below low it rises, above high it falls. 0 <= low <
	// high <= 1.
	UtilizationLow, UtilizationHigh float64
	// EMAAlpha weighs the newest utilisation in the moving average:
	// 0 < alpha <= 1 (1: no smoothing).
	EMAAlpha float64
	// AdjustInterval is the time between two decisions; > 0.
	AdjustInterval time.Duration
}

// DefaultLimits are the limits of config/dw.yaml.
func DefaultLimits() Limits {
	return Limits{UtilizationLow: 0.60, UtilizationHigh: 0.80, EMAAlpha: 0.3, AdjustInterval: 5 * time.Second}
}

// clamped returns l with each value outside its documented range replaced:
// a negative max_concurrent_operations by 0 (adaptive), a band that is not
// 0 <= low < high <= 1 (NaN included), an alpha outside (0, 1] and a
// non-positive interval by their defaults. Valid limits come back as they
// are.
func (l Limits) clamped() Limits {
	def := DefaultLimits()
	l.MaxConcurrentOperations = max(l.MaxConcurrentOperations, 0)
	if !(l.UtilizationLow >= 0 && l.UtilizationLow < l.UtilizationHigh && l.UtilizationHigh <= 1) {
		l.UtilizationLow, l.UtilizationHigh = def.UtilizationLow, def.UtilizationHigh
	}
	if !(l.EMAAlpha > 0 && l.EMAAlpha <= 1) {
		l.EMAAlpha = def.EMAAlpha
	}
	if l.AdjustInterval <= 0 {
		l.AdjustInterval = def.AdjustInterval
	}
	return l
}

// Sample is what one adjust interval measured. The controller reads
// nothing itself: Run fills samples from /proc/diskstats and the Limiter,
// tests script them.
type Sample struct {
	// At is the end of the interval (recorded in the decision).
	At time.Time
	// Elapsed is the interval's length; 0 disables the throughput signal.
	Elapsed time.Duration
	// Utilization is the raw utilisation of the busiest watched device,
	// 0 to 1 (larger values count as 1).
	Utilization float64
	// Device is that device's name and Latency its mean request latency
	// (recorded, not decided on).
	Device  string
	Latency time.Duration
	// Err, when set, says the utilisation could not be measured: the
	// limit holds and the average is left as it was.
	Err error
	// Running and Queued are the jobs holding a slot and waiting for one
	// at At.
	Running, Queued int
	// Bytes is what the jobs processed during the interval, and JobTime
	// the running time of all jobs summed (JobTime / Elapsed is the mean
	// number of jobs running). Bytes < 0 or JobTime 0 disables the
	// throughput signal.
	Bytes   int64
	JobTime time.Duration
}

// Kind is the kind of a decision.
type Kind string

// The kinds of decisions.
const (
	Raise Kind = "raise"
	Lower Kind = "lower"
	Hold  Kind = "hold"
	// Fixed: max_concurrent_operations sets the limit.
	Fixed Kind = "fixed"
)

// Decision is one change (or not) of the limit, and why.
type Decision struct {
	At time.Time
	// Raw and Smoothed are the utilisation measured and its moving
	// average; Device the busiest device.
	Raw, Smoothed float64
	Device        string
	// Throughput is the jobs' bytes per second over the interval; 0 when
	// unknown.
	Throughput float64
	Old, New   int
	Kind       Kind
	// Reason says why, in one sentence.
	Reason string
}

// Counts are the decisions taken, by kind.
type Counts struct {
	Raise, Lower, Hold, Fixed uint64
}

// State is the controller's state for metrics.
type State struct {
	Limit int
	// MaxLimit is the upper bound in adaptive mode: 4 × the disks (at
	// least 4).
	MaxLimit int
	Disks    int
	Fixed    bool
	// Raw and Smoothed are the last utilisation measured and its average.
	Raw, Smoothed float64
	Counts        Counts
}

// Options configure a Controller.
type Options struct {
	// Disks is the number of distinct whole disks watched; the adaptive
	// limit stays within 1 and 4 × max(Disks, 1).
	Disks int
	// History is how many decisions Decisions keeps (default 64).
	History int
	// OnLimit, when set, is called with the new limit whenever it changes,
	// with the controller's lock held so that calls arrive in order: it
	// must not call back into the controller (Limiter.SetLimit fits).
	OnLimit func(limit int)
	// Now stamps decisions taken outside Step (live limit changes);
	// default time.Now.
	Now func() time.Time
}

// Tuning of the throughput signal (see the package doc).
const (
	// marginalGain is the share of a running job's throughput that one
	// more job must add for a raise to pay off.
	marginalGain = 0.5
	// memorySteps is how many intervals a verdict on a raise holds: a
	// failed raise bars raising past its level, a paid one bars lowering
	// under it for utilisation alone.
	memorySteps = 12
	// usedSlot is how much the mean running job count must grow after a
	// raise for the raise to be judged (otherwise no job used the slot).
	usedSlot = 0.5
)

// raiseCheck is a raise waiting for its verdict: the interval before it.
type raiseCheck struct {
	from        int
	throughput  float64 // bytes per second, all jobs
	perJob      float64 // bytes per job-second
	concurrency float64 // mean running jobs
}

// Controller adapts the job limit to the disks' utilisation, with job
// throughput as a second signal. Safe for concurrent use.
type Controller struct {
	mu       sync.Mutex
	limits   Limits
	disks    int
	limit    int
	raw      float64
	smoothed float64
	measured bool // smoothed holds a value
	counts   Counts
	history  []Decision // ring buffer
	next     int        // where the next decision goes
	filled   bool
	onLimit  func(int)
	now      func() time.Time
	changed  chan struct{} // wakes Run when the limits change

	check        *raiseCheck
	ceiling      int // no raise past it while ceilingSteps > 0
	ceilingSteps int
	floor        int // no lowering for utilisation under it while floorSteps > 0
	floorSteps   int
}

// NewController returns a controller with limits l (checked by the caller;
// see Limits). Its limit starts at max_concurrent_operations when fixed,
// else at 1.
func NewController(l Limits, o Options) *Controller {
	l = l.clamped()
	if o.History <= 0 {
		o.History = 64
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	c := &Controller{
		limits:  l,
		disks:   max(o.Disks, 0),
		limit:   1,
		history: make([]Decision, o.History),
		onLimit: o.OnLimit,
		now:     o.Now,
		changed: make(chan struct{}, 1),
	}
	if l.MaxConcurrentOperations > 0 {
		c.limit = l.MaxConcurrentOperations
	}
	return c
}

// Limit is the current job limit.
func (c *Controller) Limit() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.limit
}

// Limits are the current limits.
func (c *Controller) Limits() Limits {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.limits
}

// State returns the state for metrics.
func (c *Controller) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return State{
		Limit: c.limit, MaxLimit: c.maxLimit(), Disks: c.disks,
		Fixed: c.limits.MaxConcurrentOperations > 0,
		Raw:   c.raw, Smoothed: c.smoothed, Counts: c.counts,
	}
}

// Decisions returns the last decisions, oldest first.
func (c *Controller) Decisions() []Decision {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Decision
	if c.filled {
		out = append(out, c.history[c.next:]...)
	}
	return append(out, c.history[:c.next]...)
}

// SetLimits changes the limits live (checked by the caller; see Limits).
// Fixing the limit applies at once; returning to adaptive mode keeps the
// current limit, within the bounds, and the measurements so far. A changed
// interval takes effect at once in Run.
func (c *Controller) SetLimits(l Limits) {
	l = l.clamped()
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.limits
	c.limits = l
	if l.MaxConcurrentOperations != old.MaxConcurrentOperations || l.UtilizationLow != old.UtilizationLow || l.UtilizationHigh != old.UtilizationHigh {
		// A new regime: verdicts on raises made under the old one do not
		// carry over.
		c.check, c.ceilingSteps, c.floorSteps = nil, 0, 0
	}
	switch {
	case l.MaxConcurrentOperations > 0 && l.MaxConcurrentOperations != c.limit:
		c.record(Decision{At: c.now(), Raw: c.raw, Smoothed: c.smoothed, Kind: Fixed, New: l.MaxConcurrentOperations,
			Reason: fmt.Sprintf("max_concurrent_operations set to %d", l.MaxConcurrentOperations)})
	case l.MaxConcurrentOperations == 0 && c.limit > c.maxLimit():
		c.record(Decision{At: c.now(), Raw: c.raw, Smoothed: c.smoothed, Kind: Lower, New: c.maxLimit(),
			Reason: fmt.Sprintf("adaptive again (max_concurrent_operations 0): limit brought to the upper bound %s", c.boundText())})
	}
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

func (c *Controller) maxLimit() int { return 4 * max(c.disks, 1) }

func (c *Controller) boundText() string {
	return fmt.Sprintf("%d (4 × %d disks)", c.maxLimit(), max(c.disks, 1))
}

// record completes d with the current state, applies its limit, counts it
// and keeps it. c.mu must be held.
func (c *Controller) record(d Decision) Decision {
	d.Old = c.limit
	switch d.Kind {
	case Raise:
		c.counts.Raise++
	case Lower:
		c.counts.Lower++
	case Hold:
		c.counts.Hold++
	case Fixed:
		c.counts.Fixed++
	}
	c.history[c.next] = d
	c.next++
	if c.next == len(c.history) {
		c.next, c.filled = 0, true
	}
	if d.New != c.limit {
		c.limit = d.New
		if c.onLimit != nil {
			c.onLimit(d.New)
		}
	}
	return d
}

// Step takes one interval's sample, decides and returns the decision (which
// is recorded and, when the limit changed, passed to OnLimit).
func (c *Controller) Step(s Sample) Decision {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := Decision{At: s.At, Device: s.Device}
	if s.Err == nil {
		raw := s.Utilization
		if math.IsNaN(raw) || raw < 0 {
			raw = 0
		}
		c.raw = min(raw, 1)
		if c.measured {
			c.smoothed = c.limits.EMAAlpha*c.raw + (1-c.limits.EMAAlpha)*c.smoothed
		} else {
			c.smoothed, c.measured = c.raw, true
		}
	}
	d.Raw, d.Smoothed = c.raw, c.smoothed
	d.Kind, d.New, d.Reason = c.decide(s, &d)
	return c.record(d)
}

// decide is the decision rule (see the package doc). c.mu must be held.
func (c *Controller) decide(s Sample, d *Decision) (Kind, int, string) {
	l := c.limits
	if l.MaxConcurrentOperations > 0 {
		c.check = nil
		return Fixed, l.MaxConcurrentOperations, fmt.Sprintf("fixed by max_concurrent_operations %d", l.MaxConcurrentOperations)
	}
	// A bar set by a verdict applies to the memorySteps intervals after it.
	ceilingOn, floorOn := c.ceilingSteps > 0, c.floorSteps > 0
	if ceilingOn {
		c.ceilingSteps--
	}
	if floorOn {
		c.floorSteps--
	}
	known := s.Elapsed > 0 && s.JobTime > 0 && s.Bytes >= 0
	var thr, perJob, conc float64
	if known {
		thr = float64(s.Bytes) / s.Elapsed.Seconds()
		perJob = float64(s.Bytes) / s.JobTime.Seconds()
		conc = s.JobTime.Seconds() / s.Elapsed.Seconds()
		d.Throughput = thr
	}
	check := c.check
	c.check = nil
	if s.Err != nil {
		return Hold, c.limit, fmt.Sprintf("utilisation not measured (%v): holding", s.Err)
	}

	limit, maxLimit := c.limit, c.maxLimit()
	if limit > maxLimit {
		return Lower, maxLimit, fmt.Sprintf("above the upper bound %s", c.boundText())
	}
	// The verdict on the last raise, when a job used the new slot.
	if check != nil && known && check.from == limit-1 && conc >= check.concurrency+usedSlot {
		need := marginalGain * check.perJob * (conc - check.concurrency)
		gain := thr - check.throughput
		if gain < need {
			c.ceiling, c.ceilingSteps = check.from, memorySteps
			return Lower, check.from, fmt.Sprintf(
				"diminishing returns: the raise to %d added %s/s, less than half the throughput of the job it let in (%s/s needed): back to %d, no raise past it for %d intervals",
				limit, rate(gain), rate(need), check.from, memorySteps)
		}
		c.floor, c.floorSteps, floorOn = limit, memorySteps, true
	}
	sm := c.smoothed
	switch {
	case sm > l.UtilizationHigh:
		if floorOn && limit <= c.floor {
			return Hold, limit, fmt.Sprintf(
				"utilisation %.0f%% is above utilization_high %.0f%%, but the raise to %d paid off in throughput (a parallel device): holding",
				100*sm, 100*l.UtilizationHigh, c.floor)
		}
		if limit <= 1 {
			return Hold, 1, fmt.Sprintf("utilisation %.0f%% is above utilization_high %.0f%%, limit at the lower bound 1", 100*sm, 100*l.UtilizationHigh)
		}
		return Lower, limit - 1, fmt.Sprintf("utilisation %.0f%% is above utilization_high %.0f%%", 100*sm, 100*l.UtilizationHigh)
	case sm < l.UtilizationLow:
		switch {
		case s.Queued == 0:
			return Hold, limit, fmt.Sprintf("utilisation %.0f%% is below utilization_low %.0f%%, but no job waits for a slot", 100*sm, 100*l.UtilizationLow)
		case limit >= maxLimit:
			return Hold, limit, fmt.Sprintf("utilisation %.0f%% is below utilization_low %.0f%%, limit at the upper bound %s", 100*sm, 100*l.UtilizationLow, c.boundText())
		case ceilingOn && limit >= c.ceiling:
			return Hold, limit, fmt.Sprintf("utilisation %.0f%% is below utilization_low %.0f%%, but raising past %d gave diminishing returns (barred %d more intervals)",
				100*sm, 100*l.UtilizationLow, c.ceiling, c.ceilingSteps)
		}
		if known {
			c.check = &raiseCheck{from: limit, throughput: thr, perJob: perJob, concurrency: conc}
		}
		return Raise, limit + 1, fmt.Sprintf("utilisation %.0f%% is below utilization_low %.0f%% and %d jobs wait", 100*sm, 100*l.UtilizationLow, s.Queued)
	}
	return Hold, limit, fmt.Sprintf("utilisation %.0f%% is between utilization_low %.0f%% and utilization_high %.0f%%", 100*sm, 100*l.UtilizationLow, 100*l.UtilizationHigh)
}

// rate formats bytes per second in binary units.
func rate(b float64) string {
	const unit = 1024
	neg := ""
	if b < 0 {
		neg, b = "-", -b
	}
	if b < unit {
		return fmt.Sprintf("%s%.0f B", neg, b)
	}
	exp := 0
	for n := b / unit; n >= unit && exp < 4; n /= unit {
		exp++
	}
	return fmt.Sprintf("%s%.1f %ciB", neg, b/math.Pow(unit, float64(exp+1)), "KMGTP"[exp])
}
