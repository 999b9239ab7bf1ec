package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/datawarehouse/dw/host/api"
	"github.com/datawarehouse/dw/sdk/v6"
)

// The dw backup commands speak the host's /v1/backups API (see
// host/api/backups.go), whose JSON types they decode.

const backupsPath = "/v1/backups"

// maxUnavailablePolls is how many 503 answers in a row --wait rides out:
// the dataprotection plugin restarting (its jobs resume) is not the job
// failing.
const maxUnavailablePolls = 120

func newBackupCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "backup",
		Short: "Back up sources, restore snapshots, list chains, apply retention, verify (the dataprotection subsystem)",
		Long: "Back up the sources named in the dataprotection settings, restore snapshots, list snapshot chains, forget\n" +
			"snapshots, apply retention and verify the repository, through the host's /v1/backups API.\n" +
			"Backups and restores run as jobs in the plugin: create and restore return at once with the job's id, or\n" +
			"with --wait follow the job (a progress bar on a terminal) and fail unless it succeeds.",
	}
	cmd.AddCommand(newBackupCreateCmd(g), newBackupLsCmd(g), newBackupJobsCmd(g), newBackupCancelCmd(g),
		newBackupRestoreCmd(g), newBackupForgetCmd(g), newBackupPruneCmd(g), newBackupVerifyCmd(g))
	return cmd
}

// waitFlags are the flags of the commands that start a job.
type waitFlags struct {
	wait     bool
	progress string
	poll     time.Duration
}

func (w *waitFlags) add(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&w.wait, "wait", false, "wait until the job ends and fail unless it succeeds")
	cmd.Flags().StringVar(&w.progress, "progress", "auto", "with --wait, a progress bar on stderr: auto (on a terminal), always or never")
	cmd.Flags().DurationVar(&w.poll, "poll", 500*time.Millisecond, "with --wait, how often to ask for the job's progress")
}

func (w *waitFlags) check() error {
	if w.poll <= 0 {
		return fmt.Errorf("--poll %s: must be more than 0", w.poll)
	}
	return checkProgressMode(w.progress)
}

// jobPath is the URL path of job id.
func jobPath(id string) string { return backupsPath + "/jobs/" + url.PathEscape(id) }

// longClient is an apiClient without the overall timeout, for prune and
// verify, which take as long as the repository makes them.
func longClient(g *globalFlags) *apiClient {
	c := newAPIClient(g)
	c.http.Timeout = 0
	return c
}

// decodeAnswer decodes the raw answer of method path into v.
func decodeAnswer(method, path string, raw []byte, v any) error {
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return nil
}

// apiCall sends method path (no body) with c and decodes the answer into
// v; with -o json it also prints the answer as it came (printed).
func apiCall(cmd *cobra.Command, g *globalFlags, c *apiClient, method, path string, v any) (printed bool, err error) {
	raw, err := c.do(method, path, nil)
	if err == nil {
		err = decodeAnswer(method, path, raw, v)
	}
	if err != nil || g.output != "json" {
		return false, err
	}
	return true, printJSON(cmd.OutOrStdout(), raw)
}

func newBackupCreateCmd(g *globalFlags) *cobra.Command {
	var (
		kind string
		w    waitFlags
	)
	cmd := &cobra.Command{
		Use:   "create SOURCE",
		Short: "Back up SOURCE now (a job): --kind full reads every file, incremental skips unchanged ones",
		Long: "Start a backup job of SOURCE, a source named in the dataprotection settings. --kind incremental (the\n" +
			"default) does not read files whose size, modification time and inode match the source's last snapshot;\n" +
			"--kind full reads every file and starts a new chain. Either way the snapshot holds the whole tree.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if kind != "full" && kind != "incremental" {
				return fmt.Errorf("--kind %q: must be full or incremental", kind)
			}
			return startJob(cmd, g, backupsPath, map[string]string{"source": args[0], "kind": kind}, &w)
		},
	}
	cmd.Flags().StringVar(&kind, "kind", "incremental", "full or incremental")
	w.add(cmd)
	return cmd
}

func newBackupRestoreCmd(g *globalFlags) *cobra.Command {
	var w waitFlags
	cmd := &cobra.Command{
		Use:   "restore SNAPSHOT TARGET",
		Short: "Restore a whole snapshot into TARGET, a new folder under the restore root (a job)",
		Long: "Start a restore job of SNAPSHOT into TARGET, a folder relative to the dataprotection restore root that does\n" +
			"not exist yet or is empty: '/'-separated names, no empty, '.' or '..' names.",
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := sdk.ValidateID("snapshot id", args[0]); err != nil {
				return err
			}
			if err := checkPath(args[1]); err != nil {
				return fmt.Errorf("restore target: %w", err)
			}
			return startJob(cmd, g, backupsPath+"/restores", map[string]string{"snapshot": args[0], "target": args[1]}, &w)
		},
	}
	w.add(cmd)
	return cmd
}

// startJob POSTs body to path, which starts a job, and says so; with
// --wait it follows the job to its end and fails unless it succeeded.
func startJob(cmd *cobra.Command, g *globalFlags, path string, body any, w *waitFlags) error {
	if err := w.check(); err != nil {
		return err
	}
	req, err := json.Marshal(body)
	if err != nil {
		return err
	}
	c := newAPIClient(g)
	raw, err := c.do(http.MethodPost, path, req)
	if err != nil {
		return err
	}
	var started api.StartedJob
	if err := decodeAnswer(http.MethodPost, path, raw, &started); err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	if !w.wait {
		if g.output == "json" {
			return printJSON(out, raw)
		}
		fmt.Fprintf(out, "started %s; follow it with: dw backup jobs %s\n", describeJob(started.Job), started.JobID)
		return nil
	}
	job, raw, err := waitJob(cmd, c, started.Job, w)
	if err != nil {
		return err
	}
	if g.output == "json" {
		if err := printJSON(out, raw); err != nil {
			return err
		}
	} else if job.State == "succeeded" {
		fmt.Fprintln(out, jobSummary(job))
	}
	if job.State != "succeeded" {
		return fmt.Errorf("%s %s%s", describeJob(job), job.State, prefixed(": ", job.Error))
	}
	return nil
}

func prefixed(prefix, s string) string {
	if s == "" {
		return ""
	}
	return prefix + s
}

// finished reports whether a job state is final.
func finished(state string) bool {
	return state == "succeeded" || state == "failed" || state == "cancelled"
}

// waitJob polls job until it ends (every w.poll), with a progress bar on
// stderr, and returns the last answer. ^C stops the waiting, not the job.
func waitJob(cmd *cobra.Command, c *apiClient, job api.BackupJob, w *waitFlags) (api.BackupJob, []byte, error) {
	ctx, stop := interruptible(cmd.Context())
	defer stop()
	bar := newJobBar(w.progress, cmd.ErrOrStderr(), job)
	path := jobPath(job.ID)
	for unavailable := 0; ; {
		var next api.BackupJob
		raw, err := c.getJSON(path, &next)
		switch {
		case isAPIStatus(err, http.StatusServiceUnavailable) && unavailable < maxUnavailablePolls:
			unavailable++
		case err != nil:
			bar.finish(false)
			return job, nil, fmt.Errorf("wait for %s: %w", describeJob(job), err)
		default:
			unavailable = 0
			job = next
			bar.show(job)
			if finished(job.State) {
				bar.finish(job.State == "succeeded")
				return job, raw, nil
			}
		}
		select {
		case <-ctx.Done():
			bar.finish(false)
			return job, nil, fmt.Errorf("stopped waiting for %s; it goes on (dw backup jobs %s; dw backup cancel %s)", describeJob(job), job.ID, job.ID)
		case <-time.After(w.poll):
		}
	}
}

// jobBar is the progress bar of a job: bytes done of bytes total once the
// plugin knows the total, a spinner before.
type jobBar struct {
	bar  *progressbar.ProgressBar // nil: none
	desc string
	max  int64
}

func newJobBar(mode string, w io.Writer, job api.BackupJob) *jobBar {
	desc := job.Kind + " " + jobSubject(job)
	return &jobBar{bar: newProgress(mode, w, -1, desc), desc: desc, max: -1}
}

func (b *jobBar) show(job api.BackupJob) {
	if b.bar == nil {
		return
	}
	desc := b.desc
	if job.State == "queued" {
		desc += " (queued)"
	}
	b.bar.Describe(desc)
	if t := job.Progress.BytesTotal; t > 0 && t != b.max {
		b.bar.ChangeMax64(t)
		b.max = t
	}
	_ = b.bar.Set64(job.Progress.BytesDone)
}

func (b *jobBar) finish(ok bool) { progressWriter{b.bar}.finish(ok) }

// jobSubject says what a job works on: "docs (full)" or "s1 into t".
func jobSubject(j api.BackupJob) string {
	if j.Kind == "restore" {
		return fmt.Sprintf("%s into %s", j.Snapshot, j.Target)
	}
	return fmt.Sprintf("%s (%s)", j.Source, dash(j.BackupKind))
}

// describeJob names a job: "backup job j1 of docs (full)".
func describeJob(j api.BackupJob) string {
	if j.Kind == "restore" {
		return fmt.Sprintf("restore job %s of snapshot %s", j.ID, jobSubject(j))
	}
	return fmt.Sprintf("%s job %s of %s", j.Kind, j.ID, jobSubject(j))
}

// jobSummary is the line of a succeeded job.
func jobSummary(j api.BackupJob) string {
	p := j.Progress
	s := fmt.Sprintf("%s succeeded: %d files, %s", describeJob(j), p.FilesDone, humanSize(p.BytesDone))
	if j.Kind == "backup" && j.Snapshot != "" {
		s += "; snapshot " + j.Snapshot
	}
	return s
}

// shortTime is an RFC 3339 time of the API as "2006-01-02 15:04:05" UTC,
// or "-" when unset.
func shortTime(ts *string) string {
	if ts == nil {
		return "-"
	}
	if t, err := time.Parse(time.RFC3339Nano, *ts); err == nil {
		return t.UTC().Format("2006-01-02 15:04:05")
	}
	return *ts
}

// jobProgress is a job's progress for a table: "42.0% 1.2 MiB/3.0 MiB".
func jobProgress(j api.BackupJob) string {
	p := j.Progress
	if p.BytesTotal == 0 && p.FilesTotal == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%% %s/%s", p.Percent, humanSize(p.BytesDone), humanSize(p.BytesTotal))
}

func newBackupJobsCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "jobs [ID]",
		Short: "List backup and restore jobs (newest first), or show one",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, out := newAPIClient(g), cmd.OutOrStdout()
			if len(args) == 1 {
				if err := sdk.ValidateID("job id", args[0]); err != nil {
					return err
				}
				var j api.BackupJob
				if printed, err := apiCall(cmd, g, c, http.MethodGet, jobPath(args[0]), &j); printed || err != nil {
					return err
				}
				return writeJobDetails(out, j)
			}
			var list api.BackupJobs
			if printed, err := apiCall(cmd, g, c, http.MethodGet, backupsPath+"/jobs", &list); printed || err != nil {
				return err
			}
			if len(list.Jobs) == 0 {
				fmt.Fprintln(out, "no jobs")
				return nil
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tKIND\tSTATE\tOF\tPROGRESS\tCREATED\tERROR")
			for _, j := range list.Jobs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", j.ID, j.Kind, j.State, jobSubject(j), jobProgress(j),
					shortTime(j.CreatedAt), dash(oneLine(j.Error)))
			}
			return tw.Flush()
		},
	}
}

// writeJobDetails prints one job, a field a line.
func writeJobDetails(w io.Writer, j api.BackupJob) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	p := j.Progress
	rows := [][2]string{
		{"id", j.ID}, {"kind", j.Kind}, {"state", j.State},
	}
	if j.Kind == "restore" {
		rows = append(rows, [2]string{"snapshot", j.Snapshot}, [2]string{"target", j.Target})
	} else {
		rows = append(rows, [2]string{"source", j.Source}, [2]string{"backup kind", j.BackupKind}, [2]string{"snapshot", dash(j.Snapshot)})
	}
	rows = append(rows,
		[2]string{"progress", jobProgress(j)},
		[2]string{"files", fmt.Sprintf("%d of %d", p.FilesDone, p.FilesTotal)},
		[2]string{"rate", humanSize(int64(p.BytesPerSecond)) + "/s"},
		[2]string{"created", shortTime(j.CreatedAt)},
		[2]string{"started", shortTime(j.StartedAt)},
		[2]string{"finished", shortTime(j.FinishedAt)},
		[2]string{"resumed", fmt.Sprintf("%d times", j.Resumed)},
		[2]string{"error", dash(strings.Join(strings.Fields(j.Error), " "))},
	)
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\n", r[0], r[1])
	}
	return tw.Flush()
}

func newBackupCancelCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "cancel ID",
		Short: "Cancel a queued or running job (a finished one cannot be)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := sdk.ValidateID("job id", args[0]); err != nil {
				return err
			}
			var j api.BackupJob
			if printed, err := apiCall(cmd, g, newAPIClient(g), http.MethodDelete, jobPath(args[0]), &j); printed || err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s\n", describeJob(j), j.State)
			return nil
		},
	}
}

func newBackupLsCmd(g *globalFlags) *cobra.Command {
	var source string
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List the snapshots by chain: a full backup and the incrementals that extend it",
		Long: "List the complete snapshots, chain by chain (oldest first in each): the snapshot that starts a chain, then\n" +
			"the ones that extend it. SIZE is the logical size of the files; ADDED what the backup added to the repository.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path := backupsPath + "/snapshots"
			if cmd.Flags().Changed("source") {
				path += "?source=" + url.QueryEscape(source)
			}
			var chains api.Chains
			if printed, err := apiCall(cmd, g, newAPIClient(g), http.MethodGet, path, &chains); printed || err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if len(chains.Chains) == 0 {
				fmt.Fprintln(out, "no snapshots")
				return nil
			}
			return writeChains(out, chains.Chains)
		},
	}
	cmd.Flags().StringVar(&source, "source", "", "only the snapshots of this source")
	return cmd
}

// writeChains prints chains as a tree in a table: each chain's first
// snapshot with its source, the others below it.
func writeChains(w io.Writer, chains []api.Chain) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SOURCE\tSNAPSHOT\tKIND\tCOMPLETED\tFILES\tSIZE\tADDED")
	for _, c := range chains {
		for i, s := range c.Snapshots {
			source, branch := c.Source, ""
			if i > 0 {
				source, branch = "", "├─ "
				if i == len(c.Snapshots)-1 {
					branch = "└─ "
				}
			}
			fmt.Fprintf(tw, "%s\t%s%s\t%s\t%s\t%d\t%s\t%s\n", source, branch, s.ID, s.Kind, shortTime(s.CompletedAt),
				s.Files, humanSize(s.Bytes), humanSize(s.AddedBytes))
		}
	}
	return tw.Flush()
}

func newBackupForgetCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "forget ID",
		Short: "Forget a snapshot; the snapshots that extend it are re-based onto its parent",
		Long: "Forget snapshot ID. Every snapshot holds its whole tree, so the ones that named it as their parent stay\n" +
			"restorable: they are re-based onto its parent (or start the chain). Its data goes at the next prune.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := sdk.ValidateID("snapshot id", args[0]); err != nil {
				return err
			}
			var res api.ForgetResult
			path := backupsPath + "/snapshots/" + url.PathEscape(args[0])
			if printed, err := apiCall(cmd, g, newAPIClient(g), http.MethodDelete, path, &res); printed || err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "forgot snapshot %s\n", args[0])
			if len(res.Rebased) > 0 {
				fmt.Fprintf(out, "re-based: %s\n", strings.Join(res.Rebased, ", "))
			}
			return nil
		},
	}
}

func newBackupPruneCmd(g *globalFlags) *cobra.Command {
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "prune",
		Short: "Apply retention now and remove unreferenced data (--dry-run: only say what would go)",
		Long: "Apply the retention policy (keep_last, keep_within, max_total_bytes) now: forget the snapshots it lets go,\n" +
			"keeping any that a kept snapshot depends on, then remove or rewrite the packs no snapshot needs.\n" +
			"--dry-run changes nothing and lists what would go.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var res api.PruneResult
			path := fmt.Sprintf("%s/prune?dry_run=%t", backupsPath, dryRun)
			if printed, err := apiCall(cmd, g, longClient(g), http.MethodPost, path, &res); printed || err != nil {
				return err
			}
			return writePrune(cmd.OutOrStdout(), res)
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "change nothing; list what would go")
	return cmd
}

// writePrune prints what a prune did or would do.
func writePrune(w io.Writer, res api.PruneResult) error {
	verb, freed := "forgot", "freed"
	if res.DryRun {
		verb, freed = "would forget", "would free"
	}
	if len(res.Forget) == 0 {
		fmt.Fprintf(w, "%s no snapshots\n", verb)
	} else {
		fmt.Fprintf(w, "%s %d snapshots:\n", verb, len(res.Forget))
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SNAPSHOT\tSOURCE\tKIND\tCOMPLETED\tREASON")
		for _, s := range res.Forget {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.ID, s.Source, s.Kind, shortTime(s.CompletedAt), dash(res.Reasons[s.ID]))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	_, err := fmt.Fprintf(w, "packs removed: %d, rewritten: %d; %s %s\n", res.PacksRemoved, res.PacksRewritten, freed, humanSize(res.BytesFreed))
	return err
}

func newBackupVerifyCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "verify",
		Short: "Read every chunk of every snapshot and check its hash; fails when anything is wrong",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var res api.VerifyResult
			printed, err := apiCall(cmd, g, longClient(g), http.MethodPost, backupsPath+"/verify", &res)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if !printed {
				fmt.Fprintf(out, "checked %d snapshots: %d blobs, %s\n", res.Snapshots, res.BlobsChecked, humanSize(res.BytesChecked))
				for _, p := range res.Problems {
					fmt.Fprintf(out, "problem: %s\n", p)
				}
			}
			if len(res.Problems) > 0 {
				return fmt.Errorf("verify: the repository has %d problems", len(res.Problems))
			}
			if !printed {
				fmt.Fprintln(out, "no problems")
			}
			return nil
		},
	}
}
