package concurrency

import (
	"context"
	"errors"
	"time"
)

// Sampler reads /proc/diskstats and measures the load of the watched disks
// between two readings. Not safe for concurrent use: Run owns it.
type Sampler struct {
	path    string
	devices []string
	prev    map[string]DiskStat
	prevAt  time.Time
}

// NewSampler returns a sampler of the diskstats file at path (DiskstatsPath
// when empty) watching devices (Watch.Disks).
func NewSampler(path string, devices []string) *Sampler {
	if path == "" {
		path = DiskstatsPath
	}
	return &Sampler{path: path, devices: devices}
}

// Sample reads the counters at now and returns the load since the previous
// reading; ok is false on the first reading (and after a failed one), which
// only sets the baseline.
func (s *Sampler) Sample(now time.Time) (l Load, ok bool, err error) {
	cur, err := ReadDiskstats(s.path)
	if err != nil {
		s.prev = nil
		return Load{}, false, err
	}
	prev, prevAt := s.prev, s.prevAt
	s.prev, s.prevAt = cur, now
	if prev == nil {
		return Load{}, false, nil
	}
	return Measure(prev, cur, now.Sub(prevAt), s.devices), true, nil
}

// Inputs are where Run takes its samples from.
type Inputs struct {
	// Sampler measures the disks; nil: no utilisation (always 0).
	Sampler *Sampler
	// Jobs gives the running and queued jobs and their running time; nil:
	// none.
	Jobs *Limiter
	// Bytes returns the bytes processed by all jobs so far (a counter that
	// only grows); nil disables the throughput signal.
	Bytes func() int64
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Run takes a sample every adjust interval and steps the controller with
// it, until ctx ends. It runs in the caller's goroutine and starts none. A
// changed adjust_interval takes effect at once: the next sample comes one
// new interval after the change.
func (c *Controller) Run(ctx context.Context, in Inputs) {
	if in.Now == nil {
		in.Now = time.Now
	}
	var bytes, prevBytes int64
	var jobTime, prevJobTime time.Duration
	read := func(now time.Time) (Load, bool, error) {
		if in.Bytes != nil {
			bytes = in.Bytes()
		}
		if in.Jobs != nil {
			jobTime = in.Jobs.JobTime()
		}
		if in.Sampler == nil {
			return Load{}, true, nil
		}
		return in.Sampler.Sample(now)
	}
	prevAt := in.Now()
	read(prevAt) // the baseline; a failure shows in the next sample
	prevBytes, prevJobTime = bytes, jobTime

	interval := c.Limits().AdjustInterval
	timer := time.NewTimer(interval)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.changed:
			if iv := c.Limits().AdjustInterval; iv != interval {
				interval = iv
				timer.Reset(interval)
			}
			continue
		case <-timer.C:
		}
		now := in.Now()
		load, ok, err := read(now)
		s := Sample{At: now, Elapsed: now.Sub(prevAt), Err: err,
			Utilization: load.Utilization, Device: load.Device, Latency: load.Latency,
			Bytes: bytes - prevBytes, JobTime: jobTime - prevJobTime}
		if err == nil && !ok {
			s.Err = errBaseline
		}
		if in.Bytes == nil {
			s.Bytes = -1
		}
		if in.Jobs != nil {
			s.Running, s.Queued = in.Jobs.Stats()
		}
		prevAt, prevBytes, prevJobTime = now, bytes, jobTime
		c.Step(s)
		interval = c.Limits().AdjustInterval
		timer.Reset(interval)
	}
}

// errBaseline is the Err of a sample taken right after a failed reading:
// it only sets the new baseline.
var errBaseline = errors.New("first reading after a failed one: baseline only")
