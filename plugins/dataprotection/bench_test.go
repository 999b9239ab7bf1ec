package main_test

// Benchmarks behind the dataprotection figures (make bench), through the
// real host's HTTP API with the real plugin process:
//
//	go test -run '^$' -bench . -benchtime 1x ./plugins/dataprotection/
//
// BenchmarkBackup generates a mixed data set of about 500 MB once (10,000
// small files in 100 folders, half text and half random; 200 files of
// 512 KiB; four random files of 64 MiB and a 48 MiB log file) and, through
// the host, runs a full backup, an unchanged incremental, an incremental
// after about 1% changed, and a restore. Each reports ns/op (POST to
// success seen, polled every 20 ms), MB/s of the source, job-s (the job's
// own started_at → finished_at), the plugin's peak RSS (peak-rss-MiB) and
// its rise above the idle plugin (rss-above-idle-MiB), and the repository's
// size after the step (repo-MB, bytes of its files) with what the step
// added (added-MB, the snapshot's added_bytes). killed-at-* backs the
// data set up on a fresh host, then on another one kills the plugin with
// SIGKILL half way — at half the full backup's time (killed-at-half-time)
// or once the job reports half the bytes (killed-at-half-bytes: the small
// files come first in the walk, so this is later in time) — and reports
// the time from the restarted
// plugin process to the job's success as a share of the uninterrupted
// backup's time (resume-share; resume-share-incl-restart counts from the
// kill, with the host's restart delay), for checkpoint_interval 200ms and
// 10s (the default), as medians of three.
//
// The source sits in the page cache (the machine has far more memory than
// the data set), so backups measure the plugin, not the source disk; the
// repository's writes are fsync'ed.

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/datawarehouse/dw/host/api"
	"github.com/datawarehouse/dw/internal/hosttest"
)

// dataset describes the generated benchmark source.
type dataset struct {
	root  string
	bytes int64
	files int
	small []string // relative paths of the small files
	large []string // relative paths of the large random files
	mid   []string // relative paths of the 512 KiB files
}

// largeFiles is how many 64 MiB random files the data set holds: 4 make
// the 500 MB set; more make a longer backup, where the fixed cost of a
// restart (about 0.1 s from the new process to the resumed job) weighs
// less in resume-share.
var largeFiles = flag.Int("dp.large", 4, "64 MiB random files in the benchmark data set")

// genDataset writes the mixed data set into root.
func genDataset(tb testing.TB, root string) *dataset {
	tb.Helper()
	d := &dataset{root: root}
	write := func(rel string, data []byte) {
		p := filepath.Join(root, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			tb.Fatal(err)
		}
		d.bytes += int64(len(data))
		d.files++
	}
	for i := range 10_000 {
		rel := fmt.Sprintf("small/d%03d/f%05d", i/100, i)
		size := 512 + (i*7919)%(16<<10)
		if i%2 == 0 {
			write(rel+".txt", compressible(size, i))
			d.small = append(d.small, rel+".txt")
		} else {
			write(rel+".bin", randomBytes(size, uint64(1000+i)))
			d.small = append(d.small, rel+".bin")
		}
	}
	for i := range 200 {
		rel := fmt.Sprintf("mid/m%03d", i)
		if i%2 == 0 {
			write(rel+".log", compressible(512<<10, 20_000+i))
			d.mid = append(d.mid, rel+".log")
		} else {
			write(rel+".bin", randomBytes(512<<10, uint64(20_000+i)))
			d.mid = append(d.mid, rel+".bin")
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "large"), 0o755); err != nil {
		tb.Fatal(err)
	}
	for i := range *largeFiles {
		rel := fmt.Sprintf("large/l%02d.bin", i)
		writeRandomFile(tb, filepath.Join(root, filepath.FromSlash(rel)), 64<<20, uint64(30_000+i))
		d.bytes += 64 << 20
		d.files++
		d.large = append(d.large, rel)
	}
	write("large/big.log", compressible(48<<20, 40_000))
	return d
}

// changeOnePercent rewrites 1% of the small files and 1% of the 512 KiB
// ones with new content of the same size, and overwrites 4 MiB in the
// middle of one large file: about 1% of the files and of the bytes; round
// varies the content.
func (d *dataset) changeOnePercent(tb testing.TB, round int) {
	tb.Helper()
	for i := 0; i < len(d.small); i += 100 {
		p := filepath.Join(d.root, filepath.FromSlash(d.small[(i+round)%len(d.small)]))
		fi, err := os.Stat(p)
		if err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(p, randomBytes(int(fi.Size()), uint64(50_000+i+round*100_000)), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	for i := 0; i < len(d.mid); i += 100 {
		p := filepath.Join(d.root, filepath.FromSlash(d.mid[(i+round)%len(d.mid)]))
		if err := os.WriteFile(p, randomBytes(512<<10, uint64(60_000+i+round*100_000)), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	f, err := os.OpenFile(filepath.Join(d.root, filepath.FromSlash(d.large[round%len(d.large)])), os.O_WRONLY, 0)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := f.WriteAt(randomBytes(4<<20, uint64(70_000+round)), 30<<20); err != nil {
		tb.Fatal(err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
}

// jobSeconds is a finished job's running time as the plugin saw it.
func jobSeconds(tb testing.TB, j api.BackupJob) float64 {
	tb.Helper()
	if j.StartedAt == nil || j.FinishedAt == nil {
		tb.Fatalf("job %s has no start or end time", j.ID)
	}
	s, err1 := time.Parse(time.RFC3339Nano, *j.StartedAt)
	e, err2 := time.Parse(time.RFC3339Nano, *j.FinishedAt)
	if err1 != nil || err2 != nil {
		tb.Fatalf("job %s times: %v %v", j.ID, err1, err2)
	}
	return e.Sub(s).Seconds()
}

// mib reads a /proc figure of pid in MiB.
func mib(tb testing.TB, read func(int) (int64, error), pid int) float64 {
	tb.Helper()
	n, err := read(pid)
	if err != nil {
		tb.Fatal(err)
	}
	return float64(n) / (1 << 20)
}

// waitRetention waits until the retention run a backup kicks has ended:
// retention_runs_total above before.
func waitRetention(tb testing.TB, h *hosttest.Host, before float64) {
	tb.Helper()
	hosttest.WaitFor(tb, jobWait, "the retention run after the backup", func() bool {
		return metrics(tb, h)["retention_runs_total"] > before
	})
}

func BenchmarkBackup(b *testing.B) {
	d := genDataset(b, b.TempDir())
	b.Logf("data set: %d files, %.1f MB", d.files, float64(d.bytes)/1e6)
	h := startDP(b, map[string]string{"data": d.root}, "")
	pid := h.Plugin(b, "dataprotection").PID
	idle := mib(b, hosttest.RSS, pid)
	repoDir := filepath.Join(h.DataDir, "backups")
	haveFull := false
	// step measures op (one job, which it starts and returns finished) b.N
	// times; prepare runs untimed before each.
	step := func(b *testing.B, prepare func(i int), op func(i int) api.BackupJob) {
		b.SetBytes(d.bytes)
		if err := hosttest.ResetPeakRSS(pid); err != nil {
			b.Fatal(err)
		}
		var secs, added float64
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			if prepare != nil {
				prepare(i)
			}
			runs := metrics(b, h)["retention_runs_total"]
			b.StartTimer()
			j := op(i)
			b.StopTimer()
			if j.State != "succeeded" {
				b.Fatalf("job %s %s: %s", j.ID, j.State, j.Error)
			}
			secs += jobSeconds(b, j)
			if j.Kind == "backup" {
				added += float64(snapshot(b, h, j.Snapshot).AddedBytes)
				waitRetention(b, h, runs)
			}
			b.StartTimer()
		}
		b.StopTimer()
		peak := mib(b, hosttest.PeakRSS, pid)
		b.ReportMetric(secs/float64(b.N), "job-s")
		b.ReportMetric(peak, "peak-rss-MiB")
		b.ReportMetric(peak-idle, "rss-above-idle-MiB")
		b.ReportMetric(float64(dirSize(b, repoDir))/1e6, "repo-MB")
		b.ReportMetric(added/float64(b.N)/1e6, "added-MB")
	}
	backupOp := func(kind string) func(int) api.BackupJob {
		return func(int) api.BackupJob { return waitJob(b, h, startBackup(b, h, "data", kind).ID) }
	}
	ensureFull := func() {
		if !haveFull {
			waitSucceeded(b, h, startBackup(b, h, "data", "full").ID)
			haveFull = true
		}
	}
	b.Run("full", func(b *testing.B) {
		step(b, nil, backupOp("full"))
		haveFull = true
	})
	b.Run("incremental-unchanged", func(b *testing.B) {
		ensureFull()
		step(b, nil, backupOp("incremental"))
	})
	round := 0
	b.Run("incremental-1pct-changed", func(b *testing.B) {
		ensureFull()
		step(b, func(int) { d.changeOnePercent(b, round); round++ }, backupOp("incremental"))
	})
	// Restore targets are numbered across runs (-count repeats the
	// sub-benchmark on the same host); each run removes the previous one.
	restores, target := 0, ""
	b.Run("restore", func(b *testing.B) {
		ensureFull()
		var snap string
		for _, c := range chains(b, h) {
			for _, s := range c.Snapshots {
				snap = s.ID // the newest: chains and snapshots oldest first
			}
		}
		step(b, func(int) {
			if target != "" {
				if err := os.RemoveAll(filepath.Join(h.DataDir, "restores", target)); err != nil {
					b.Fatal(err)
				}
			}
			restores++
			target = fmt.Sprintf("r%d", restores)
		}, func(int) api.BackupJob {
			code, body := startRestore(b, h, snap, target)
			var started api.StartedJob
			if code != 202 || json.Unmarshal(body, &started) != nil {
				b.Fatalf("restore: %d %s", code, body)
			}
			return waitJob(b, h, started.JobID)
		})
		b.StopTimer()
		restored := manifest(b, filepath.Join(h.DataDir, "restores", target))
		if files, _, _, size := counts(restored); files != int64(d.files) || size != d.bytes {
			b.Fatalf("the restore holds %d files, %d bytes; the source %d, %d", files, size, d.files, d.bytes)
		}
	})
	h.Kill()
	for _, at := range []string{"half-time", "half-bytes"} {
		for _, cp := range []string{"200ms", "10s"} {
			b.Run("killed-at-"+at+"/checkpoint-"+cp, func(b *testing.B) { benchResume(b, d, cp, at == "half-bytes") })
		}
	}
}

// progressPoint is a job's bytes done at a time since its start.
type progressPoint struct {
	at   time.Duration
	done int64
}

// timeAt interpolates when a run with this progress timeline had done
// bytes.
func timeAt(tl []progressPoint, bytes int64) time.Duration {
	prev := progressPoint{}
	for _, p := range tl {
		if p.done >= bytes {
			if p.done == prev.done {
				return p.at
			}
			return prev.at + time.Duration(float64(p.at-prev.at)*float64(bytes-prev.done)/float64(p.done-prev.done))
		}
		prev = p
	}
	return prev.at
}

// median returns the median of v (sorted in place).
func median(v []float64) float64 {
	slices.Sort(v)
	return v[len(v)/2]
}

// resumeReps is how many interrupted backups each iteration of
// benchResume runs; it reports their medians.
const resumeReps = 3

// benchResume backs d up on a fresh host (recording its progress), then
// on another fresh host kills the plugin at half that backup's time (or,
// with byBytes, once the job reports 50% of the bytes done) and
// waits for the resumed job, both with checkpoint_interval cp; resumeReps
// times per iteration. It reports the medians of: the time from the new
// plugin process to the job's success as a share of the uninterrupted
// backup's time (resume-share), the same from the kill
// (resume-share-incl-restart), the share the uninterrupted backup took to
// get from where the resumed run started to the end (left-share: what a
// resume that loses only the work after its checkpoint would take at
// most), where the kill came in bytes (killed-at-%), where the resumed run
// started (resumed-from-%: the first progress the job shows after the
// restart, which counts the checkpoint's finished files but not yet the
// offset a file in progress resumes at, so at most the checkpoint's
// position), and the restart delay (restart-s). resume-share minus
// left-share is thus at least what resuming costs beyond the lost work.
func benchResume(b *testing.B, d *dataset, cp string, byBytes bool) {
	limits := "{checkpoint_interval: " + cp + "}"
	var share, shareKill, left, restart, at, resumedAt []float64
	for i := 0; i < b.N*resumeReps; i++ {
		hf := startDP(b, map[string]string{"data": d.root}, limits)
		start := time.Now()
		fj := startBackup(b, hf, "data", "full")
		var tl []progressPoint
		hosttest.WaitFor(b, jobWait, "the uninterrupted backup", func() bool {
			j, ok := getJob(b, hf, fj.ID)
			if ok && (len(tl) == 0 || j.Progress.BytesDone != tl[len(tl)-1].done) {
				tl = append(tl, progressPoint{time.Since(start), j.Progress.BytesDone})
			}
			if ok && finished(j.State) && j.State != "succeeded" {
				b.Fatalf("the uninterrupted backup %s: %s", j.State, j.Error)
			}
			return ok && j.State == "succeeded"
		})
		full := time.Since(start)
		hf.Kill()
		hk := startDP(b, map[string]string{"data": d.root}, limits)
		kpid := hk.Plugin(b, "dataprotection").PID
		start = time.Now()
		job := startBackup(b, hk, "data", "full")
		if byBytes {
			hosttest.WaitFor(b, jobWait, "half the bytes done", func() bool {
				j, ok := getJob(b, hk, job.ID)
				return ok && (j.Progress.Percent >= 50 || finished(j.State))
			})
		} else {
			hosttest.WaitFor(b, jobWait, "half the full backup's time", func() bool { return time.Since(start) >= full/2 })
		}
		j, ok := getJob(b, hk, job.ID)
		if !ok || j.State != "running" {
			b.Fatalf("the backup is %s before it could be killed", j.State)
		}
		if err := syscall.Kill(kpid, syscall.SIGKILL); err != nil {
			b.Fatal(err)
		}
		killed := time.Now()
		hosttest.WaitFor(b, time.Minute, "a new plugin process", func() bool {
			st := hk.Plugin(b, "dataprotection")
			return st.PID != 0 && st.PID != kpid
		})
		restarted := time.Now()
		// The first progress shown after the restart: at most where the
		// resumed run starts.
		var from api.BackupJob
		hosttest.WaitFor(b, time.Minute, "the job after the restart", func() bool {
			var ok bool
			from, ok = getJob(b, hk, job.ID)
			return ok
		})
		done := waitSucceeded(b, hk, job.ID)
		end := time.Now()
		m := metrics(b, hk)
		if done.Resumed < 1 || m["jobs_restarted_total"] != 0 {
			b.Fatalf("the job was not resumed from its checkpoint: resumed %d, jobs_restarted_total %v", done.Resumed, m["jobs_restarted_total"])
		}
		hk.Kill()
		at = append(at, j.Progress.Percent)
		resumedAt = append(resumedAt, 100*float64(from.Progress.BytesDone)/float64(d.bytes))
		share = append(share, end.Sub(restarted).Seconds()/full.Seconds())
		shareKill = append(shareKill, end.Sub(killed).Seconds()/full.Seconds())
		left = append(left, (full-timeAt(tl, from.Progress.BytesDone)).Seconds()/full.Seconds())
		restart = append(restart, restarted.Sub(killed).Seconds())
		b.Logf("checkpoint_interval %s: full %.2fs; killed after %.2fs at %.1f%%; new process after %.2fs; resumed from %.1f%%, which the full passed at %.2fs; done %.2fs after the new process",
			cp, full.Seconds(), killed.Sub(start).Seconds(), j.Progress.Percent, restarted.Sub(killed).Seconds(),
			resumedAt[len(resumedAt)-1], timeAt(tl, from.Progress.BytesDone).Seconds(), end.Sub(restarted).Seconds())
	}
	b.ReportMetric(median(at), "killed-at-%")
	b.ReportMetric(median(resumedAt), "resumed-from-%")
	b.ReportMetric(median(left), "left-share")
	b.ReportMetric(median(share), "resume-share")
	b.ReportMetric(median(shareKill), "resume-share-incl-restart")
	b.ReportMetric(median(restart), "restart-s")
}
