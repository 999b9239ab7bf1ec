package api

// The backup endpoints under /v1/backups, served by the Backup gRPC
// service of the dataprotection subsystem's plugin.
//
//	POST   /v1/backups                   {"source","kind"} → 202 {"job_id","job"}, Location
//	GET    /v1/backups/jobs              → {"jobs":[job…]}, newest first
//	GET    /v1/backups/jobs/{id}         → job
//	DELETE /v1/backups/jobs/{id}         cancel → 200 job (409 when finished)
//	GET    /v1/backups/snapshots         ?source= → {"chains":[{"id","source","snapshots"}]}
//	DELETE /v1/backups/snapshots/{id}    forget → 200 {"rebased":[id…]}
//	POST   /v1/backups/prune             ?dry_run=true|false → 200 plan or result
//	POST   /v1/backups/restores          {"snapshot","target"} → 202 {"job_id","job"}, Location
//	POST   /v1/backups/verify            → 200 {"ok","snapshots","blobs_checked","bytes_checked","problems"}
//
// HTTP behaviours chosen here (the plugin knows the sources, snapshots and
// jobs; this file checks the request syntax before any plugin call):
//
//   - Bodies are strict JSON objects of at most 64 KiB (larger: 413, like
//     every body limit of the API): valid UTF-8, exactly one object, only
//     the documented keys, each at most once and spelled exactly (Go's
//     decoder would match "SOURCE" to source and keep the last of two
//     keys), strings where strings belong; anything else is 400 naming
//     the field and what is allowed. kind defaults to "incremental" when
//     left out (with no earlier snapshot of the source there is nothing to
//     skip, so it reads everything). null is the same as leaving a key
//     out. prune and verify take no body, or {}.
//   - Ids in paths and the restore's snapshot pass sdk.ValidateID (1 to
//     128 of A-Z, a-z, 0-9, '_' and '-'), the rule the plugin applies too;
//     a source is 1 to 256 bytes of UTF-8 without control characters (the
//     plugin decides which exist: unknown ones are 404); a restore target
//     passes sdk.ValidateFilePath (relative, no "..", no empty names): the
//     plugin confines it to its restore root.
//   - Query parameters other than the documented ones, or given twice, are
//     400 on every route.
//   - Verify gets its own route rather than only the rpc gateway
//     (POST /v1/subsystems/dataprotection/rpc/dw.sdk.v1.Backup/Verify,
//     which works too): the gateway bounds a unary call by the request
//     timeout, and verify reads the whole repository. Verify and prune run
//     for as long as the client waits (a client that goes away cancels
//     them); every other call is bounded by the request timeout.
//   - JSON: the proto's snake_case names; job kind and state as lowercase
//     words ("backup", "restore"; "queued", "running", "succeeded",
//     "failed", "cancelled"; a value this host does not know is
//     "unknown"); times RFC 3339 with nanoseconds in UTC, null while not
//     set (a queued job's started_at); lists are [] rather than null.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/datawarehouse/dw/sdk/v6"
	dwv1 "github.com/datawarehouse/dw/sdk/v6/proto/dw/v1"
)

// BackupsSubsystem is the subsystem whose plugin serves the backups behind
// /v1/backups.
const BackupsSubsystem = "dataprotection"

const (
	backupsPath = "/v1/backups"
	// maxBackupBody bounds the JSON body of a backup request.
	maxBackupBody = 64 << 10
	// maxSourceBytes bounds a source name.
	maxSourceBytes = 256
)

// registerBackupRoutes adds the /v1/backups routes.
func (s *Server) registerBackupRoutes() {
	for _, rt := range []struct {
		pattern string
		scope   Scope
		h       http.HandlerFunc
	}{
		{"POST " + backupsPath, ScopeWrite, s.startBackup},
		{"GET " + backupsPath + "/jobs", ScopeRead, s.listBackupJobs},
		{"GET " + backupsPath + "/jobs/{id}", ScopeRead, s.jobHandler("get", func(ctx context.Context, c dwv1.BackupClient, id string) (*dwv1.Job, error) {
			return c.GetJob(ctx, &dwv1.GetJobRequest{Id: id})
		})},
		{"DELETE " + backupsPath + "/jobs/{id}", ScopeWrite, s.jobHandler("cancel", func(ctx context.Context, c dwv1.BackupClient, id string) (*dwv1.Job, error) {
			return c.CancelJob(ctx, &dwv1.CancelJobRequest{Id: id})
		})},
		{"GET " + backupsPath + "/snapshots", ScopeRead, s.listSnapshots},
		{"DELETE " + backupsPath + "/snapshots/{id}", ScopeAdmin, s.forgetSnapshot},
		{"POST " + backupsPath + "/prune", ScopeAdmin, s.pruneBackups},
		{"POST " + backupsPath + "/restores", ScopeWrite, s.startRestore},
		{"POST " + backupsPath + "/verify", ScopeWrite, s.verifyBackups},
	} {
		s.handle(Route{Pattern: rt.pattern, Scope: rt.scope, Subsystem: BackupsSubsystem}, rt.h)
	}
}

// validateSource checks the syntax of a source name.
func validateSource(src string) error {
	switch {
	case src == "":
		return fmt.Errorf("source: %w: is empty; name one of the sources in the dataprotection settings", sdk.ErrInvalidArgument)
	case len(src) > maxSourceBytes:
		return fmt.Errorf("source of %d bytes: %w: at most %d bytes", len(src), sdk.ErrInvalidArgument, maxSourceBytes)
	case !utf8.ValidString(src) || strings.ContainsFunc(src, isControl):
		return fmt.Errorf("source %s: %w: must be UTF-8 without control characters", shown(src), sdk.ErrInvalidArgument)
	}
	return nil
}

// readJSONObject reads r's body, at most maxBackupBody bytes, into dst: a
// struct whose json keys are fields. The body must be one JSON object with
// only those keys, each at most once, spelled exactly; emptyOK allows an
// empty body (dst is then left as it is). where names the route.
func readJSONObject(w http.ResponseWriter, r *http.Request, where string, dst any, emptyOK bool, fields ...string) error {
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBackupBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return fmt.Errorf("body of %s: %w", where, err) // 413
		}
		return fmt.Errorf("body of %s: %w: read: %v", where, sdk.ErrInvalidArgument, err)
	}
	allowed := strings.Join(fields, ", ")
	if allowed == "" {
		allowed = "none"
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("body of %s: %w: %s", where, sdk.ErrInvalidArgument, fmt.Sprintf(format, args...))
	}
	switch {
	case len(bytes.TrimSpace(raw)) == 0 && emptyOK:
		return nil
	case len(bytes.TrimSpace(raw)) == 0:
		return bad("empty; send a JSON object with the keys %s", allowed)
	case !utf8.Valid(raw):
		return bad("not valid UTF-8")
	}
	if err := checkObjectKeys(raw, fields); err != nil {
		return bad("%v; want one JSON object with the keys %s", err, allowed)
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return bad("key %s: must be a %s, not a %s", te.Field, te.Type, te.Value)
		}
		return bad("%v", err)
	}
	return nil
}

// checkObjectKeys checks that raw is exactly one JSON object whose keys are
// among fields, each at most once.
func checkObjectKeys(raw []byte, fields []string) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil {
		return fmt.Errorf("not valid JSON (%v)", err)
	} else if d, ok := tok.(json.Delim); !ok || d != '{' {
		return errors.New("not a JSON object")
	}
	seen := make(map[string]bool, len(fields))
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("not valid JSON (%v)", err)
		}
		key, _ := tok.(string)
		switch {
		case !slices.Contains(fields, key):
			return fmt.Errorf("unknown key %s", shown(key))
		case seen[key]:
			return fmt.Errorf("key %s given twice", key)
		}
		seen[key] = true
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return fmt.Errorf("not valid JSON (%v)", err)
		}
	}
	if _, err := dec.Token(); err != nil {
		return fmt.Errorf("not valid JSON (%v)", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("more than one JSON value")
	}
	return nil
}

// serveBackup answers a checked request r with one call of the
// dataprotection plugin's Backup service: call runs under the request's
// context carrying the caller, bounded by the request timeout unless long;
// answer writes its result. A plugin that is missing, disabled or down is
// 503; an error of the call says what was asked (what: "list backup
// jobs") and maps to its status.
func serveBackup[T any](s *Server, w http.ResponseWriter, r *http.Request, what string, long bool,
	call func(context.Context, dwv1.BackupClient) (T, error), answer func(T)) {
	conn, err := s.storeConn(BackupsSubsystem, "backups")
	if err != nil {
		WriteError(w, err)
		return
	}
	ctx := callerCtx(r)
	if !long {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.requestTimeout)
		defer cancel()
	}
	resp, err := call(ctx, dwv1.NewBackupClient(conn))
	if err != nil {
		WriteError(w, pluginError(r, fmt.Errorf("%s: %w", what, err)))
		return
	}
	answer(resp)
}

// noQuery refuses any query parameter on a route that takes none.
func noQuery(r *http.Request, where string) error {
	_, err := parseQuery(r.URL.RawQuery, where)
	return err
}

// BackupJob is a backup or restore job in every /v1/backups answer: Kind
// "backup" or "restore"; State "queued", "running", "succeeded", "failed"
// or "cancelled"; times RFC 3339 (UTC, nanoseconds), nil until set.
type BackupJob struct {
	ID         string         `json:"id"`
	Kind       string         `json:"kind"`
	State      string         `json:"state"`
	Source     string         `json:"source"`
	BackupKind string         `json:"backup_kind"`
	Snapshot   string         `json:"snapshot"`
	Target     string         `json:"target"`
	Progress   BackupProgress `json:"progress"`
	Error      string         `json:"error"`
	CreatedAt  *string        `json:"created_at"`
	StartedAt  *string        `json:"started_at"`
	FinishedAt *string        `json:"finished_at"`
	Resumed    int32          `json:"resumed"`
}

// BackupProgress is a job's progress: Percent from 0 to 100,
// BytesPerSecond over the job's running time.
type BackupProgress struct {
	FilesDone      int64   `json:"files_done"`
	FilesTotal     int64   `json:"files_total"`
	BytesDone      int64   `json:"bytes_done"`
	BytesTotal     int64   `json:"bytes_total"`
	Percent        float64 `json:"percent"`
	BytesPerSecond float64 `json:"bytes_per_second"`
}

// finite is v, or 0 for NaN and the infinities (which JSON cannot carry).
func finite(v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	return v
}

// enumWord is an enum value's name without prefix, in lowercase
// ("JOB_STATE_QUEUED" → "queued"); a number this host does not know (its
// name is the number) is "unknown".
func enumWord(name, prefix string) string {
	w, ok := strings.CutPrefix(name, prefix)
	if !ok {
		return "unknown"
	}
	return strings.ToLower(w)
}

// optionalTime is ts in RFC 3339 with nanoseconds, or nil when unset.
func optionalTime(ts *timestamppb.Timestamp) *string {
	if ts == nil {
		return nil
	}
	t := rfc3339(ts)
	return &t
}

func toBackupJob(j *dwv1.Job) BackupJob {
	p := j.GetProgress()
	return BackupJob{
		ID: j.GetId(), Kind: enumWord(j.GetKind().String(), "JOB_KIND_"), State: enumWord(j.GetState().String(), "JOB_STATE_"),
		Source: j.GetSource(), BackupKind: j.GetBackupKind(), Snapshot: j.GetSnapshot(), Target: j.GetTarget(),
		Progress: BackupProgress{FilesDone: p.GetFilesDone(), FilesTotal: p.GetFilesTotal(), BytesDone: p.GetBytesDone(),
			BytesTotal: p.GetBytesTotal(), Percent: finite(p.GetPercent()), BytesPerSecond: finite(p.GetBytesPerSecond())},
		Error: j.GetError(), CreatedAt: optionalTime(j.GetCreatedAt()), StartedAt: optionalTime(j.GetStartedAt()),
		FinishedAt: optionalTime(j.GetFinishedAt()), Resumed: j.GetResumed(),
	}
}

// StartedJob is the 202 answer of a backup or restore.
type StartedJob struct {
	JobID string    `json:"job_id"`
	Job   BackupJob `json:"job"`
}

// answerStarted returns the answer to a job that StartBackup or
// StartRestore returned: 202, its JSON and Location.
func answerStarted(w http.ResponseWriter, what string) func(*dwv1.Job) {
	return func(job *dwv1.Job) {
		if job.GetId() == "" {
			WriteError(w, fmt.Errorf("%s: the plugin answered without a job id", what))
			return
		}
		w.Header().Set("Location", backupsPath+"/jobs/"+url.PathEscape(job.GetId()))
		WriteJSON(w, http.StatusAccepted, StartedJob{JobID: job.GetId(), Job: toBackupJob(job)})
	}
}

// startRequest checks that r, which starts a job, has no query and reads
// its body, which must not be empty, into dst (see readJSONObject).
func startRequest(w http.ResponseWriter, r *http.Request, where string, dst any, fields ...string) error {
	if err := noQuery(r, where); err != nil {
		return err
	}
	return readJSONObject(w, r, where, dst, false, fields...)
}

// startBackup serves POST /v1/backups.
func (s *Server) startBackup(w http.ResponseWriter, r *http.Request) {
	const where = "POST " + backupsPath
	var body struct {
		Source *string `json:"source"`
		Kind   *string `json:"kind"`
	}
	kind := "incremental"
	err := startRequest(w, r, where, &body, "source", "kind")
	switch {
	case err != nil:
	case body.Source == nil:
		err = fmt.Errorf("body of %s: %w: source is missing; name the source to back up", where, sdk.ErrInvalidArgument)
	case body.Kind != nil && *body.Kind != "full" && *body.Kind != "incremental":
		err = fmt.Errorf("kind %s: %w: must be full or incremental (left out: incremental)", shown(*body.Kind), sdk.ErrInvalidArgument)
	default:
		if body.Kind != nil {
			kind = *body.Kind
		}
		err = validateSource(*body.Source)
	}
	if err != nil {
		WriteError(w, err)
		return
	}
	what := fmt.Sprintf("start %s backup of source %s", kind, shown(*body.Source))
	serveBackup(s, w, r, what, false, func(ctx context.Context, c dwv1.BackupClient) (*dwv1.Job, error) {
		return c.StartBackup(ctx, &dwv1.StartBackupRequest{Source: *body.Source, Kind: kind})
	}, answerStarted(w, what))
}

// startRestore serves POST /v1/backups/restores.
func (s *Server) startRestore(w http.ResponseWriter, r *http.Request) {
	const where = "POST " + backupsPath + "/restores"
	var body struct {
		Snapshot *string `json:"snapshot"`
		Target   *string `json:"target"`
	}
	err := startRequest(w, r, where, &body, "snapshot", "target")
	switch {
	case err != nil:
	case body.Snapshot == nil:
		err = fmt.Errorf("body of %s: %w: snapshot is missing; name the snapshot to restore (see GET %s/snapshots)", where, sdk.ErrInvalidArgument, backupsPath)
	case body.Target == nil:
		err = fmt.Errorf("body of %s: %w: target is missing; name a folder relative to the restore root", where, sdk.ErrInvalidArgument)
	default:
		if err = sdk.ValidateID("snapshot id", *body.Snapshot); err == nil {
			if err = sdk.ValidateFilePath(*body.Target); err != nil {
				err = fmt.Errorf("restore target (relative to the restore root): %w", err)
			}
		}
	}
	if err != nil {
		WriteError(w, err)
		return
	}
	what := fmt.Sprintf("start restore of snapshot %s into %s", *body.Snapshot, shown(*body.Target))
	serveBackup(s, w, r, what, false, func(ctx context.Context, c dwv1.BackupClient) (*dwv1.Job, error) {
		return c.StartRestore(ctx, &dwv1.StartRestoreRequest{Snapshot: *body.Snapshot, Target: *body.Target})
	}, answerStarted(w, what))
}

// BackupJobs is GET /v1/backups/jobs.
type BackupJobs struct {
	Jobs []BackupJob `json:"jobs"`
}

// listBackupJobs serves GET /v1/backups/jobs.
func (s *Server) listBackupJobs(w http.ResponseWriter, r *http.Request) {
	if err := noQuery(r, "GET "+backupsPath+"/jobs"); err != nil {
		WriteError(w, err)
		return
	}
	serveBackup(s, w, r, "list backup jobs", false, func(ctx context.Context, c dwv1.BackupClient) (*dwv1.ListJobsResponse, error) {
		return c.ListJobs(ctx, &dwv1.ListJobsRequest{})
	}, func(resp *dwv1.ListJobsResponse) {
		out := BackupJobs{Jobs: make([]BackupJob, len(resp.GetJobs()))}
		for i, j := range resp.GetJobs() {
			out.Jobs[i] = toBackupJob(j)
		}
		WriteJSON(w, http.StatusOK, out)
	})
}

// pathID returns the {id} of r, checked, with r's query (which must be
// empty); what names it ("job id").
func pathID(r *http.Request, what, where string) (string, error) {
	id := r.PathValue("id")
	if err := sdk.ValidateID(what, id); err != nil {
		return "", err
	}
	return id, noQuery(r, where)
}

// jobHandler serves GET (op "get") or DELETE (op "cancel")
// /v1/backups/jobs/{id} with call, the plugin's GetJob or CancelJob.
func (s *Server) jobHandler(op string, call func(context.Context, dwv1.BackupClient, string) (*dwv1.Job, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := pathID(r, "job id", r.Method+" "+backupsPath+"/jobs/{id}")
		if err != nil {
			WriteError(w, err)
			return
		}
		serveBackup(s, w, r, op+" backup job "+id, false, func(ctx context.Context, c dwv1.BackupClient) (*dwv1.Job, error) {
			return call(ctx, c, id)
		}, func(job *dwv1.Job) { WriteJSON(w, http.StatusOK, toBackupJob(job)) })
	}
}

// Snapshot is a complete snapshot in every /v1/backups answer; Kind is
// "full" or "incremental", Chain the id of the full that starts its chain.
type Snapshot struct {
	ID          string  `json:"id"`
	Source      string  `json:"source"`
	Kind        string  `json:"kind"`
	Parent      string  `json:"parent"`
	Chain       string  `json:"chain"`
	StartedAt   *string `json:"started_at"`
	CompletedAt *string `json:"completed_at"`
	Files       int64   `json:"files"`
	Dirs        int64   `json:"dirs"`
	Symlinks    int64   `json:"symlinks"`
	Bytes       int64   `json:"bytes"`
	AddedBytes  int64   `json:"added_bytes"`
	JobID       string  `json:"job_id"`
}

func toSnapshots(snaps []*dwv1.Snapshot) []Snapshot {
	out := make([]Snapshot, len(snaps))
	for i, sn := range snaps {
		out[i] = Snapshot{
			ID: sn.GetId(), Source: sn.GetSource(), Kind: sn.GetKind(), Parent: sn.GetParent(), Chain: sn.GetChain(),
			StartedAt: optionalTime(sn.GetStartedAt()), CompletedAt: optionalTime(sn.GetCompletedAt()),
			Files: sn.GetFiles(), Dirs: sn.GetDirs(), Symlinks: sn.GetSymlinks(), Bytes: sn.GetBytes(),
			AddedBytes: sn.GetAddedBytes(), JobID: sn.GetJobId(),
		}
	}
	return out
}

// Chain is one chain of GET /v1/backups/snapshots: its id (the full that
// starts it) and its snapshots, oldest first.
type Chain struct {
	ID        string     `json:"id"`
	Source    string     `json:"source"`
	Snapshots []Snapshot `json:"snapshots"`
}

// Chains is GET /v1/backups/snapshots.
type Chains struct {
	Chains []Chain `json:"chains"`
}

// listSnapshots serves GET /v1/backups/snapshots.
func (s *Server) listSnapshots(w http.ResponseWriter, r *http.Request) {
	q, err := parseQuery(r.URL.RawQuery, "GET "+backupsPath+"/snapshots", "source")
	src, filtered := q["source"]
	if err == nil && filtered {
		err = validateSource(src)
	}
	if err != nil {
		WriteError(w, err)
		return
	}
	what := "list snapshots"
	if filtered {
		what += " of source " + shown(src)
	}
	serveBackup(s, w, r, what, false, func(ctx context.Context, c dwv1.BackupClient) (*dwv1.ListSnapshotsResponse, error) {
		return c.ListSnapshots(ctx, &dwv1.ListSnapshotsRequest{Source: src})
	}, func(resp *dwv1.ListSnapshotsResponse) {
		out := Chains{Chains: make([]Chain, len(resp.GetChains()))}
		for i, c := range resp.GetChains() {
			out.Chains[i] = Chain{ID: c.GetId(), Source: c.GetSource(), Snapshots: toSnapshots(c.GetSnapshots())}
		}
		WriteJSON(w, http.StatusOK, out)
	})
}

// ForgetResult is DELETE /v1/backups/snapshots/{id}: the snapshots whose
// parent or chain changed because of it.
type ForgetResult struct {
	Rebased []string `json:"rebased"`
}

// forgetSnapshot serves DELETE /v1/backups/snapshots/{id}.
func (s *Server) forgetSnapshot(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "snapshot id", "DELETE "+backupsPath+"/snapshots/{id}")
	if err != nil {
		WriteError(w, err)
		return
	}
	serveBackup(s, w, r, "forget snapshot "+id, false, func(ctx context.Context, c dwv1.BackupClient) (*dwv1.ForgetSnapshotResponse, error) {
		return c.ForgetSnapshot(ctx, &dwv1.ForgetSnapshotRequest{Id: id})
	}, func(resp *dwv1.ForgetSnapshotResponse) {
		WriteJSON(w, http.StatusOK, ForgetResult{Rebased: orEmpty(resp.GetRebased())})
	})
}

// orEmpty is list, or an empty list for nil: JSON [] rather than null.
func orEmpty(list []string) []string {
	if list == nil {
		return []string{}
	}
	return list
}

// PruneResult is POST /v1/backups/prune: the snapshots retention forgets
// (or would, with DryRun) and why, by id, and the repository space freed.
type PruneResult struct {
	DryRun         bool              `json:"dry_run"`
	Forget         []Snapshot        `json:"forget"`
	Reasons        map[string]string `json:"reasons"`
	PacksRemoved   int64             `json:"packs_removed"`
	PacksRewritten int64             `json:"packs_rewritten"`
	BytesFreed     int64             `json:"bytes_freed"`
}

// pruneBackups serves POST /v1/backups/prune.
func (s *Server) pruneBackups(w http.ResponseWriter, r *http.Request) {
	const where = "POST " + backupsPath + "/prune"
	q, err := parseQuery(r.URL.RawQuery, where, "dry_run")
	var dryRun bool
	if err == nil {
		dryRun, err = boolParam(q, "dry_run")
	}
	if err == nil {
		err = readJSONObject(w, r, where, &struct{}{}, true)
	}
	if err != nil {
		WriteError(w, err)
		return
	}
	what := "prune backups"
	if dryRun {
		what += " (dry run)"
	}
	serveBackup(s, w, r, what, true, func(ctx context.Context, c dwv1.BackupClient) (*dwv1.PruneResponse, error) {
		return c.Prune(ctx, &dwv1.PruneRequest{DryRun: dryRun})
	}, func(resp *dwv1.PruneResponse) {
		out := PruneResult{DryRun: resp.GetDryRun(), Forget: toSnapshots(resp.GetForget()), Reasons: resp.GetReasons(),
			PacksRemoved: resp.GetPacksRemoved(), PacksRewritten: resp.GetPacksRewritten(), BytesFreed: resp.GetBytesFreed()}
		if out.Reasons == nil {
			out.Reasons = map[string]string{}
		}
		WriteJSON(w, http.StatusOK, out)
	})
}

// VerifyResult is POST /v1/backups/verify; OK when no problem was found.
type VerifyResult struct {
	OK           bool     `json:"ok"`
	Snapshots    int64    `json:"snapshots"`
	BlobsChecked int64    `json:"blobs_checked"`
	BytesChecked int64    `json:"bytes_checked"`
	Problems     []string `json:"problems"`
}

// verifyBackups serves POST /v1/backups/verify.
func (s *Server) verifyBackups(w http.ResponseWriter, r *http.Request) {
	const where = "POST " + backupsPath + "/verify"
	err := noQuery(r, where)
	if err == nil {
		err = readJSONObject(w, r, where, &struct{}{}, true)
	}
	if err != nil {
		WriteError(w, err)
		return
	}
	serveBackup(s, w, r, "verify backups", true, func(ctx context.Context, c dwv1.BackupClient) (*dwv1.VerifyResponse, error) {
		return c.Verify(ctx, &dwv1.VerifyRequest{})
	}, func(resp *dwv1.VerifyResponse) {
		WriteJSON(w, http.StatusOK, VerifyResult{OK: len(resp.GetProblems()) == 0, Snapshots: resp.GetSnapshots(),
			BlobsChecked: resp.GetBlobsChecked(), BytesChecked: resp.GetBytesChecked(), Problems: orEmpty(resp.GetProblems())})
	})
}
