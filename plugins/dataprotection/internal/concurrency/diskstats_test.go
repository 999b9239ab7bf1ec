package concurrency

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A line of kernel 5.5 and later (17 counters), as on these machines.
const lineVda = "254       0 vda 1472656 157147 76445218 1497436 2270712 746992 785954608 3533405 0 968116 5615368 592638 25 427758792 197222 678079 387304"

func TestParseDiskstats(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    map[string]DiskStat
		wantErr string
	}{
		{
			name: "kernel 5.5 line with discards and flushes",
			in:   lineVda + "\n",
			want: map[string]DiskStat{"vda": {Major: 254, Minor: 0, Name: "vda",
				Reads: 1472656, ReadMs: 1497436, Writes: 2270712, WriteMs: 3533405,
				InFlight: 0, IOMs: 968116, WeightedMs: 5615368, Discards: 592638, Flushes: 678079}},
		},
		{
			name: "kernel 4.18 line with discards, no flushes",
			in:   "8 0 sda 10 0 80 5 20 0 160 7 1 40 12 3 0 24 2\n",
			want: map[string]DiskStat{"sda": {Major: 8, Name: "sda", Reads: 10, ReadMs: 5, Writes: 20, WriteMs: 7,
				InFlight: 1, IOMs: 40, WeightedMs: 12, Discards: 3}},
		},
		{
			name: "old line with the 11 classic counters, blank lines and several devices",
			in:   "\n   8 0 sda 1 2 3 4 5 6 7 8 9 10 11\n\n 8 1 sda1 0 0 0 0 0 0 0 0 0 0 0\n",
			want: map[string]DiskStat{
				"sda":  {Major: 8, Name: "sda", Reads: 1, ReadMs: 4, Writes: 5, WriteMs: 8, InFlight: 9, IOMs: 10, WeightedMs: 11},
				"sda1": {Major: 8, Minor: 1, Name: "sda1"},
			},
		},
		{name: "empty", in: "", want: map[string]DiskStat{}},
		{name: "too few fields", in: "8 0 sda 1 2 3 4 5 6 7 8 9 10\n", wantErr: "line 1: 13 fields, want at least 14"},
		{name: "counter not a number", in: lineVda + "\n8 0 sda 1 2 x 4 5 6 7 8 9 10 11\n", wantErr: "line 2: field 6 of sda"},
		{name: "negative counter", in: "8 0 sda 1 2 3 4 5 6 7 8 9 -10 11\n", wantErr: "field 13 of sda"},
		{name: "unused counter garbled", in: "8 0 sda 1 2 3 4 5 6 7 8 9 10 11 0 0 0 0 0 z\n", wantErr: "field 20 of sda"},
		{name: "major out of range", in: "4294967296 0 sda 1 2 3 4 5 6 7 8 9 10 11\n", wantErr: "major number"},
		{name: "minor not a number", in: "8 a sda 1 2 3 4 5 6 7 8 9 10 11\n", wantErr: "minor number"},
		{name: "line too long", in: "8 0 sda" + strings.Repeat(" 1", 3000) + "\n", wantErr: "line 1: bufio.Scanner: token too long"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseDiskstats(strings.NewReader(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseDiskstats error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseDiskstats: %v", err)
			}
			if !maps.Equal(got, tt.want) {
				t.Fatalf("ParseDiskstats =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

func TestReadDiskstatsReal(t *testing.T) {
	stats, err := ReadDiskstats(DiskstatsPath)
	if errors.Is(err, fs.ErrNotExist) {
		t.Skip("no /proc/diskstats")
	}
	if err != nil {
		t.Fatalf("ReadDiskstats(%s): %v", DiskstatsPath, err)
	}
	for name, d := range stats {
		if name != d.Name || name == "" {
			t.Fatalf("entry %q holds device %q", name, d.Name)
		}
	}
}

func TestReadDiskstatsMissing(t *testing.T) {
	path := t.TempDir() + "/diskstats"
	if _, err := ReadDiskstats(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("ReadDiskstats of a missing file: %v, want an error naming %s", err, path)
	}
}

func TestMeasure(t *testing.T) {
	dev := func(name string, ioMs, weighted, reads, writes uint64) DiskStat {
		return DiskStat{Name: name, IOMs: ioMs, WeightedMs: weighted, Reads: reads, Writes: writes}
	}
	prev := map[string]DiskStat{
		"sda": dev("sda", 1000, 5000, 100, 100),
		"sdb": dev("sdb", 1000, 5000, 100, 100),
		"vda": dev("vda", 9000, 9000, 10, 10),
	}
	tests := []struct {
		name    string
		cur     map[string]DiskStat
		elapsed time.Duration
		devices []string
		want    Load
	}{
		{
			name:    "half busy, 4 ms per request",
			cur:     map[string]DiskStat{"sda": dev("sda", 1500, 5800, 150, 250)},
			elapsed: time.Second, devices: []string{"sda"},
			want: Load{Utilization: 0.5, Device: "sda", Latency: 4 * time.Millisecond},
		},
		{
			name: "the busiest device counts",
			cur: map[string]DiskStat{
				"sda": dev("sda", 1200, 5000, 100, 100),
				"sdb": dev("sdb", 1900, 5000, 100, 100),
			},
			elapsed: time.Second, devices: []string{"sda", "sdb"},
			want: Load{Utilization: 0.9, Device: "sdb"},
		},
		{
			name:    "over 100% is capped",
			cur:     map[string]DiskStat{"sda": dev("sda", 2500, 5000, 100, 100)},
			elapsed: time.Second, devices: []string{"sda"},
			want: Load{Utilization: 1, Device: "sda"},
		},
		{
			name:    "an unwatched device does not count",
			cur:     map[string]DiskStat{"sda": dev("sda", 1100, 5000, 100, 100), "sdb": dev("sdb", 2000, 5000, 100, 100)},
			elapsed: time.Second, devices: []string{"sda"},
			want: Load{Utilization: 0.1, Device: "sda"},
		},
		{
			name:    "counters gone backwards (device re-added) are skipped",
			cur:     map[string]DiskStat{"sda": dev("sda", 10, 10, 1, 1), "sdb": dev("sdb", 1300, 5000, 100, 100)},
			elapsed: time.Second, devices: []string{"sda", "sdb"},
			want: Load{Utilization: 0.3, Device: "sdb"},
		},
		{
			name:    "a device missing from a reading is skipped",
			cur:     map[string]DiskStat{"sdc": dev("sdc", 1300, 5000, 100, 100)},
			elapsed: time.Second, devices: []string{"sdc", "sda"},
			want: Load{},
		},
		{
			name:    "no elapsed time",
			cur:     map[string]DiskStat{"sda": dev("sda", 1500, 5000, 100, 100)},
			elapsed: 0, devices: []string{"sda"},
			want: Load{},
		},
		{
			name:    "an idle device is still named",
			cur:     map[string]DiskStat{"vda": dev("vda", 9000, 9000, 10, 10)},
			elapsed: 5 * time.Second, devices: []string{"vda"},
			want: Load{Device: "vda"},
		},
		{name: "no devices", cur: prev, elapsed: time.Second, want: Load{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Measure(prev, tt.cur, tt.elapsed, tt.devices); got != tt.want {
				t.Fatalf("Measure = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// formatDiskstats writes stats back in /proc/diskstats form (17 counters).
func formatDiskstats(stats map[string]DiskStat) string {
	var b strings.Builder
	for _, d := range stats {
		v := []uint64{d.Reads, 0, 0, d.ReadMs, d.Writes, 0, 0, d.WriteMs, d.InFlight, d.IOMs, d.WeightedMs, d.Discards, 0, 0, 0, d.Flushes, 0}
		fmt.Fprintf(&b, "%d %d %s", d.Major, d.Minor, d.Name)
		for _, x := range v {
			b.WriteString(" " + strconv.FormatUint(x, 10))
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// FuzzParseDiskstats checks that no input panics and that what parses
// survives a round trip through the file format.
func FuzzParseDiskstats(f *testing.F) {
	f.Add(lineVda + "\n")
	f.Add("8 0 sda 1 2 3 4 5 6 7 8 9 10 11\n8 1 sda1 0 0 0 0 0 0 0 0 0 0 0\n")
	f.Fuzz(func(t *testing.T, in string) {
		got, err := ParseDiskstats(strings.NewReader(in))
		if err != nil {
			return
		}
		for name, d := range got {
			if name == "" || name != d.Name || strings.ContainsAny(name, " \t\n") {
				t.Fatalf("entry %q holds device %q", name, d.Name)
			}
		}
		again, err := ParseDiskstats(strings.NewReader(formatDiskstats(got)))
		if err != nil {
			t.Fatalf("parse of the round trip: %v", err)
		}
		if !maps.Equal(got, again) {
			t.Fatalf("round trip changed the stats:\n%+v\n%+v", got, again)
		}
	})
}
