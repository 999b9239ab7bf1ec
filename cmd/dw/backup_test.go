package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/datawarehouse/dw/host/api"
)

// fakeAnswer is one scripted answer of fakeBackupAPI.
type fakeAnswer struct {
	status int
	body   string
}

// backupSeen is what fakeBackupAPI saw of one request.
type backupSeen struct {
	method, uri, body, contentType string
}

// fakeBackupAPI is the host's /v1/backups API as a script: the answers to
// each "METHOD uri" in turn, the last one repeated (so a job's GET can go
// queued, running, succeeded). A request with no script is a JSON 404.
type fakeBackupAPI struct {
	mu       sync.Mutex
	answers  map[string][]fakeAnswer
	requests []backupSeen
}

func newBackupAPI(t *testing.T) (*fakeBackupAPI, *httptest.Server) {
	t.Helper()
	t.Cleanup(func() { goleak.VerifyNone(t) }) // runs last
	f := &fakeBackupAPI{answers: map[string][]fakeAnswer{}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	t.Setenv("DW_TOKEN", testObjToken)
	return f, srv
}

// on scripts the answers to method and uri (path and query as sent).
func (f *fakeBackupAPI) on(method, uri string, answers ...fakeAnswer) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.answers[method+" "+uri] = answers
}

func (f *fakeBackupAPI) seen() []backupSeen {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]backupSeen(nil), f.requests...)
}

func (f *fakeBackupAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+testObjToken {
		fakeError(w, 401, "unauthenticated", "missing bearer token")
		return
	}
	body, _ := io.ReadAll(r.Body)
	key := r.Method + " " + r.URL.RequestURI()
	f.mu.Lock()
	f.requests = append(f.requests, backupSeen{method: r.Method, uri: r.URL.RequestURI(), body: string(body), contentType: r.Header.Get("Content-Type")})
	script := f.answers[key]
	var a fakeAnswer
	switch {
	case len(script) == 0:
		a = fakeAnswer{0, ""}
	case len(script) == 1:
		a = script[0]
	default:
		a, f.answers[key] = script[0], script[1:]
	}
	f.mu.Unlock()
	switch {
	case a.status == 0:
		fakeError(w, 404, "not_found", "no route for "+key)
	case a.status >= 400:
		fakeError(w, a.status, "error", a.body)
	default:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(a.status)
		_, _ = io.WriteString(w, a.body)
	}
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func ptr(s string) *string { return &s }

// backupJob is a backup job of source docs in state.
func backupJob(id, state string, done, total int64) api.BackupJob {
	j := api.BackupJob{ID: id, Kind: "backup", State: state, Source: "docs", BackupKind: "incremental",
		Progress:  api.BackupProgress{FilesDone: done / 10, FilesTotal: total / 10, BytesDone: done, BytesTotal: total},
		CreatedAt: ptr("2026-01-02T03:04:05.123456789Z")}
	if total > 0 {
		j.Progress.Percent = float64(done) * 100 / float64(total)
	}
	if state == "succeeded" {
		j.Snapshot = "snap1"
	}
	return j
}

// ok is a 200 answer with v as JSON.
func ok(t testing.TB, v any) fakeAnswer { t.Helper(); return fakeAnswer{200, mustJSON(t, v)} }

func TestBackupCreate(t *testing.T) {
	f, srv := newBackupAPI(t)
	started := func(j api.BackupJob) fakeAnswer {
		return fakeAnswer{202, mustJSON(t, api.StartedJob{JobID: j.ID, Job: j})}
	}
	f.on("POST", "/v1/backups", started(backupJob("j1", "queued", 0, 0)))
	tests := []struct {
		name     string
		args     []string
		wantBody string
		wantOut  string
	}{
		{"default incremental", []string{"backup", "create", "docs"}, `{"kind":"incremental","source":"docs"}`,
			"started backup job j1 of docs (incremental); follow it with: dw backup jobs j1\n"},
		{"full", []string{"backup", "create", "docs", "--kind", "full"}, `{"kind":"full","source":"docs"}`, "started backup job j1"},
		{"json", []string{"-o", "json", "backup", "create", "photos"}, `{"kind":"incremental","source":"photos"}`, `"job_id": "j1"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, _, err := runDW(t, srv.URL, nil, tt.args...)
			if err != nil || !strings.Contains(out, tt.wantOut) {
				t.Fatalf("out %q, err %v", out, err)
			}
			reqs := f.seen()
			last := reqs[len(reqs)-1]
			if last.method != "POST" || last.uri != "/v1/backups" || last.body != tt.wantBody || last.contentType != "application/json" {
				t.Errorf("sent %+v", last)
			}
		})
	}
	n := len(f.seen())
	if _, _, err := runDW(t, srv.URL, nil, "backup", "create", "docs", "--kind", "differential"); err == nil || !strings.Contains(err.Error(), "full or incremental") {
		t.Errorf("bad --kind: %v", err)
	}
	if _, _, err := runDW(t, srv.URL, nil, "backup", "create", "docs", "--wait", "--poll", "0s"); err == nil || !strings.Contains(err.Error(), "--poll") {
		t.Errorf("bad --poll: %v", err)
	}
	if _, _, err := runDW(t, srv.URL, nil, "backup", "create", "docs", "--wait", "--progress", "maybe"); err == nil || !strings.Contains(err.Error(), "auto, always or never") {
		t.Errorf("bad --progress: %v", err)
	}
	if _, _, err := runDW(t, srv.URL, nil, "backup", "create"); err == nil {
		t.Errorf("no source: accepted")
	}
	if got := len(f.seen()); got != n {
		t.Errorf("%d requests for bad flags", got-n)
	}
	// The host's refusal reaches the user.
	f.on("POST", "/v1/backups", fakeAnswer{404, `start incremental backup of source "music": source "music": not found`})
	if _, _, err := runDW(t, srv.URL, nil, "backup", "create", "music"); err == nil || !strings.Contains(err.Error(), `source "music": not found`) || !strings.Contains(err.Error(), "HTTP 404") {
		t.Errorf("unknown source: %v", err)
	}
}

func TestBackupCreateWait(t *testing.T) {
	tests := []struct {
		name     string
		polls    []fakeAnswer
		args     []string
		wantErr  string // "" means success
		wantOut  string
		wantBar  bool
		wantGets int
	}{
		{"succeeds", []fakeAnswer{ok(t, backupJob("j1", "queued", 0, 0)), ok(t, backupJob("j1", "running", 500, 1000)),
			ok(t, backupJob("j1", "succeeded", 1000, 1000))}, nil, "",
			"backup job j1 of docs (incremental) succeeded: 100 files, 1000 B; snapshot snap1\n", false, 3},
		{"progress bar", []fakeAnswer{ok(t, backupJob("j1", "running", 100, 1000)), ok(t, backupJob("j1", "succeeded", 1000, 1000))},
			[]string{"--progress", "always"}, "", "succeeded", true, 2},
		{"fails", []fakeAnswer{ok(t, backupJob("j1", "running", 1, 10)), ok(t, func() api.BackupJob {
			j := backupJob("j1", "failed", 5, 10)
			j.Error = "read docs/a: permission denied"
			return j
		}())}, nil, "backup job j1 of docs (incremental) failed: read docs/a: permission denied", "", false, 2},
		{"cancelled", []fakeAnswer{ok(t, backupJob("j1", "cancelled", 0, 10))}, nil, "cancelled", "", false, 1},
		{"rides out a restarting plugin", []fakeAnswer{{503, "backups: unavailable"}, {503, "backups: unavailable"},
			ok(t, backupJob("j1", "succeeded", 10, 10))}, nil, "", "succeeded", false, 3},
		{"job gone", []fakeAnswer{ok(t, backupJob("j1", "running", 1, 10)), {404, "get backup job j1: job \"j1\": not found"}},
			nil, "wait for backup job j1", "", false, 2},
		{"json", []fakeAnswer{ok(t, backupJob("j1", "succeeded", 10, 10))}, []string{"-o", "json"}, "", `"state": "succeeded"`, false, 1},
		{"json of a failure", []fakeAnswer{ok(t, backupJob("j1", "failed", 1, 10))}, []string{"-o", "json"}, "failed", `"state": "failed"`, false, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, srv := newBackupAPI(t)
			f.on("POST", "/v1/backups", fakeAnswer{202, mustJSON(t, api.StartedJob{JobID: "j1", Job: backupJob("j1", "queued", 0, 0)})})
			f.on("GET", "/v1/backups/jobs/j1", tt.polls...)
			args := append(tt.args, "backup", "create", "docs", "--wait", "--poll", "1ms")
			out, errOut, err := runDW(t, srv.URL, nil, args...)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("error %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("error %v, want %q", err, tt.wantErr)
			}
			if !strings.Contains(out, tt.wantOut) {
				t.Errorf("out %q, want %q", out, tt.wantOut)
			}
			if hasBar := strings.Contains(errOut, "backup docs (incremental)"); hasBar != tt.wantBar {
				t.Errorf("stderr %q: bar %t, want %t", errOut, hasBar, tt.wantBar)
			}
			gets := 0
			for _, r := range f.seen() {
				if r.method == "GET" && r.uri == "/v1/backups/jobs/j1" {
					gets++
				}
			}
			if gets != tt.wantGets {
				t.Errorf("%d polls, want %d", gets, tt.wantGets)
			}
		})
	}
	// A host that keeps answering 503 is given up on.
	f, srv := newBackupAPI(t)
	f.on("POST", "/v1/backups", fakeAnswer{202, mustJSON(t, api.StartedJob{JobID: "j1", Job: backupJob("j1", "queued", 0, 0)})})
	f.on("GET", "/v1/backups/jobs/j1", fakeAnswer{503, "backups: unavailable"})
	if _, _, err := runDW(t, srv.URL, nil, "backup", "create", "docs", "--wait", "--poll", "1ms"); err == nil || !strings.Contains(err.Error(), "HTTP 503") {
		t.Errorf("503 forever: %v", err)
	}
	if got := len(f.seen()); got != maxUnavailablePolls+2 {
		t.Errorf("%d requests, want the POST and %d polls", got, maxUnavailablePolls+1)
	}
}

func TestBackupRestore(t *testing.T) {
	f, srv := newBackupAPI(t)
	job := api.BackupJob{ID: "r1", Kind: "restore", State: "queued", Snapshot: "s1", Target: "docs/old"}
	f.on("POST", "/v1/backups/restores", fakeAnswer{202, mustJSON(t, api.StartedJob{JobID: "r1", Job: job})})
	out, _, err := runDW(t, srv.URL, nil, "backup", "restore", "s1", "docs/old")
	if err != nil || out != "started restore job r1 of snapshot s1 into docs/old; follow it with: dw backup jobs r1\n" {
		t.Errorf("restore: %q %v", out, err)
	}
	if r := f.seen()[0]; r.uri != "/v1/backups/restores" || r.body != `{"snapshot":"s1","target":"docs/old"}` {
		t.Errorf("sent %+v", r)
	}
	done := job
	done.State, done.Progress = "succeeded", api.BackupProgress{FilesDone: 3, BytesDone: 2048, FilesTotal: 3, BytesTotal: 2048, Percent: 100}
	f.on("GET", "/v1/backups/jobs/r1", ok(t, done))
	out, _, err = runDW(t, srv.URL, nil, "backup", "restore", "s1", "docs/old", "--wait", "--poll", "1ms")
	if err != nil || out != "restore job r1 of snapshot s1 into docs/old succeeded: 3 files, 2.0 KiB\n" {
		t.Errorf("restore --wait: %q %v", out, err)
	}
	n := len(f.seen())
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"s1", "../etc"}, "restore target"},
		{[]string{"s1", "/abs"}, "absolute"},
		{[]string{"s1", ""}, "is empty"},
		{[]string{"s.1", "t"}, `snapshot id "s.1"`},
		{[]string{"s1"}, "accepts 2 arg"},
	} {
		if _, _, err := runDW(t, srv.URL, nil, append([]string{"backup", "restore"}, tc.args...)...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("restore %q: %v, want %q", tc.args, err, tc.want)
		}
	}
	if got := len(f.seen()); got != n {
		t.Errorf("%d requests for refused arguments", got-n)
	}
}

func testChains() api.Chains {
	snap := func(id, source, kind, parent, chain string, files, size, added int64) api.Snapshot {
		return api.Snapshot{ID: id, Source: source, Kind: kind, Parent: parent, Chain: chain, Files: files, Bytes: size, AddedBytes: added,
			StartedAt: ptr("2026-01-02T03:04:05Z"), CompletedAt: ptr("2026-01-02T03:04:06.5Z")}
	}
	return api.Chains{Chains: []api.Chain{
		{ID: "a1", Source: "docs", Snapshots: []api.Snapshot{
			snap("a1", "docs", "full", "", "a1", 120, 3<<20, 1<<20),
			snap("a2", "docs", "incremental", "a1", "a1", 121, 3<<20, 2048),
			snap("a3", "docs", "incremental", "a2", "a1", 125, 4<<20, 100),
		}},
		{ID: "p1", Source: "photos", Snapshots: []api.Snapshot{snap("p1", "photos", "full", "", "p1", 7, 900, 800)}},
	}}
}

func TestBackupLs(t *testing.T) {
	f, srv := newBackupAPI(t)
	f.on("GET", "/v1/backups/snapshots", ok(t, testChains()))
	out, _, err := runDW(t, srv.URL, nil, "backup", "ls")
	want := "" +
		"SOURCE  SNAPSHOT  KIND         COMPLETED            FILES  SIZE     ADDED\n" +
		"docs    a1        full         2026-01-02 03:04:06  120    3.0 MiB  1.0 MiB\n" +
		"        ├─ a2     incremental  2026-01-02 03:04:06  121    3.0 MiB  2.0 KiB\n" +
		"        └─ a3     incremental  2026-01-02 03:04:06  125    4.0 MiB  100 B\n" +
		"photos  p1        full         2026-01-02 03:04:06  7      900 B    800 B\n"
	if err != nil || out != want {
		t.Errorf("ls: %v\n%s\nwant\n%s", err, out, want)
	}
	f.on("GET", "/v1/backups/snapshots?source=my+docs", ok(t, api.Chains{Chains: []api.Chain{}}))
	out, _, err = runDW(t, srv.URL, nil, "backup", "ls", "--source", "my docs")
	if err != nil || out != "no snapshots\n" {
		t.Errorf("ls --source: %q %v", out, err)
	}
	out, _, err = runDW(t, srv.URL, nil, "-o", "json", "backup", "ls")
	var got api.Chains
	if err != nil || json.Unmarshal([]byte(out), &got) != nil || len(got.Chains) != 2 || len(got.Chains[0].Snapshots) != 3 {
		t.Errorf("ls -o json: %q %v", out, err)
	}
	f.on("GET", "/v1/backups/snapshots?source=music", fakeAnswer{404, `list snapshots of source "music": not found`})
	if _, _, err := runDW(t, srv.URL, nil, "backup", "ls", "--source", "music"); err == nil || !strings.Contains(err.Error(), `source "music"`) {
		t.Errorf("unknown source: %v", err)
	}
}

func TestBackupJobs(t *testing.T) {
	f, srv := newBackupAPI(t)
	failed := backupJob("j2", "failed", 5, 10)
	failed.Error = "read docs/a:\n permission denied"
	restore := api.BackupJob{ID: "r1", Kind: "restore", State: "queued", Snapshot: "s1", Target: "t", CreatedAt: ptr("2026-01-02T03:04:05Z")}
	f.on("GET", "/v1/backups/jobs", ok(t, api.BackupJobs{Jobs: []api.BackupJob{restore, failed, backupJob("j1", "running", 512, 2048)}}))
	out, _, err := runDW(t, srv.URL, nil, "backup", "jobs")
	want := "" +
		"ID  KIND     STATE    OF                 PROGRESS             CREATED              ERROR\n" +
		"r1  restore  queued   s1 into t          -                    2026-01-02 03:04:05  -\n" +
		"j2  backup   failed   docs (incremental)  50.0% 5 B/10 B       2026-01-02 03:04:05  read docs/a: permission denied\n" +
		"j1  backup   running  docs (incremental)  25.0% 512 B/2.0 KiB  2026-01-02 03:04:05  -\n"
	if err != nil || strings.Join(strings.Fields(out), " ") != strings.Join(strings.Fields(want), " ") {
		t.Errorf("jobs: %v\n%s\nwant\n%s", err, out, want)
	}
	f.on("GET", "/v1/backups/jobs/j2", ok(t, failed))
	out, _, err = runDW(t, srv.URL, nil, "backup", "jobs", "j2")
	for _, line := range []string{"state        failed", "source       docs", "progress     50.0% 5 B/10 B", "files        0 of 1",
		"started      -", "error        read docs/a: permission denied"} {
		if !strings.Contains(out, line) {
			t.Errorf("jobs j2: %v\n%s\nlacks %q", err, out, line)
		}
	}
	out, _, err = runDW(t, srv.URL, nil, "-o", "json", "backup", "jobs", "j2")
	var j api.BackupJob
	if err != nil || json.Unmarshal([]byte(out), &j) != nil || j.State != "failed" || j.StartedAt != nil {
		t.Errorf("jobs j2 -o json: %q %v", out, err)
	}
	f.on("GET", "/v1/backups/jobs", ok(t, api.BackupJobs{Jobs: []api.BackupJob{}}))
	if out, _, err := runDW(t, srv.URL, nil, "backup", "jobs"); err != nil || out != "no jobs\n" {
		t.Errorf("no jobs: %q %v", out, err)
	}
	if _, _, err := runDW(t, srv.URL, nil, "backup", "jobs", "nope"); err == nil || !strings.Contains(err.Error(), "HTTP 404") {
		t.Errorf("unknown job: %v", err)
	}
	n := len(f.seen())
	if _, _, err := runDW(t, srv.URL, nil, "backup", "jobs", "../x"); err == nil || !strings.Contains(err.Error(), `job id "../x"`) {
		t.Errorf("bad id: %v", err)
	}
	if got := len(f.seen()); got != n {
		t.Errorf("a bad id was sent")
	}
}

func TestBackupCancelAndForget(t *testing.T) {
	f, srv := newBackupAPI(t)
	f.on("DELETE", "/v1/backups/jobs/j1", ok(t, backupJob("j1", "cancelled", 1, 2)))
	out, _, err := runDW(t, srv.URL, nil, "backup", "cancel", "j1")
	if err != nil || out != "backup job j1 of docs (incremental): cancelled\n" {
		t.Errorf("cancel: %q %v", out, err)
	}
	f.on("DELETE", "/v1/backups/jobs/j2", fakeAnswer{409, "cancel backup job j2: it is succeeded: failed precondition"})
	if _, _, err := runDW(t, srv.URL, nil, "backup", "cancel", "j2"); err == nil || !strings.Contains(err.Error(), "HTTP 409") {
		t.Errorf("cancel a finished job: %v", err)
	}
	f.on("DELETE", "/v1/backups/snapshots/a2", ok(t, api.ForgetResult{Rebased: []string{"a3", "a4"}}))
	out, _, err = runDW(t, srv.URL, nil, "backup", "forget", "a2")
	if err != nil || out != "forgot snapshot a2\nre-based: a3, a4\n" {
		t.Errorf("forget: %q %v", out, err)
	}
	f.on("DELETE", "/v1/backups/snapshots/a3", ok(t, api.ForgetResult{Rebased: []string{}}))
	out, _, err = runDW(t, srv.URL, nil, "backup", "forget", "a3")
	if err != nil || out != "forgot snapshot a3\n" {
		t.Errorf("forget a leaf: %q %v", out, err)
	}
	out, _, err = runDW(t, srv.URL, nil, "-o", "json", "backup", "forget", "a3")
	if err != nil || strings.Join(strings.Fields(out), "") != `{"rebased":[]}` {
		t.Errorf("forget -o json: %q %v", out, err)
	}
	n := len(f.seen())
	for _, args := range [][]string{{"cancel", "a/b"}, {"forget", strings.Repeat("x", 129)}, {"forget", ""}} {
		if _, _, err := runDW(t, srv.URL, nil, append([]string{"backup"}, args...)...); err == nil || !strings.Contains(err.Error(), "1 to 128") {
			t.Errorf("%q: %v", args, err)
		}
	}
	if got := len(f.seen()); got != n {
		t.Errorf("bad ids were sent")
	}
}

func TestBackupPrune(t *testing.T) {
	f, srv := newBackupAPI(t)
	snaps := testChains().Chains[0].Snapshots[:2]
	f.on("POST", "/v1/backups/prune?dry_run=true", ok(t, api.PruneResult{DryRun: true, Forget: snaps,
		Reasons: map[string]string{"a1": "beyond keep_last 3", "a2": "beyond keep_last 3"}, PacksRemoved: 2, PacksRewritten: 1, BytesFreed: 3 << 20}))
	out, _, err := runDW(t, srv.URL, nil, "backup", "prune", "--dry-run")
	want := "would forget 2 snapshots:\n" +
		"SNAPSHOT  SOURCE  KIND         COMPLETED            REASON\n" +
		"a1        docs    full         2026-01-02 03:04:06  beyond keep_last 3\n" +
		"a2        docs    incremental  2026-01-02 03:04:06  beyond keep_last 3\n" +
		"packs removed: 2, rewritten: 1; would free 3.0 MiB\n"
	if err != nil || out != want {
		t.Errorf("prune --dry-run: %v\n%s\nwant\n%s", err, out, want)
	}
	f.on("POST", "/v1/backups/prune?dry_run=false", ok(t, api.PruneResult{Forget: []api.Snapshot{}, Reasons: map[string]string{}}))
	out, _, err = runDW(t, srv.URL, nil, "backup", "prune")
	if err != nil || out != "forgot no snapshots\npacks removed: 0, rewritten: 0; freed 0 B\n" {
		t.Errorf("prune: %q %v", out, err)
	}
	if r := f.seen()[1]; r.method != "POST" || r.body != "" {
		t.Errorf("prune sent %+v", r)
	}
	out, _, err = runDW(t, srv.URL, nil, "-o", "json", "backup", "prune")
	if err != nil || !strings.Contains(out, `"dry_run": false`) {
		t.Errorf("prune -o json: %q %v", out, err)
	}
}

func TestBackupVerify(t *testing.T) {
	f, srv := newBackupAPI(t)
	f.on("POST", "/v1/backups/verify", ok(t, api.VerifyResult{OK: true, Snapshots: 4, BlobsChecked: 40, BytesChecked: 5 << 20, Problems: []string{}}))
	out, _, err := runDW(t, srv.URL, nil, "backup", "verify")
	if err != nil || out != "checked 4 snapshots: 40 blobs, 5.0 MiB\nno problems\n" {
		t.Errorf("verify: %q %v", out, err)
	}
	bad := api.VerifyResult{Snapshots: 4, BlobsChecked: 40, Problems: []string{"pack 0a: blob 1f: hash mismatch", "snapshot a2: tree 3c missing"}}
	f.on("POST", "/v1/backups/verify", ok(t, bad))
	out, _, err = runDW(t, srv.URL, nil, "backup", "verify")
	if err == nil || !strings.Contains(err.Error(), "2 problems") || !strings.Contains(out, "problem: pack 0a: blob 1f: hash mismatch\nproblem: snapshot a2: tree 3c missing\n") {
		t.Errorf("verify with problems: %q %v", out, err)
	}
	out, _, err = runDW(t, srv.URL, nil, "-o", "json", "backup", "verify")
	if err == nil || !strings.Contains(out, `"problems": [`) {
		t.Errorf("verify -o json with problems: %q %v", out, err)
	}
	f.on("POST", "/v1/backups/verify", fakeAnswer{503, "backups: unavailable: subsystem dataprotection is not loaded"})
	if _, _, err := runDW(t, srv.URL, nil, "backup", "verify"); err == nil || !strings.Contains(err.Error(), "not loaded") {
		t.Errorf("verify without the plugin: %v", err)
	}
}

// TestBackupLongCallsHaveNoTimeout checks that prune and verify are not
// cut by the client's 30 s timeout (the host bounds nothing there
// either), while the short calls keep it.
func TestBackupLongCallsHaveNoTimeout(t *testing.T) {
	g := &globalFlags{addr: "127.0.0.1:1"}
	if longClient(g).http.Timeout != 0 || newAPIClient(g).http.Timeout == 0 {
		t.Errorf("long client timeout %v, short %v", longClient(g).http.Timeout, newAPIClient(g).http.Timeout)
	}
}
