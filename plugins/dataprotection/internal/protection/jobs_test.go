package protection

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/datawarehouse/dw/sdk/v6"
	dwv1 "github.com/datawarehouse/dw/sdk/v6/proto/dw/v1"
	"github.com/datawarehouse/dw/sdk/v6/sdktest"
)

// memKV is the SDK's in-memory KV with the host store's rules.
type memKV struct{ *sdktest.MemKV }

func newMemKV() *memKV { return &memKV{sdktest.NewMemKV()} }

// count returns how many keys the store holds.
func (kv *memKV) count(t *testing.T) int {
	t.Helper()
	n := 0
	if err := kv.List(context.Background(), "", func(string, []byte) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

func (kv *memKV) record(t *testing.T, id string) jobRecord {
	t.Helper()
	b, err := kv.Get(context.Background(), jobKeyPrefix+id)
	if err != nil {
		t.Fatalf("job %s not in the KV store: %v", id, err)
	}
	var r jobRecord
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// chanLimiter admits as many jobs as it has tokens.
type chanLimiter chan struct{}

func (l chanLimiter) Acquire(ctx context.Context, _ string) (func(), error) {
	select {
	case l <- struct{}{}:
		return func() { <-l }, nil
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

func waitState(t *testing.T, js *jobs, id, state string) jobRecord {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := js.get(id)
		if err == nil && r.State == state {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s: state %q, want %q", id, r.State, state)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestJobsRunCheckpointAndFinish(t *testing.T) {
	kv := newMemKV()
	var done []jobRecord
	var mu sync.Mutex
	run := func(ctx context.Context, rec jobRecord, report func(progress), checkpoint func([]byte) error) (string, error) {
		report(progress{FilesDone: 1, FilesTotal: 2})
		if err := checkpoint([]byte("cp1")); err != nil {
			return "", err
		}
		if rec.Source == "bad" {
			return "", errors.New("disk on fire")
		}
		return "snap-" + rec.ID, nil
	}
	js := newJobs(kv, hclog.NewNullLogger(), make(chanLimiter, 1), run, func(r jobRecord) {
		mu.Lock()
		done = append(done, r)
		mu.Unlock()
	})
	defer js.close()
	ok, err := js.submit(context.Background(), jobRecord{ID: newJobID(), Kind: kindBackup, Source: "files", BackupKind: "full"})
	if err != nil {
		t.Fatal(err)
	}
	bad, _ := js.submit(context.Background(), jobRecord{ID: newJobID(), Kind: kindBackup, Source: "bad", BackupKind: "full"})
	r := waitState(t, js, ok.ID, stateSucceeded)
	if r.Snapshot != "snap-"+ok.ID || r.Progress.FilesDone != 1 || r.Checkpoint != nil || r.FinishedAt.IsZero() {
		t.Errorf("succeeded job %+v", r)
	}
	if kr := kv.record(t, ok.ID); kr.State != stateSucceeded || kr.Checkpoint != nil {
		t.Errorf("stored %+v", kr)
	}
	b := waitState(t, js, bad.ID, stateFailed)
	if !strings.Contains(b.Error, "disk on fire") {
		t.Errorf("failed job error %q", b.Error)
	}
	if _, err := js.cancelJob(ok.ID); !errors.Is(err, sdk.ErrFailedPrecondition) {
		t.Errorf("cancel a finished job: %v", err)
	}
	if _, err := js.get("nope"); !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("unknown job: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(done)
		mu.Unlock()
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("onDone ran %d times, want 2", n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestJobsQueueCancelAndShutdownResume(t *testing.T) {
	kv := newMemKV()
	started := make(chan string, 4)
	run := func(ctx context.Context, rec jobRecord, report func(progress), checkpoint func([]byte) error) (string, error) {
		if err := checkpoint([]byte("at-" + rec.ID)); err != nil {
			return "", err
		}
		started <- rec.ID
		<-ctx.Done()
		return "", ctx.Err()
	}
	js := newJobs(kv, hclog.NewNullLogger(), make(chanLimiter, 1), run, nil)
	a, _ := js.submit(context.Background(), jobRecord{ID: "a", Kind: kindBackup, Source: "s", BackupKind: "full"})
	<-started
	b, _ := js.submit(context.Background(), jobRecord{ID: "b", Kind: kindBackup, Source: "s", BackupKind: "full"})
	c, _ := js.submit(context.Background(), jobRecord{ID: "c", Kind: kindRestore, Snapshot: "x", Target: "t"})
	waitState(t, js, b.ID, stateQueued)
	if q, r := js.counts(); q != 2 || r != 1 {
		t.Fatalf("counts: %d queued, %d running", q, r)
	}
	// Cancel a queued job: it never runs.
	if r, err := js.cancelJob(b.ID); err != nil || r.State != stateCancelled {
		t.Fatalf("cancel queued: %+v %v", r, err)
	}
	// Shut down: a and c stay as they were in the KV store.
	js.close()
	if r := kv.record(t, a.ID); r.State != stateRunning || string(r.Checkpoint) != "at-a" {
		t.Errorf("a after shutdown: %+v", r)
	}
	if r := kv.record(t, c.ID); r.State != stateQueued {
		t.Errorf("c after shutdown: %+v", r)
	}
	// A new start finds them to resume, oldest first, and remembers b.
	js2 := newJobs(kv, hclog.NewNullLogger(), make(chanLimiter, 1), run, nil)
	defer js2.close()
	resume, err := js2.load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(resume) != 2 || resume[0].ID != "a" || resume[1].ID != "c" {
		t.Fatalf("to resume: %+v", resume)
	}
	if r, err := js2.get("b"); err != nil || r.State != stateCancelled {
		t.Errorf("b after restart: %+v %v", r, err)
	}
}

func TestJobsLoadDropsGarbage(t *testing.T) {
	kv := newMemKV()
	kv.Put(context.Background(), jobKeyPrefix+"x", []byte("{not json"))
	kv.Put(context.Background(), jobKeyPrefix+"y", []byte(`{"id":"other","state":"running"}`))
	js := newJobs(kv, hclog.NewNullLogger(), make(chanLimiter, 1), nil, nil)
	defer js.close()
	resume, err := js.load(context.Background())
	if err != nil || len(resume) != 0 {
		t.Fatalf("resume %v, %v", resume, err)
	}
	if n := kv.count(t); n != 0 {
		t.Errorf("%d garbage records left in the KV store", n)
	}
}

func TestRPCsRefuseMalformedIDs(t *testing.T) {
	s := &Service{} // ids are checked before the service is needed
	ctx := context.Background()
	for _, id := range []string{"", "../x", "a b", "a/b", strings.Repeat("x", sdk.MaxIDBytes+1), "ü"} {
		for _, tc := range []struct {
			name, what string
			call       func() error
		}{
			{"GetJob", "job id", func() error { _, err := s.GetJob(ctx, &dwv1.GetJobRequest{Id: id}); return err }},
			{"CancelJob", "job id", func() error { _, err := s.CancelJob(ctx, &dwv1.CancelJobRequest{Id: id}); return err }},
			{"ForgetSnapshot", "snapshot id", func() error {
				_, err := s.ForgetSnapshot(ctx, &dwv1.ForgetSnapshotRequest{Id: id})
				return err
			}},
		} {
			err := tc.call()
			if !errors.Is(err, sdk.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.what) {
				t.Errorf("%s(%.20q) = %v, want InvalidArgument naming the %s", tc.name, id, err, tc.what)
			}
		}
	}
}
