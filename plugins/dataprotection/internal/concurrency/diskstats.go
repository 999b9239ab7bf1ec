package concurrency

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// DiskstatsPath is where the kernel publishes block device counters.
const DiskstatsPath = "/proc/diskstats"

// DiskStat is one line of /proc/diskstats: the counters of one block
// device, cumulative since boot. Times are in milliseconds.
type DiskStat struct {
	Major, Minor uint32
	Name         string
	// Reads and Writes count completed requests; ReadMs and WriteMs the
	// time they took.
	Reads, ReadMs   uint64
	Writes, WriteMs uint64
	// InFlight is the number of requests in flight now (not cumulative).
	InFlight uint64
	// IOMs is the time the device had at least one request in flight
	// (field 13 of the line, the 10th after the name): its growth over
	// wall time is the utilisation.
	IOMs uint64
	// WeightedMs is the time requests spent in flight summed over
	// requests (field 14): its growth over the requests completed is the
	// mean latency of a request, queueing included.
	WeightedMs uint64
	// Discards and Flushes count completed discard and flush requests
	// (0 on kernels older than 4.18 and 5.5, whose lines are shorter).
	Discards, Flushes uint64
}

// Completed is the number of requests the device completed, of every kind.
func (d DiskStat) Completed() uint64 { return d.Reads + d.Writes + d.Discards + d.Flushes }

// Bounds of a diskstats reading: a line is about 150 bytes, and a machine
// has at most a few thousand block devices.
const (
	maxDiskstatsLine  = 4096
	maxDiskstatsLines = 1 << 16
	minDiskstatsField = 14 // major, minor, name and the 11 counters every kernel since 2.6 writes
)

// ParseDiskstats reads /proc/diskstats content: one line per device, by
// name. A line with fewer than 14 fields, a counter that is not a decimal
// number or a line longer than 4 KiB is an error naming the line.
func ParseDiskstats(r io.Reader) (map[string]DiskStat, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 512), maxDiskstatsLine)
	stats := make(map[string]DiskStat)
	line := 0
	for sc.Scan() {
		line++
		if line > maxDiskstatsLines {
			return nil, fmt.Errorf("parse diskstats: more than %d lines", maxDiskstatsLines)
		}
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		d, err := parseDiskstatsLine(fields)
		if err != nil {
			return nil, fmt.Errorf("parse diskstats line %d: %w", line, err)
		}
		stats[d.Name] = d
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("parse diskstats line %d: %w", line+1, err)
	}
	return stats, nil
}

func parseDiskstatsLine(f []string) (DiskStat, error) {
	if len(f) < minDiskstatsField {
		return DiskStat{}, fmt.Errorf("%d fields, want at least %d", len(f), minDiskstatsField)
	}
	major, err := strconv.ParseUint(f[0], 10, 32)
	if err != nil {
		return DiskStat{}, fmt.Errorf("major number: %w", err)
	}
	minor, err := strconv.ParseUint(f[1], 10, 32)
	if err != nil {
		return DiskStat{}, fmt.Errorf("minor number of %d: %w", major, err)
	}
	// Every counter the line has up to the flush time (field 20) is
	// checked, the unused ones too (merges, sectors), so that a garbled
	// line is refused rather than half read.
	var v [17]uint64
	for i := 3; i < min(len(f), 20); i++ {
		if v[i-3], err = strconv.ParseUint(f[i], 10, 64); err != nil {
			return DiskStat{}, fmt.Errorf("field %d of %s: %w", i+1, f[2], err)
		}
	}
	return DiskStat{
		Major: uint32(major), Minor: uint32(minor), Name: f[2],
		Reads: v[0], ReadMs: v[3],
		Writes: v[4], WriteMs: v[7],
		InFlight: v[8], IOMs: v[9], WeightedMs: v[10],
		Discards: v[11], // 0 when the line stops before it
		Flushes:  v[15],
	}, nil
}

// ReadDiskstats reads and parses the diskstats file at path.
func ReadDiskstats(path string) (map[string]DiskStat, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read diskstats: %w", err)
	}
	defer f.Close()
	stats, err := ParseDiskstats(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return stats, nil
}

// Load is what two diskstats readings say about the busiest watched device.
type Load struct {
	// Utilization is the share of the interval the busiest device had a
	// request in flight, 0 to 1 (capped: kernels before 2024 could count
	// more than the wall time).
	Utilization float64
	// Device is the busiest device's name; "" when none was measured.
	Device string
	// Latency is the mean time a request of that device spent in flight
	// over the interval, queueing included; 0 when it completed none.
	Latency time.Duration
}

// Measure computes the load of the busiest of devices between two readings
// elapsed apart. A device missing from either reading, or whose counters
// went backwards (it was removed and added again), is skipped.
func Measure(prev, cur map[string]DiskStat, elapsed time.Duration, devices []string) Load {
	var l Load
	wallMs := float64(elapsed) / float64(time.Millisecond)
	if wallMs <= 0 {
		return l
	}
	for _, name := range devices {
		p, ok1 := prev[name]
		c, ok2 := cur[name]
		if !ok1 || !ok2 || c.IOMs < p.IOMs || c.WeightedMs < p.WeightedMs || c.Completed() < p.Completed() {
			continue
		}
		u := min(float64(c.IOMs-p.IOMs)/wallMs, 1)
		if l.Device != "" && u <= l.Utilization {
			continue
		}
		l.Utilization, l.Device, l.Latency = u, name, 0
		if n := c.Completed() - p.Completed(); n > 0 {
			l.Latency = time.Duration(float64(c.WeightedMs-p.WeightedMs) / float64(n) * float64(time.Millisecond))
		}
	}
	return l
}
