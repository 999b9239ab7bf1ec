package concurrency

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// writeDiskstats replaces the diskstats file at path atomically with one
// vda line whose ms doing I/O is ioMs.
func writeDiskstats(t testing.TB, path string, ioMs uint64) {
	t.Helper()
	line := formatDiskstats(map[string]DiskStat{"vda": {Major: 254, Name: "vda", Reads: ioMs, IOMs: ioMs, WeightedMs: 2 * ioMs}})
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestSampler(t *testing.T) {
	path := filepath.Join(t.TempDir(), "diskstats")
	writeDiskstats(t, path, 1000)
	s := NewSampler(path, []string{"vda"})
	t0 := time.Unix(100, 0)
	if _, ok, err := s.Sample(t0); ok || err != nil {
		t.Fatalf("first sample: ok %v, err %v; want a baseline", ok, err)
	}
	writeDiskstats(t, path, 1250)
	l, ok, err := s.Sample(t0.Add(time.Second))
	if !ok || err != nil {
		t.Fatalf("second sample: ok %v, err %v", ok, err)
	}
	if want := (Load{Utilization: 0.25, Device: "vda", Latency: 2 * time.Millisecond}); l != want {
		t.Fatalf("load = %+v, want %+v", l, want)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.Sample(t0.Add(2 * time.Second)); ok || err == nil {
		t.Fatalf("sample of a missing file: ok %v, err %v; want an error", ok, err)
	}
	writeDiskstats(t, path, 5000)
	if _, ok, err := s.Sample(t0.Add(3 * time.Second)); ok || err != nil {
		t.Fatalf("sample after a failure: ok %v, err %v; want a new baseline", ok, err)
	}
}

// runController starts c.Run in a goroutine and returns the function that
// stops it and waits for it to return.
func runController(t testing.TB, c *Controller, in Inputs) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Run(ctx, in)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(patience):
				t.Fatal("Run did not return after its context ended")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// TestRun drives the controller over a real (idle) diskstats file and a
// limiter with waiting jobs whose throughput scales: the limit climbs to the upper bound and each
// new limit reaches the limiter.
func TestRun(t *testing.T) {
	var wg sync.WaitGroup
	defer wg.Wait()
	path := filepath.Join(t.TempDir(), "diskstats")
	writeDiskstats(t, path, 1000)
	lim := NewLimiter(1)
	l := DefaultLimits()
	l.AdjustInterval = time.Millisecond
	c := NewController(l, Options{Disks: 1, OnLimit: lim.SetLimit})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var jobs []*job
	for _, id := range []string{"a", "b", "c", "d", "e"} {
		jobs = append(jobs, startJob(t, ctx, lim, id, &wg))
	}
	// Every running job processes 100 MiB/s: each raise pays off.
	bytes := func() int64 { return int64(lim.JobTime().Seconds() * 100 * (1 << 20)) }
	stop := runController(t, c, Inputs{Sampler: NewSampler(path, []string{"vda"}), Jobs: lim, Bytes: bytes})
	waitFor(t, "the limiter to run 4 jobs", func() bool { running, _ := lim.Stats(); return running == 4 })
	for _, j := range jobs[:4] {
		j.waitStarted(t)
	}
	stop()
	stats(t, lim, 4, 1)
	ds := c.Decisions()
	for _, d := range ds {
		if d.Kind == Lower {
			t.Fatalf("lowered although every job added its throughput: %+v", d)
		}
	}
	if len(ds) < 3 || ds[0].Kind != Raise || ds[0].Device != "vda" || ds[0].Throughput <= 0 {
		t.Fatalf("decisions = %+v; want raises on vda with a throughput", ds)
	}
	cancel() // e gives up waiting
	for _, j := range jobs[:4] {
		j.release()
	}
}

// TestRunIntervalChange starts Run with an interval of an hour and
// shortens it: decisions follow at once.
func TestRunIntervalChange(t *testing.T) {
	l := DefaultLimits()
	l.AdjustInterval = time.Hour
	c := NewController(l, Options{})
	runController(t, c, Inputs{Sampler: NewSampler(filepath.Join(t.TempDir(), "missing"), nil)})
	l.AdjustInterval = time.Millisecond
	c.SetLimits(l)
	waitFor(t, "decisions at the new interval", func() bool { return len(c.Decisions()) >= 3 })
	d := c.Decisions()[0]
	if d.Kind != Hold || !strings.Contains(d.Reason, "utilisation not measured") {
		t.Fatalf("decision over a missing diskstats file = %+v, want a hold saying it was not measured", d)
	}
}
