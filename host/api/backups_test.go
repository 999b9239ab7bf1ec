package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/datawarehouse/dw/sdk/v6"
	"github.com/datawarehouse/dw/sdk/v6/pluginhost"
	dwv1 "github.com/datawarehouse/dw/sdk/v6/proto/dw/v1"
)

// backupCallRecord is what fakeBackup saw of one call.
type backupCallRecord struct {
	method      string
	req         proto.Message
	caller      string
	hasDeadline bool
}

// fakeBackup is a Backup service over memory, following backup.proto
// closely enough for the host's logic: jobs by id (listed newest first,
// cancel refuses finished ones), chains of snapshots (forget re-bases the
// children of the forgotten one), known sources. The func fields, when
// set, replace one method.
type fakeBackup struct {
	dwv1.UnimplementedBackupServer

	StartBackupFunc    func(*dwv1.StartBackupRequest) (*dwv1.Job, error)
	StartRestoreFunc   func(*dwv1.StartRestoreRequest) (*dwv1.Job, error)
	GetJobFunc         func(*dwv1.GetJobRequest) (*dwv1.Job, error)
	ListJobsFunc       func(*dwv1.ListJobsRequest) (*dwv1.ListJobsResponse, error)
	CancelJobFunc      func(*dwv1.CancelJobRequest) (*dwv1.Job, error)
	ListSnapshotsFunc  func(*dwv1.ListSnapshotsRequest) (*dwv1.ListSnapshotsResponse, error)
	ForgetSnapshotFunc func(*dwv1.ForgetSnapshotRequest) (*dwv1.ForgetSnapshotResponse, error)
	PruneFunc          func(*dwv1.PruneRequest) (*dwv1.PruneResponse, error)
	VerifyFunc         func(*dwv1.VerifyRequest) (*dwv1.VerifyResponse, error)

	mu        sync.Mutex
	sources   []string
	jobs      []*dwv1.Job // oldest first
	snapshots []*dwv1.Snapshot
	callLog
}

var _ dwv1.BackupServer = (*fakeBackup)(nil)

func newFakeBackup() *fakeBackup {
	ts := func(s int) *timestamppb.Timestamp {
		return timestamppb.New(fakeEpoch.Add(time.Duration(s) * time.Second))
	}
	snap := func(id, source, kind, parent, chain string, at int) *dwv1.Snapshot {
		return &dwv1.Snapshot{Id: id, Source: source, Kind: kind, Parent: parent, Chain: chain, StartedAt: ts(at),
			CompletedAt: ts(at + 1), Files: 10, Dirs: 2, Symlinks: 1, Bytes: 1000, AddedBytes: 100, JobId: "job-" + id}
	}
	return &fakeBackup{
		sources: []string{"docs", "photos"},
		snapshots: []*dwv1.Snapshot{
			snap("s1", "docs", "full", "", "s1", 10),
			snap("s2", "docs", "incremental", "s1", "s1", 20),
			snap("s3", "docs", "incremental", "s2", "s1", 30),
			snap("p1", "photos", "full", "", "p1", 40),
		},
	}
}

// callLog records the calls a fake plugin service receives.
type callLog struct {
	logMu sync.Mutex
	calls []backupCallRecord
}

func (l *callLog) record(ctx context.Context, method string, req proto.Message) {
	_, ok := ctx.Deadline()
	l.logMu.Lock()
	l.calls = append(l.calls, backupCallRecord{method: method, req: req, caller: sdk.Caller(ctx), hasDeadline: ok})
	l.logMu.Unlock()
}

func (l *callLog) allCalls() []backupCallRecord {
	l.logMu.Lock()
	defer l.logMu.Unlock()
	return slices.Clone(l.calls)
}

func (l *callLog) lastCall() backupCallRecord {
	l.logMu.Lock()
	defer l.logMu.Unlock()
	if len(l.calls) == 0 {
		return backupCallRecord{}
	}
	return l.calls[len(l.calls)-1]
}

func (f *fakeBackup) newJob(j *dwv1.Job) *dwv1.Job {
	f.mu.Lock()
	defer f.mu.Unlock()
	j.Id = fmt.Sprintf("job-%d", len(f.jobs)+1)
	j.State = dwv1.JobState_JOB_STATE_QUEUED
	j.Progress = &dwv1.JobProgress{}
	j.CreatedAt = timestamppb.New(fakeEpoch.Add(time.Duration(len(f.jobs)) * time.Minute))
	f.jobs = append(f.jobs, j)
	return proto.Clone(j).(*dwv1.Job)
}

func (f *fakeBackup) job(id string) (*dwv1.Job, bool) {
	for _, j := range f.jobs {
		if j.GetId() == id {
			return j, true
		}
	}
	return nil, false
}

func (f *fakeBackup) StartBackup(ctx context.Context, req *dwv1.StartBackupRequest) (*dwv1.Job, error) {
	f.record(ctx, "StartBackup", req)
	if f.StartBackupFunc != nil {
		return f.StartBackupFunc(req)
	}
	if !slices.Contains(f.sources, req.GetSource()) {
		return nil, fmt.Errorf("source %q: %w", req.GetSource(), sdk.ErrNotFound)
	}
	return f.newJob(&dwv1.Job{Kind: dwv1.JobKind_JOB_KIND_BACKUP, Source: req.GetSource(), BackupKind: req.GetKind()}), nil
}

func (f *fakeBackup) StartRestore(ctx context.Context, req *dwv1.StartRestoreRequest) (*dwv1.Job, error) {
	f.record(ctx, "StartRestore", req)
	if f.StartRestoreFunc != nil {
		return f.StartRestoreFunc(req)
	}
	f.mu.Lock()
	found := slices.ContainsFunc(f.snapshots, func(s *dwv1.Snapshot) bool { return s.GetId() == req.GetSnapshot() })
	f.mu.Unlock()
	if !found {
		return nil, fmt.Errorf("snapshot %q: %w", req.GetSnapshot(), sdk.ErrNotFound)
	}
	return f.newJob(&dwv1.Job{Kind: dwv1.JobKind_JOB_KIND_RESTORE, Snapshot: req.GetSnapshot(), Target: req.GetTarget()}), nil
}

func (f *fakeBackup) GetJob(ctx context.Context, req *dwv1.GetJobRequest) (*dwv1.Job, error) {
	f.record(ctx, "GetJob", req)
	if f.GetJobFunc != nil {
		return f.GetJobFunc(req)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if j, ok := f.job(req.GetId()); ok {
		return proto.Clone(j).(*dwv1.Job), nil
	}
	return nil, fmt.Errorf("job %q: %w", req.GetId(), sdk.ErrNotFound)
}

func (f *fakeBackup) ListJobs(ctx context.Context, req *dwv1.ListJobsRequest) (*dwv1.ListJobsResponse, error) {
	f.record(ctx, "ListJobs", req)
	if f.ListJobsFunc != nil {
		return f.ListJobsFunc(req)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	resp := &dwv1.ListJobsResponse{}
	for i := len(f.jobs) - 1; i >= 0; i-- {
		resp.Jobs = append(resp.Jobs, proto.Clone(f.jobs[i]).(*dwv1.Job))
	}
	return resp, nil
}

func (f *fakeBackup) CancelJob(ctx context.Context, req *dwv1.CancelJobRequest) (*dwv1.Job, error) {
	f.record(ctx, "CancelJob", req)
	if f.CancelJobFunc != nil {
		return f.CancelJobFunc(req)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	j, ok := f.job(req.GetId())
	switch {
	case !ok:
		return nil, fmt.Errorf("job %q: %w", req.GetId(), sdk.ErrNotFound)
	case j.GetState() != dwv1.JobState_JOB_STATE_QUEUED && j.GetState() != dwv1.JobState_JOB_STATE_RUNNING:
		return nil, fmt.Errorf("cancel job %q: %w: it is %s", req.GetId(), sdk.ErrFailedPrecondition, j.GetState())
	}
	j.State = dwv1.JobState_JOB_STATE_CANCELLED
	j.FinishedAt = timestamppb.New(fakeEpoch.Add(time.Hour))
	return proto.Clone(j).(*dwv1.Job), nil
}

func (f *fakeBackup) ListSnapshots(ctx context.Context, req *dwv1.ListSnapshotsRequest) (*dwv1.ListSnapshotsResponse, error) {
	f.record(ctx, "ListSnapshots", req)
	if f.ListSnapshotsFunc != nil {
		return f.ListSnapshotsFunc(req)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if req.GetSource() != "" && !slices.Contains(f.sources, req.GetSource()) {
		return nil, fmt.Errorf("source %q: %w", req.GetSource(), sdk.ErrNotFound)
	}
	resp := &dwv1.ListSnapshotsResponse{}
	byChain := map[string]*dwv1.Chain{}
	for _, s := range f.snapshots {
		if req.GetSource() != "" && s.GetSource() != req.GetSource() {
			continue
		}
		c, ok := byChain[s.GetChain()]
		if !ok {
			c = &dwv1.Chain{Id: s.GetChain(), Source: s.GetSource()}
			byChain[s.GetChain()] = c
			resp.Chains = append(resp.Chains, c)
		}
		c.Snapshots = append(c.Snapshots, proto.Clone(s).(*dwv1.Snapshot))
	}
	return resp, nil
}

func (f *fakeBackup) ForgetSnapshot(ctx context.Context, req *dwv1.ForgetSnapshotRequest) (*dwv1.ForgetSnapshotResponse, error) {
	f.record(ctx, "ForgetSnapshot", req)
	if f.ForgetSnapshotFunc != nil {
		return f.ForgetSnapshotFunc(req)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	i := slices.IndexFunc(f.snapshots, func(s *dwv1.Snapshot) bool { return s.GetId() == req.GetId() })
	if i < 0 {
		return nil, fmt.Errorf("snapshot %q: %w", req.GetId(), sdk.ErrNotFound)
	}
	gone := f.snapshots[i]
	f.snapshots = slices.Delete(f.snapshots, i, i+1)
	resp := &dwv1.ForgetSnapshotResponse{}
	for _, s := range f.snapshots {
		if s.GetParent() == gone.GetId() {
			s.Parent = gone.GetParent()
			resp.Rebased = append(resp.Rebased, s.GetId())
		}
	}
	return resp, nil
}

func (f *fakeBackup) Prune(ctx context.Context, req *dwv1.PruneRequest) (*dwv1.PruneResponse, error) {
	f.record(ctx, "Prune", req)
	if f.PruneFunc != nil {
		return f.PruneFunc(req)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return &dwv1.PruneResponse{DryRun: req.GetDryRun(), Forget: []*dwv1.Snapshot{proto.Clone(f.snapshots[0]).(*dwv1.Snapshot)},
		Reasons: map[string]string{f.snapshots[0].GetId(): "older than keep_within"}, PacksRemoved: 2, PacksRewritten: 1, BytesFreed: 4096}, nil
}

func (f *fakeBackup) Verify(ctx context.Context, req *dwv1.VerifyRequest) (*dwv1.VerifyResponse, error) {
	f.record(ctx, "Verify", req)
	if f.VerifyFunc != nil {
		return f.VerifyFunc(req)
	}
	return &dwv1.VerifyResponse{Snapshots: 4, BlobsChecked: 40, BytesChecked: 4000}, nil
}

// backupEnv is the admin API over a fake Backup service.
type backupEnv struct {
	*apiEnv
	fake *fakeBackup
}

func newBackupEnv(t testing.TB) *backupEnv {
	t.Helper()
	fake := newFakeBackup()
	client := connectStore(t, func(s *grpc.Server) { dwv1.RegisterBackupServer(s, fake) })
	return &backupEnv{apiEnv: newAPIEnv(t, BackupsSubsystem, client, nil), fake: fake}
}

// compactJSON is s with insignificant white space removed.
func compactJSON(t testing.TB, s string) string {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("not JSON: %v: %s", err, s)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func TestBackupStartAndJobs(t *testing.T) {
	e := newBackupEnv(t)
	tests := []struct {
		name, body   string
		wantKind     string // backup_kind the plugin gets
		wantSource   string
		wantLocation string
	}{
		{"full", `{"source":"docs","kind":"full"}`, "full", "docs", "/v1/backups/jobs/job-1"},
		{"incremental", `{"kind":"incremental","source":"photos"}`, "incremental", "photos", "/v1/backups/jobs/job-2"},
		{"kind left out", `{"source":"docs"}`, "incremental", "docs", "/v1/backups/jobs/job-3"},
		{"kind null", `{"source":"docs","kind":null}`, "incremental", "docs", "/v1/backups/jobs/job-4"},
		{"white space", " \n{ \"source\" : \"docs\" }\n ", "incremental", "docs", "/v1/backups/jobs/job-5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, r := callJSON[StartedJob](t, e.apiEnv, "POST", "/v1/backups", tt.body, nil, 202)
			if loc := r.header.Get("Location"); loc != tt.wantLocation {
				t.Errorf("Location %q, want %q", loc, tt.wantLocation)
			}
			if got.JobID != strings.TrimPrefix(tt.wantLocation, "/v1/backups/jobs/") || got.Job.ID != got.JobID ||
				got.Job.Kind != "backup" || got.Job.State != "queued" || got.Job.Source != tt.wantSource ||
				got.Job.BackupKind != tt.wantKind || got.Job.StartedAt != nil || got.Job.CreatedAt == nil {
				t.Errorf("answer %+v", got)
			}
			c := e.fake.lastCall()
			req, _ := c.req.(*dwv1.StartBackupRequest)
			if c.method != "StartBackup" || req.GetSource() != tt.wantSource || req.GetKind() != tt.wantKind || c.caller != "alice" || !c.hasDeadline {
				t.Errorf("plugin got %+v", c)
			}
			job, _ := callJSON[BackupJob](t, e.apiEnv, "GET", tt.wantLocation, "", nil, 200)
			if !jobsEqual(job, got.Job) {
				t.Errorf("GET %s: %+v, want %+v", tt.wantLocation, job, got.Job)
			}
		})
	}

	list, _ := callJSON[BackupJobs](t, e.apiEnv, "GET", "/v1/backups/jobs", "", nil, 200)
	var ids []string
	for _, j := range list.Jobs {
		ids = append(ids, j.ID)
	}
	if strings.Join(ids, ",") != "job-5,job-4,job-3,job-2,job-1" {
		t.Errorf("jobs %v, want newest first", ids)
	}

	// Cancel: 200 with the job; again: 409; an unknown job: 404.
	job, _ := callJSON[BackupJob](t, e.apiEnv, "DELETE", "/v1/backups/jobs/job-2", "", nil, 200)
	if job.ID != "job-2" || job.State != "cancelled" || job.FinishedAt == nil {
		t.Errorf("cancel answered %+v", job)
	}
	if c := e.fake.lastCall(); c.method != "CancelJob" || c.req.(*dwv1.CancelJobRequest).GetId() != "job-2" || c.caller != "alice" {
		t.Errorf("plugin got %+v", c)
	}
	wantError(t, e.call(t, "DELETE", "/v1/backups/jobs/job-2", "", nil), 409, "cancel backup job job-2", "it is JOB_STATE_CANCELLED")
	wantError(t, e.call(t, "DELETE", "/v1/backups/jobs/nope", "", nil), 404, "cancel backup job nope")
	wantError(t, e.call(t, "GET", "/v1/backups/jobs/nope", "", nil), 404, "get backup job nope")
	// An unknown source is the plugin's to say.
	wantError(t, e.call(t, "POST", "/v1/backups", `{"source":"music"}`, nil), 404, `source "music"`)
}

func jobsEqual(a, b BackupJob) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

func TestBackupRestore(t *testing.T) {
	e := newBackupEnv(t)
	got, r := callJSON[StartedJob](t, e.apiEnv, "POST", "/v1/backups/restores", `{"snapshot":"s2","target":"docs/2026-01-02"}`, nil, 202)
	if r.header.Get("Location") != "/v1/backups/jobs/"+got.JobID || got.Job.Kind != "restore" || got.Job.Snapshot != "s2" ||
		got.Job.Target != "docs/2026-01-02" || got.Job.State != "queued" {
		t.Errorf("answer %+v, Location %q", got, r.header.Get("Location"))
	}
	c := e.fake.lastCall()
	if req, _ := c.req.(*dwv1.StartRestoreRequest); c.method != "StartRestore" || req.GetSnapshot() != "s2" || req.GetTarget() != "docs/2026-01-02" || c.caller != "alice" {
		t.Errorf("plugin got %+v", c)
	}
	wantError(t, e.call(t, "POST", "/v1/backups/restores", `{"snapshot":"zz","target":"x"}`, nil), 404, `snapshot "zz"`)
	// The plugin's own refusal of a target (outside its restore root).
	e.fake.StartRestoreFunc = func(*dwv1.StartRestoreRequest) (*dwv1.Job, error) {
		return nil, fmt.Errorf("restore target %q: %w: a symlink out of the restore root", "link", sdk.ErrInvalidArgument)
	}
	wantError(t, e.call(t, "POST", "/v1/backups/restores", `{"snapshot":"s1","target":"link"}`, nil), 400, "restore root")
}

func TestBackupBadBodies(t *testing.T) {
	e := newBackupEnv(t)
	big := `{"source":"` + strings.Repeat("a", maxBackupBody) + `"}`
	tests := []struct {
		name, path, body string
		code             int
		contains         []string
	}{
		{"empty", "/v1/backups", "", 400, []string{"empty", "source, kind"}},
		{"blank", "/v1/backups", " \n", 400, []string{"empty"}},
		{"not JSON", "/v1/backups", "source=docs", 400, []string{"not valid JSON"}},
		{"truncated", "/v1/backups", `{"source":"docs"`, 400, []string{"not valid JSON"}},
		{"array", "/v1/backups", `[{"source":"docs"}]`, 400, []string{"not a JSON object"}},
		{"null", "/v1/backups", `null`, 400, []string{"not a JSON object"}},
		{"string", "/v1/backups", `"docs"`, 400, []string{"not a JSON object"}},
		{"two objects", "/v1/backups", `{"source":"docs"}{"source":"docs"}`, 400, []string{"more than one JSON value"}},
		{"trailing garbage", "/v1/backups", `{"source":"docs"} x`, 400, []string{"more than one JSON value"}},
		{"unknown key", "/v1/backups", `{"source":"docs","priority":"high"}`, 400, []string{`unknown key "priority"`, "source, kind"}},
		{"key in another case", "/v1/backups", `{"Source":"docs"}`, 400, []string{`unknown key "Source"`}},
		{"key twice", "/v1/backups", `{"source":"docs","source":"photos"}`, 400, []string{"key source given twice"}},
		{"source a number", "/v1/backups", `{"source":5}`, 400, []string{"key source: must be a string, not a number"}},
		{"kind a bool", "/v1/backups", `{"source":"docs","kind":true}`, 400, []string{"key kind: must be a string, not a bool"}},
		{"source an object", "/v1/backups", `{"source":{"name":"docs"}}`, 400, []string{"key source: must be a string, not a object"}},
		{"source missing", "/v1/backups", `{"kind":"full"}`, 400, []string{"source is missing"}},
		{"source null", "/v1/backups", `{"source":null}`, 400, []string{"source is missing"}},
		{"source empty", "/v1/backups", `{"source":""}`, 400, []string{"source: invalid argument: is empty"}},
		{"source with a control character", "/v1/backups", `{"source":"do\u0000cs"}`, 400, []string{"control characters"}},
		{"source too long", "/v1/backups", `{"source":"` + strings.Repeat("s", maxSourceBytes+1) + `"}`, 400, []string{"at most 256 bytes"}},
		{"kind unknown", "/v1/backups", `{"source":"docs","kind":"differential"}`, 400, []string{`kind "differential"`, "full or incremental"}},
		{"kind in capitals", "/v1/backups", `{"source":"docs","kind":"FULL"}`, 400, []string{"full or incremental"}},
		{"kind empty", "/v1/backups", `{"source":"docs","kind":""}`, 400, []string{"full or incremental"}},
		{"not UTF-8", "/v1/backups", "{\"source\":\"d\xffcs\"}", 400, []string{"not valid UTF-8"}},
		{"over 64 KiB", "/v1/backups", big, 413, []string{"larger than 65536 bytes"}},
		{"restore empty", "/v1/backups/restores", "", 400, []string{"empty", "snapshot, target"}},
		{"restore unknown key", "/v1/backups/restores", `{"snapshot":"s1","target":"t","overwrite":true}`, 400, []string{`unknown key "overwrite"`}},
		{"restore snapshot missing", "/v1/backups/restores", `{"target":"t"}`, 400, []string{"snapshot is missing"}},
		{"restore target missing", "/v1/backups/restores", `{"snapshot":"s1"}`, 400, []string{"target is missing"}},
		{"restore snapshot a number", "/v1/backups/restores", `{"snapshot":1,"target":"t"}`, 400, []string{"key snapshot: must be a string"}},
		{"restore bad snapshot id", "/v1/backups/restores", `{"snapshot":"s1/../s2","target":"t"}`, 400, []string{`snapshot id "s1/../s2"`, "1 to 128"}},
		{"restore target climbs out", "/v1/backups/restores", `{"snapshot":"s1","target":"../etc"}`, 400, []string{"restore target", `contains ".."`}},
		{"restore target absolute", "/v1/backups/restores", `{"snapshot":"s1","target":"/etc"}`, 400, []string{"restore target", "absolute"}},
		{"restore target empty", "/v1/backups/restores", `{"snapshot":"s1","target":""}`, 400, []string{"restore target", "is empty"}},
		{"restore target backslash", "/v1/backups/restores", `{"snapshot":"s1","target":"a\\b"}`, 400, []string{"restore target"}},
		{"restore over 64 KiB", "/v1/backups/restores", big, 413, []string{"larger than 65536 bytes"}},
		{"prune with a key", "/v1/backups/prune", `{"dry_run":true}`, 400, []string{`unknown key "dry_run"`, "keys none"}},
		{"prune not JSON", "/v1/backups/prune", `yes`, 400, []string{"not valid JSON"}},
		{"verify with a key", "/v1/backups/verify", `{"deep":true}`, 400, []string{`unknown key "deep"`}},
		{"verify array", "/v1/backups/verify", `[]`, 400, []string{"not a JSON object"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(e.fake.allCalls())
			wantError(t, e.call(t, "POST", tt.path, tt.body, nil), tt.code, tt.contains...)
			if calls := e.fake.allCalls(); len(calls) != before {
				t.Errorf("the plugin was called: %+v", calls[before:])
			}
		})
	}
	// An empty body or {} is what prune and verify take.
	for _, path := range []string{"/v1/backups/prune", "/v1/backups/verify"} {
		for _, body := range []string{"", "{}", " { } "} {
			if r := e.call(t, "POST", path, body, nil); r.code != 200 {
				t.Errorf("POST %s with %q: %d %s", path, body, r.code, r.body)
			}
		}
	}
}

func TestBackupBadIDs(t *testing.T) {
	e := newBackupEnv(t)
	bad := []struct{ name, escaped, shown string }{
		{"dot", "a.b", `"a.b"`},
		{"encoded slash", "a%2Fb", `"a/b"`},
		{"space", "a%20b", `"a b"`},
		{"unicode", "%C3%A9t%C3%A9", `"été"`},
		{"129 bytes", strings.Repeat("j", 129), "1 to 128"},
		{"NUL", "a%00b", `"a\x00b"`},
		{"colon", "a:b", `"a:b"`},
	}
	for _, route := range []struct{ method, prefix, what string }{
		{"GET", "/v1/backups/jobs/", "job id"},
		{"DELETE", "/v1/backups/jobs/", "job id"},
		{"DELETE", "/v1/backups/snapshots/", "snapshot id"},
	} {
		for _, tt := range bad {
			t.Run(route.method+" "+route.what+" "+tt.name, func(t *testing.T) {
				before := len(e.fake.allCalls())
				wantError(t, e.call(t, route.method, route.prefix+tt.escaped, "", nil), 400, route.what, tt.shown)
				if calls := e.fake.allCalls(); len(calls) != before {
					t.Errorf("the plugin was called: %+v", calls[before:])
				}
			})
		}
	}
	// The longest and every allowed character.
	for _, id := range []string{strings.Repeat("J", 128), "AZaz09_-"} {
		e.fake.GetJobFunc = func(req *dwv1.GetJobRequest) (*dwv1.Job, error) { return &dwv1.Job{Id: req.GetId()}, nil }
		if job, _ := callJSON[BackupJob](t, e.apiEnv, "GET", "/v1/backups/jobs/"+id, "", nil, 200); job.ID != id {
			t.Errorf("GET job %q: %+v", id, job)
		}
	}
	// Paths with no id, or more than one segment, are not these routes.
	for _, p := range []string{"/v1/backups/jobs/", "/v1/backups/jobs/a/b", "/v1/backups/snapshots/", "/v1/backups/x"} {
		if r := e.call(t, "GET", p, "", nil); r.code != 404 && r.code != 405 {
			t.Errorf("GET %s: %d %s", p, r.code, r.body)
		}
	}
}

func TestBackupBadQueries(t *testing.T) {
	e := newBackupEnv(t)
	tests := []struct {
		method, path, body string
		contains           []string
	}{
		{"POST", "/v1/backups?kind=full", `{"source":"docs"}`, []string{`query parameter "kind"`, "allowed: none"}},
		{"GET", "/v1/backups/jobs?state=running", "", []string{`query parameter "state"`, "allowed: none"}},
		{"GET", "/v1/backups/jobs/job-1?x=1", "", []string{`query parameter "x"`}},
		{"DELETE", "/v1/backups/jobs/job-1?force=true", "", []string{`query parameter "force"`}},
		{"GET", "/v1/backups/snapshots?chain=s1", "", []string{`query parameter "chain"`, "allowed: source"}},
		{"GET", "/v1/backups/snapshots?source=docs&source=photos", "", []string{"given 2 times"}},
		{"GET", "/v1/backups/snapshots?source=", "", []string{"source: invalid argument: is empty"}},
		{"GET", "/v1/backups/snapshots?source=a%01b", "", []string{"control characters"}},
		{"GET", "/v1/backups/snapshots?source=%zz", "", []string{"query of GET /v1/backups/snapshots"}},
		{"DELETE", "/v1/backups/snapshots/s1?x=", "", []string{`query parameter "x"`}},
		{"POST", "/v1/backups/prune?dry_run=yes", "", []string{`dry_run "yes"`, "true or false"}},
		{"POST", "/v1/backups/prune?dry_run=1", "", []string{"true or false"}},
		{"POST", "/v1/backups/prune?dry_run", "", []string{"true or false"}},
		{"POST", "/v1/backups/prune?dry_run=true&dry_run=false", "", []string{"given 2 times"}},
		{"POST", "/v1/backups/prune?dryrun=true", "", []string{`query parameter "dryrun"`, "allowed: dry_run"}},
		{"POST", "/v1/backups/restores?wait=true", `{"snapshot":"s1","target":"t"}`, []string{`query parameter "wait"`}},
		{"POST", "/v1/backups/verify?deep=true", "", []string{`query parameter "deep"`}},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			before := len(e.fake.allCalls())
			wantError(t, e.call(t, tt.method, tt.path, tt.body, nil), 400, tt.contains...)
			if calls := e.fake.allCalls(); len(calls) != before {
				t.Errorf("the plugin was called: %+v", calls[before:])
			}
		})
	}
}

func TestBackupSnapshots(t *testing.T) {
	e := newBackupEnv(t)
	r := e.call(t, "GET", "/v1/backups/snapshots?source=photos", "", nil)
	want := `{"chains":[{"id":"p1","source":"photos","snapshots":[{"id":"p1","source":"photos","kind":"full","parent":"","chain":"p1",
		"started_at":"2026-01-02T03:04:45.123456789Z","completed_at":"2026-01-02T03:04:46.123456789Z","files":10,"dirs":2,
		"symlinks":1,"bytes":1000,"added_bytes":100,"job_id":"job-p1"}]}]}`
	if r.code != 200 || compactJSON(t, r.body) != compactJSON(t, want) {
		t.Errorf("GET snapshots?source=photos: %d %s", r.code, r.body)
	}
	if c := e.fake.lastCall(); c.method != "ListSnapshots" || c.req.(*dwv1.ListSnapshotsRequest).GetSource() != "photos" || c.caller != "alice" {
		t.Errorf("plugin got %+v", c)
	}
	all, _ := callJSON[Chains](t, e.apiEnv, "GET", "/v1/backups/snapshots", "", nil, 200)
	var shape []string
	for _, c := range all.Chains {
		var ids []string
		for _, s := range c.Snapshots {
			ids = append(ids, s.ID+"<"+s.Parent)
		}
		shape = append(shape, c.Source+":"+c.ID+"["+strings.Join(ids, " ")+"]")
	}
	if got := strings.Join(shape, " "); got != "docs:s1[s1< s2<s1 s3<s2] photos:p1[p1<]" {
		t.Errorf("chains %s", got)
	}
	if c := e.fake.lastCall(); c.req.(*dwv1.ListSnapshotsRequest).GetSource() != "" {
		t.Errorf("unfiltered listing sent source %q", c.req.(*dwv1.ListSnapshotsRequest).GetSource())
	}
	wantError(t, e.call(t, "GET", "/v1/backups/snapshots?source=music", "", nil), 404, `list snapshots of source "music"`)

	// Forget re-bases; forgetting again is 404.
	f, _ := callJSON[ForgetResult](t, e.apiEnv, "DELETE", "/v1/backups/snapshots/s2", "", nil, 200)
	if strings.Join(f.Rebased, ",") != "s3" {
		t.Errorf("rebased %v", f.Rebased)
	}
	if c := e.fake.lastCall(); c.method != "ForgetSnapshot" || c.req.(*dwv1.ForgetSnapshotRequest).GetId() != "s2" || c.caller != "alice" {
		t.Errorf("plugin got %+v", c)
	}
	if r := e.call(t, "DELETE", "/v1/backups/snapshots/p1", "", nil); r.code != 200 || compactJSON(t, r.body) != `{"rebased":[]}` {
		t.Errorf("forget p1: %d %s", r.code, r.body)
	}
	wantError(t, e.call(t, "DELETE", "/v1/backups/snapshots/s2", "", nil), 404, "forget snapshot s2")

	// No snapshots at all: [] not null.
	e.fake.ListSnapshotsFunc = func(*dwv1.ListSnapshotsRequest) (*dwv1.ListSnapshotsResponse, error) {
		return &dwv1.ListSnapshotsResponse{Chains: []*dwv1.Chain{{Id: "c", Source: "docs"}}}, nil
	}
	if r := e.call(t, "GET", "/v1/backups/snapshots", "", nil); compactJSON(t, r.body) != `{"chains":[{"id":"c","snapshots":[],"source":"docs"}]}` {
		t.Errorf("empty chain: %s", r.body)
	}
	e.fake.ListSnapshotsFunc = func(*dwv1.ListSnapshotsRequest) (*dwv1.ListSnapshotsResponse, error) {
		return &dwv1.ListSnapshotsResponse{}, nil
	}
	if r := e.call(t, "GET", "/v1/backups/snapshots", "", nil); compactJSON(t, r.body) != `{"chains":[]}` {
		t.Errorf("no chains: %s", r.body)
	}
}

func TestBackupPrune(t *testing.T) {
	e := newBackupEnv(t)
	for _, tt := range []struct {
		query string
		dry   bool
	}{{"", false}, {"?dry_run=false", false}, {"?dry_run=true", true}} {
		r := e.call(t, "POST", "/v1/backups/prune"+tt.query, "", nil)
		want := fmt.Sprintf(`{"dry_run":%t,"forget":[{"id":"s1","source":"docs","kind":"full","parent":"","chain":"s1",
			"started_at":"2026-01-02T03:04:15.123456789Z","completed_at":"2026-01-02T03:04:16.123456789Z","files":10,"dirs":2,
			"symlinks":1,"bytes":1000,"added_bytes":100,"job_id":"job-s1"}],"reasons":{"s1":"older than keep_within"},
			"packs_removed":2,"packs_rewritten":1,"bytes_freed":4096}`, tt.dry)
		if r.code != 200 || compactJSON(t, r.body) != compactJSON(t, want) {
			t.Errorf("prune%s: %d %s", tt.query, r.code, r.body)
		}
		c := e.fake.lastCall()
		if c.method != "Prune" || c.req.(*dwv1.PruneRequest).GetDryRun() != tt.dry || c.caller != "alice" {
			t.Errorf("prune%s: plugin got %+v", tt.query, c)
		}
		if c.hasDeadline {
			t.Errorf("prune%s: bounded by the request timeout", tt.query)
		}
	}
	e.fake.PruneFunc = func(req *dwv1.PruneRequest) (*dwv1.PruneResponse, error) {
		return &dwv1.PruneResponse{DryRun: true}, nil
	}
	r := e.call(t, "POST", "/v1/backups/prune?dry_run=true", "", nil)
	if compactJSON(t, r.body) != `{"bytes_freed":0,"dry_run":true,"forget":[],"packs_removed":0,"packs_rewritten":0,"reasons":{}}` {
		t.Errorf("empty plan: %s", r.body)
	}
}

func TestBackupVerify(t *testing.T) {
	e := newBackupEnv(t)
	r := e.call(t, "POST", "/v1/backups/verify", "", nil)
	if r.code != 200 || compactJSON(t, r.body) != `{"blobs_checked":40,"bytes_checked":4000,"ok":true,"problems":[],"snapshots":4}` {
		t.Errorf("verify: %d %s", r.code, r.body)
	}
	if c := e.fake.lastCall(); c.method != "Verify" || c.caller != "alice" || c.hasDeadline {
		t.Errorf("plugin got %+v (verify must not be bounded by the request timeout)", c)
	}
	e.fake.VerifyFunc = func(*dwv1.VerifyRequest) (*dwv1.VerifyResponse, error) {
		return &dwv1.VerifyResponse{Snapshots: 1, Problems: []string{"pack 0a: blob 1f: hash mismatch"}}, nil
	}
	r = e.call(t, "POST", "/v1/backups/verify", "{}", nil)
	if r.code != 200 || compactJSON(t, r.body) != `{"blobs_checked":0,"bytes_checked":0,"ok":false,"problems":["pack 0a: blob 1f: hash mismatch"],"snapshots":1}` {
		t.Errorf("verify with a problem: %d %s", r.code, r.body)
	}
}

func TestBackupJobJSON(t *testing.T) {
	e := newBackupEnv(t)
	full := &dwv1.Job{Id: "j1", Kind: dwv1.JobKind_JOB_KIND_BACKUP, State: dwv1.JobState_JOB_STATE_FAILED, Source: "docs", BackupKind: "full",
		Snapshot: "s9", Target: "", Error: "read docs/a: permission denied", Resumed: 2,
		Progress:  &dwv1.JobProgress{FilesDone: 3, FilesTotal: 4, BytesDone: 300, BytesTotal: 400, Percent: 75, BytesPerSecond: 1.5},
		CreatedAt: timestamppb.New(fakeEpoch), StartedAt: timestamppb.New(fakeEpoch.Add(time.Second)), FinishedAt: timestamppb.New(fakeEpoch.Add(time.Minute))}
	tests := []struct {
		name string
		job  *dwv1.Job
		want string
	}{
		{"every field", full, `{"id":"j1","kind":"backup","state":"failed","source":"docs","backup_kind":"full","snapshot":"s9","target":"",
			"progress":{"files_done":3,"files_total":4,"bytes_done":300,"bytes_total":400,"percent":75,"bytes_per_second":1.5},
			"error":"read docs/a: permission denied","created_at":"2026-01-02T03:04:05.123456789Z","started_at":"2026-01-02T03:04:06.123456789Z",
			"finished_at":"2026-01-02T03:05:05.123456789Z","resumed":2}`},
		{"nothing set", &dwv1.Job{Id: "j2"}, `{"id":"j2","kind":"unspecified","state":"unspecified","source":"","backup_kind":"","snapshot":"","target":"",
			"progress":{"files_done":0,"files_total":0,"bytes_done":0,"bytes_total":0,"percent":0,"bytes_per_second":0},
			"error":"","created_at":null,"started_at":null,"finished_at":null,"resumed":0}`},
		{"values this host does not know", &dwv1.Job{Id: "j3", Kind: 7, State: 9, CreatedAt: timestamppb.New(time.Date(2026, 5, 6, 7, 8, 9, 0, time.FixedZone("x", 3600)))},
			`{"id":"j3","kind":"unknown","state":"unknown","source":"","backup_kind":"","snapshot":"","target":"",
			"progress":{"files_done":0,"files_total":0,"bytes_done":0,"bytes_total":0,"percent":0,"bytes_per_second":0},
			"error":"","created_at":"2026-05-06T06:08:09Z","started_at":null,"finished_at":null,"resumed":0}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.fake.GetJobFunc = func(*dwv1.GetJobRequest) (*dwv1.Job, error) { return tt.job, nil }
			r := e.call(t, "GET", "/v1/backups/jobs/"+tt.job.GetId(), "", nil)
			if r.code != 200 || compactJSON(t, r.body) != compactJSON(t, tt.want) {
				t.Errorf("got %d %s\nwant %s", r.code, r.body, compactJSON(t, tt.want))
			}
			if ct := r.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
		})
	}
	for _, tt := range []struct{ state, word string }{
		{"JOB_STATE_QUEUED", "queued"}, {"JOB_STATE_RUNNING", "running"}, {"JOB_STATE_SUCCEEDED", "succeeded"},
		{"JOB_STATE_FAILED", "failed"}, {"JOB_STATE_CANCELLED", "cancelled"},
	} {
		st := dwv1.JobState(dwv1.JobState_value[tt.state])
		if got := toBackupJob(&dwv1.Job{State: st}).State; got != tt.word {
			t.Errorf("%s: %q, want %q", tt.state, got, tt.word)
		}
	}
	if got := toBackupJob(&dwv1.Job{Kind: dwv1.JobKind_JOB_KIND_RESTORE}).Kind; got != "restore" {
		t.Errorf("restore kind: %q", got)
	}
	// The list: [] not null.
	e.fake.ListJobsFunc = func(*dwv1.ListJobsRequest) (*dwv1.ListJobsResponse, error) { return &dwv1.ListJobsResponse{}, nil }
	if r := e.call(t, "GET", "/v1/backups/jobs", "", nil); r.code != 200 || compactJSON(t, r.body) != `{"jobs":[]}` {
		t.Errorf("no jobs: %d %s", r.code, r.body)
	}
	// A start answer without a job id is the plugin's fault.
	e.fake.StartBackupFunc = func(*dwv1.StartBackupRequest) (*dwv1.Job, error) { return &dwv1.Job{}, nil }
	wantError(t, e.call(t, "POST", "/v1/backups", `{"source":"docs"}`, nil), 500, "without a job id")
}

// backupRequests is one valid request of every backup route.
var backupRequests = []struct{ method, path, body string }{
	{"POST", "/v1/backups", `{"source":"docs","kind":"full"}`},
	{"GET", "/v1/backups/jobs", ""},
	{"GET", "/v1/backups/jobs/job-1", ""},
	{"DELETE", "/v1/backups/jobs/job-1", ""},
	{"GET", "/v1/backups/snapshots", ""},
	{"GET", "/v1/backups/snapshots?source=docs", ""},
	{"DELETE", "/v1/backups/snapshots/s1", ""},
	{"POST", "/v1/backups/prune?dry_run=true", ""},
	{"POST", "/v1/backups/restores", `{"snapshot":"s1","target":"t"}`},
	{"POST", "/v1/backups/verify", ""},
}

func TestBackupErrorMapping(t *testing.T) {
	e := newBackupEnv(t)
	tests := []struct {
		name string
		err  error
		code int
		word string
	}{
		{"not found", fmt.Errorf("thing: %w", sdk.ErrNotFound), 404, "not_found"},
		{"invalid", fmt.Errorf("thing: %w", sdk.ErrInvalidArgument), 400, "invalid_argument"},
		{"finished", fmt.Errorf("thing: %w", sdk.ErrFailedPrecondition), 409, "failed_precondition"},
		{"busy", sdk.WithRetryAfter(fmt.Errorf("thing: %w", sdk.ErrBackpressure), 3*time.Second), 429, "backpressure"},
		{"unavailable", fmt.Errorf("repository: %w", sdk.ErrUnavailable), 503, "unavailable"},
		{"shutting down", fmt.Errorf("plugin: %w", sdk.ErrPluginShutdown), 503, "plugin_shutdown"},
		{"unimplemented", fmt.Errorf("verify: %w", sdk.ErrUnimplemented), 501, "unimplemented"},
	}
	f := e.fake
	for _, tt := range tests {
		fail := tt.err
		f.StartBackupFunc = func(*dwv1.StartBackupRequest) (*dwv1.Job, error) { return nil, fail }
		f.StartRestoreFunc = func(*dwv1.StartRestoreRequest) (*dwv1.Job, error) { return nil, fail }
		f.GetJobFunc = func(*dwv1.GetJobRequest) (*dwv1.Job, error) { return nil, fail }
		f.ListJobsFunc = func(*dwv1.ListJobsRequest) (*dwv1.ListJobsResponse, error) { return nil, fail }
		f.CancelJobFunc = func(*dwv1.CancelJobRequest) (*dwv1.Job, error) { return nil, fail }
		f.ListSnapshotsFunc = func(*dwv1.ListSnapshotsRequest) (*dwv1.ListSnapshotsResponse, error) { return nil, fail }
		f.ForgetSnapshotFunc = func(*dwv1.ForgetSnapshotRequest) (*dwv1.ForgetSnapshotResponse, error) { return nil, fail }
		f.PruneFunc = func(*dwv1.PruneRequest) (*dwv1.PruneResponse, error) { return nil, fail }
		f.VerifyFunc = func(*dwv1.VerifyRequest) (*dwv1.VerifyResponse, error) { return nil, fail }
		for _, rq := range backupRequests {
			t.Run(tt.name+" "+rq.method+" "+rq.path, func(t *testing.T) {
				r := e.call(t, rq.method, rq.path, rq.body, nil)
				if got := errorOf(t, r); r.code != tt.code || got.Code != tt.word || !strings.Contains(got.Message, tt.err.Error()) {
					t.Errorf("%d %s", r.code, r.body)
				}
				if tt.code == 429 && r.header.Get("Retry-After") != "3" {
					t.Errorf("Retry-After %q", r.header.Get("Retry-After"))
				}
			})
		}
	}
}

func TestBackupPluginDown(t *testing.T) {
	for _, err := range []error{
		fmt.Errorf("plugin dataprotection: %w", sdk.ErrUnavailable),
		fmt.Errorf("no plugin dataprotection: %w", sdk.ErrNotFound),
	} {
		s, _ := newTestServer(t, &fakePlugins{ClientFunc: func(string) (*pluginhost.Client, error) { return nil, err }}, nil)
		for _, rq := range backupRequests {
			r := do(t, s.Handler(), rq.method, rq.path, "", rq.body)
			if r.code != 503 {
				t.Errorf("%s %s with %v: %d %s", rq.method, rq.path, err, r.code, r.body)
				continue
			}
			wantError(t, r, 503, "dataprotection")
		}
	}
}

func TestBackupRoutingAndAuth(t *testing.T) {
	e := newBackupEnv(t)
	for _, tc := range []struct{ method, path, allow string }{
		{"GET", "/v1/backups", "POST"},
		{"PUT", "/v1/backups/jobs/j1", "DELETE, GET, HEAD"},
		{"POST", "/v1/backups/snapshots", "GET, HEAD"},
		{"GET", "/v1/backups/prune", "POST"},
		{"GET", "/v1/backups/restores", "POST"},
		{"GET", "/v1/backups/verify", "POST"},
	} {
		r := e.call(t, tc.method, tc.path, "", nil)
		wantError(t, r, 405, "allowed")
		if r.header.Get("Allow") != tc.allow {
			t.Errorf("%s %s: Allow %q, want %q", tc.method, tc.path, r.header.Get("Allow"), tc.allow)
		}
	}
	for _, rq := range backupRequests {
		req := httptest.NewRequest(rq.method, rq.path, strings.NewReader(rq.body))
		req.Header.Set("Authorization", "Bearer wrong")
		if r := e.serve(t, req); r.code != 401 {
			t.Errorf("%s %s with a wrong token: %d", rq.method, rq.path, r.code)
		}
	}
	if calls := e.fake.allCalls(); len(calls) != 0 {
		t.Errorf("the plugin was called: %+v", calls)
	}
	// Every valid request reaches its method, with the caller and, except
	// prune and verify, a deadline.
	want := []string{"StartBackup", "ListJobs", "GetJob", "CancelJob", "ListSnapshots", "ListSnapshots", "ForgetSnapshot", "Prune", "StartRestore", "Verify"}
	for i, rq := range backupRequests {
		_ = e.call(t, rq.method, rq.path, rq.body, nil)
		c := e.fake.lastCall()
		if c.method != want[i] || c.caller != "alice" || c.hasDeadline == (c.method == "Prune" || c.method == "Verify") {
			t.Errorf("%s %s: plugin got %+v", rq.method, rq.path, c)
		}
	}
	if !measured(t, e.server.registry, `code="202",route="POST /v1/backups"`) {
		t.Errorf("POST /v1/backups not measured by its pattern")
	}
}

// TestBackupJobIDEscapedInLocation checks that a plugin's odd job id
// cannot bend the Location header.
func TestBackupJobIDEscapedInLocation(t *testing.T) {
	e := newBackupEnv(t)
	e.fake.StartBackupFunc = func(*dwv1.StartBackupRequest) (*dwv1.Job, error) {
		return &dwv1.Job{Id: "a/b?c\r\nX: y", State: dwv1.JobState_JOB_STATE_QUEUED}, nil
	}
	r := e.call(t, "POST", "/v1/backups", `{"source":"docs"}`, nil)
	if r.code != 202 || r.header.Get("Location") != "/v1/backups/jobs/a%2Fb%3Fc%0D%0AX:%20y" || r.header.Get("X") != "" {
		t.Errorf("%d Location %q", r.code, r.header.Get("Location"))
	}
}
