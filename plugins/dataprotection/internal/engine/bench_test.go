package engine

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/datawarehouse/dw/plugins/dataprotection/internal/repo"
)

var benchMB = flag.Int("engine.benchmb", 256, "size of BenchmarkBackup's data set in MiB")

// benchData generates the mixed data set: a few hundred small files in ten
// folders (random), medium files (half compressible text), and a few large
// ones (random and text). It returns the total bytes and the small files.
func benchData(b *testing.B, dir string, total int) (int64, []string) {
	b.Helper()
	var sum int64
	var small []string
	add := func(rel string, data []byte) {
		writeFile(b, filepath.Join(dir, rel), data, 0o644)
		sum += int64(len(data))
	}
	// ~10% small files, ~40% medium, ~50% large.
	nsmall := max(300, total/10/(32<<10))
	for i := range nsmall {
		rel := fmt.Sprintf("small/d%d/f%04d", i%10, i)
		add(rel, randBytes(uint64(i), 4<<10+(i*7919)%(60<<10)))
		small = append(small, rel)
	}
	medium := total * 4 / 10
	for i := 0; medium > 0; i++ {
		n := min(medium, 1<<20+(i*104729)%(3<<20))
		if i%2 == 0 {
			add(fmt.Sprintf("medium/m%03d.txt", i), textBytes(uint64(i), n))
		} else {
			add(fmt.Sprintf("medium/m%03d.bin", i), randBytes(uint64(1000+i), n))
		}
		medium -= n
	}
	// Large files are written 1 MiB at a time so that generating them does
	// not set the process's peak RSS.
	large := total - int(sum)
	for i := 0; large > 0; i++ {
		n := min(large, 48<<20)
		name := fmt.Sprintf("large/l%d.bin", i)
		gen := func(j int) []byte { return randBytes(uint64(2000+i*1000+j), 1<<20) }
		if i%2 == 1 {
			name = fmt.Sprintf("large/l%d.log", i)
			gen = func(j int) []byte { return textBytes(uint64(2000+i*1000+j), 1<<20) }
		}
		if err := os.MkdirAll(filepath.Join(dir, "large"), 0o755); err != nil {
			b.Fatal(err)
		}
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			b.Fatal(err)
		}
		for j := 0; j*(1<<20) < n; j++ {
			if _, err := f.Write(gen(j)[:min(1<<20, n-j*(1<<20))]); err != nil {
				b.Fatal(err)
			}
		}
		if err := f.Close(); err != nil {
			b.Fatal(err)
		}
		sum += int64(n)
		large -= n
	}
	stampTimes(b, dir, 1.6e18)
	return sum, small
}

func maxRSSMB() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Maxrss) / 1024 // KiB on Linux
}

func benchBackup(b *testing.B, r *repo.Repo, src string, o runOpts) *run {
	b.Helper()
	res := doBackup(b, context.Background(), r, src, o)
	if res.err != nil {
		b.Fatal(res.err)
	}
	return res
}

// BenchmarkBackup measures, on a generated mixed data set
// (-engine.benchmb): a full backup into an empty repository, an
// incremental of an unchanged source, an incremental after 1% of the small
// files changed, a restore, and a backup interrupted half way and resumed
// (the resumed run's time; resume-share is its share of a full backup's).
// maxrss-MB is the process's peak so far.
func BenchmarkBackup(b *testing.B) {
	src := b.TempDir()
	total, small := benchData(b, src, *benchMB<<20)
	b.Logf("data set: %d MiB in %d small files and medium and large ones", total>>20, len(small))
	var fullPerOp time.Duration

	b.Run("full", func(b *testing.B) {
		b.SetBytes(total)
		var elapsed time.Duration
		var stored int64
		for range b.N {
			b.StopTimer()
			r := openRepo(b, filepath.Join(b.TempDir(), "repo"))
			b.StartTimer()
			t0 := time.Now()
			benchBackup(b, r, src, runOpts{})
			elapsed += time.Since(t0)
			stored = r.Stats().PackBytes
		}
		fullPerOp = elapsed / time.Duration(b.N)
		b.ReportMetric(float64(stored)/(1<<20), "repo-MB")
		b.ReportMetric(maxRSSMB(), "maxrss-MB")
	})

	r := openRepo(b, filepath.Join(b.TempDir(), "repo"))
	base := benchBackup(b, r, src, runOpts{}).snap

	b.Run("incremental-unchanged", func(b *testing.B) {
		b.SetBytes(total)
		for range b.N {
			res := benchBackup(b, r, src, runOpts{kind: KindIncremental, parent: &base})
			if res.last.BytesRead != 0 {
				b.Fatalf("unchanged incremental read %d bytes", res.last.BytesRead)
			}
		}
		b.ReportMetric(maxRSSMB(), "maxrss-MB")
	})

	b.Run("incremental-1pct", func(b *testing.B) {
		b.SetBytes(total)
		parent := base
		for i := range b.N {
			b.StopTimer()
			for j := 0; j < len(small); j += 100 {
				p := filepath.Join(src, small[(j+i)%len(small)])
				writeFile(b, p, randBytes(uint64(1e6+i*1000+j), 8<<10), 0o644)
				setMTime(b, p, 1.7e18+int64(i*1000+j))
			}
			b.StartTimer()
			parent = benchBackup(b, r, src, runOpts{kind: KindIncremental, parent: &parent}).snap
		}
		b.ReportMetric(maxRSSMB(), "maxrss-MB")
	})

	b.Run("restore", func(b *testing.B) {
		b.SetBytes(total)
		for range b.N {
			b.StopTimer()
			target := filepath.Join(b.TempDir(), "restore")
			b.StartTimer()
			if err := restoreInto(context.Background(), b, r, base.ID, target, Options{}); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(maxRSSMB(), "maxrss-MB")
	})

	b.Run("resume-half", func(b *testing.B) {
		b.SetBytes(total)
		var elapsed time.Duration
		for range b.N {
			b.StopTimer()
			r := openRepo(b, filepath.Join(b.TempDir(), "repo"))
			meta := repo.Snapshot{ID: repo.NewSnapshotID(), Source: "bench", Kind: "full"}
			ctx, cancel := context.WithCancel(context.Background())
			var last []byte
			opt := Options{CheckpointEvery: 100 * time.Millisecond, Checkpoint: func(cp []byte) error {
				last = cp
				st, _ := decodeCheckpoint(cp)
				done := st.Counts.Bytes
				if st.File != nil {
					done += st.File.Offset
				}
				if done >= total/2 {
					cancel()
				}
				return nil
			}}
			res := doBackup(b, ctx, r, src, runOpts{meta: &meta, opt: opt})
			cancel()
			if res.err == nil || last == nil {
				b.Fatalf("interrupted backup: %v, checkpoint %d bytes", res.err, len(last))
			}
			r = reopen(b, r)
			b.StartTimer()
			t0 := time.Now()
			res = benchBackup(b, r, src, runOpts{meta: &meta, resume: last})
			elapsed += time.Since(t0)
			if hasWarning(res.warnings, WarnResumeRestarted) {
				b.Fatalf("resume restarted: %v", res.warnings)
			}
		}
		if fullPerOp > 0 {
			b.ReportMetric(float64(elapsed/time.Duration(b.N))/float64(fullPerOp), "resume-share")
		}
	})
}
