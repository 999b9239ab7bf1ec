package objectstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/datawarehouse/dw/plugins/dbstorage/internal/pagetoken"
	"github.com/datawarehouse/dw/plugins/dbstorage/internal/store"
	"github.com/datawarehouse/dw/sdk/v6"
	dwv1 "github.com/datawarehouse/dw/sdk/v6/proto/dw/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeStore is a store.Strategy of function fields; nil ones fail.
type fakeStore struct {
	GetFunc  func(ctx context.Context, key string, off, n int64) (store.Object, int64, int64, store.Reader, error)
	PingFunc func(ctx context.Context) error
	ListFunc func(ctx context.Context, q store.ListQuery) ([]store.Object, error)
}

var errFake = errors.New("not in this fake")

func (f *fakeStore) Put(context.Context, store.PutRequest, io.Reader) (store.Object, error) {
	return store.Object{}, errFake
}
func (f *fakeStore) Get(ctx context.Context, key string, off, n int64) (store.Object, int64, int64, store.Reader, error) {
	return f.GetFunc(ctx, key, off, n)
}
func (f *fakeStore) Stat(context.Context, string) (store.Object, error) {
	return store.Object{}, errFake
}
func (f *fakeStore) Delete(context.Context, string) (bool, error) { return false, errFake }
func (f *fakeStore) List(ctx context.Context, q store.ListQuery) ([]store.Object, error) {
	return f.ListFunc(ctx, q)
}
func (f *fakeStore) Count(context.Context, string) (int64, error) { return 0, errFake }
func (f *fakeStore) Ping(ctx context.Context) error {
	if f.PingFunc == nil {
		return nil
	}
	return f.PingFunc(ctx)
}
func (f *fakeStore) Close() error { return nil }

// pieces is a store.Reader over fixed pieces.
type pieces struct{ p [][]byte }

func (r *pieces) Next(context.Context) ([]byte, error) {
	if len(r.p) == 0 {
		return nil, io.EOF
	}
	b := r.p[0]
	r.p = r.p[1:]
	return b, nil
}
func (r *pieces) Close() error { return nil }

// newTestService returns a Service over the given strategies (in order,
// the first the default), with its health loop not started.
func newTestService(t *testing.T, l Limits, strategies ...*strategy) *Service {
	t.Helper()
	s := New()
	for _, st := range strategies {
		if st.latency == nil {
			st.latency = newRequestLatency()
		}
		s.strategies[st.name] = st
		s.order = append(s.order, st.name)
	}
	s.defaultName = strategies[0].name
	codec, err := pagetoken.New(make([]byte, pagetoken.SecretSize))
	if err != nil {
		t.Fatal(err)
	}
	s.tokens = codec
	if err := s.ApplyLimits(context.Background(), l); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.health.wait() })
	return s
}

// blockingStream is a Get stream whose Send blocks until released.
type blockingStream struct {
	grpc.ServerStream
	ctx     context.Context
	sent    chan int // size of each data message sent
	release chan struct{}
}

func (b *blockingStream) Context() context.Context     { return b.ctx }
func (b *blockingStream) SetHeader(metadata.MD) error  { return nil }
func (b *blockingStream) SendHeader(metadata.MD) error { return nil }
func (b *blockingStream) SetTrailer(metadata.MD)       {}
func (b *blockingStream) Send(m *dwv1.GetObjectResponse) error {
	if d := m.GetData(); d != nil {
		select {
		case <-b.release:
		case <-b.ctx.Done():
			return b.ctx.Err()
		}
		b.sent <- len(d)
	}
	return nil
}

// TestBufferBackpressure: with max_buffer_bytes of one chunk, a second
// transfer waits while the first holds its piece, the metrics say
// saturated, and it goes on once the first releases it.
func TestBufferBackpressure(t *testing.T) {
	const chunk = 1 << 20
	fs := &fakeStore{GetFunc: func(_ context.Context, key string, _, _ int64) (store.Object, int64, int64, store.Reader, error) {
		return store.Object{Key: key, Size: chunk}, 0, chunk, &pieces{p: [][]byte{make([]byte, chunk)}}, nil
	}}
	l := DefaultLimits()
	l.MaxBufferBytes = chunk
	s := newTestService(t, l, &strategy{name: "primary", driver: "fake", chunkSize: chunk, store: fs})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	streams := []*blockingStream{
		{ctx: ctx, sent: make(chan int, 1), release: make(chan struct{})},
		{ctx: ctx, sent: make(chan int, 1), release: make(chan struct{})},
	}
	errs := make(chan error, 2)
	go func() { errs <- s.Get(&dwv1.GetObjectRequest{Key: "a"}, streams[0]) }()
	waitUntil(t, "the first transfer to hold the buffer", func() bool { return s.budget.Stats().InUse == chunk })
	go func() { errs <- s.Get(&dwv1.GetObjectRequest{Key: "b"}, streams[1]) }()
	waitUntil(t, "the second transfer to wait", func() bool { return s.budget.Stats().Waiting == 1 })

	m, err := s.Metrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m.Backpressure != sdk.BackpressureSaturated || !strings.Contains(m.Reason, "wait for buffer budget") {
		t.Fatalf("backpressure %v %q, want saturated", m.Backpressure, m.Reason)
	}
	if v := metricValue(m, "buffer_waiting"); v != 1 {
		t.Fatalf("buffer_waiting %v", v)
	}

	close(streams[0].release)
	if n := <-streams[0].sent; n != chunk {
		t.Fatalf("first sent %d", n)
	}
	close(streams[1].release)
	if n := <-streams[1].sent; n != chunk {
		t.Fatalf("second sent %d", n)
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if st := s.budget.Stats(); st.InUse != 0 || st.Waits != 1 {
		t.Fatalf("budget after the transfers: %+v", st)
	}
	m, _ = s.Metrics(ctx)
	if m.Backpressure != sdk.BackpressureNone {
		t.Fatalf("backpressure after the transfers: %v", m.Backpressure)
	}
}

// TestBufferResizeLive: raising max_buffer_bytes lets a waiting transfer
// through without anything being released.
func TestBufferResizeLive(t *testing.T) {
	const chunk = 1 << 20
	fs := &fakeStore{GetFunc: func(_ context.Context, key string, _, _ int64) (store.Object, int64, int64, store.Reader, error) {
		return store.Object{Key: key, Size: chunk}, 0, chunk, &pieces{p: [][]byte{make([]byte, chunk)}}, nil
	}}
	l := DefaultLimits()
	l.MaxBufferBytes = chunk
	s := newTestService(t, l, &strategy{name: "primary", driver: "fake", chunkSize: chunk, store: fs})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first := &blockingStream{ctx: ctx, sent: make(chan int, 1), release: make(chan struct{})}
	second := &blockingStream{ctx: ctx, sent: make(chan int, 1), release: make(chan struct{})}
	close(second.release)
	errs := make(chan error, 2)
	go func() { errs <- s.Get(&dwv1.GetObjectRequest{Key: "a"}, first) }()
	waitUntil(t, "the first transfer to hold the buffer", func() bool { return s.budget.Stats().InUse == chunk })
	go func() { errs <- s.Get(&dwv1.GetObjectRequest{Key: "b"}, second) }()
	waitUntil(t, "the second transfer to wait", func() bool { return s.budget.Stats().Waiting == 1 })

	l.MaxBufferBytes = 2 * chunk
	if err := s.ApplyLimits(ctx, l); err != nil {
		t.Fatal(err)
	}
	if n := <-second.sent; n != chunk {
		t.Fatalf("second sent %d", n)
	}
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	close(first.release)
	<-first.sent
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
}

// TestHealthHungStrategy: a strategy whose ping never answers is reported
// unhealthy at health_timeout; the healthy one's result is recorded before
// that, and requests to the hung one fail with ErrUnavailable.
func TestHealthHungStrategy(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	hung := &fakeStore{PingFunc: func(ctx context.Context) error {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return fmt.Errorf("%w: ping: %w", sdk.ErrUnavailable, ctx.Err())
	}}
	pinged := make(chan struct{})
	var once sync.Once
	ok := &fakeStore{PingFunc: func(context.Context) error { once.Do(func() { close(pinged) }); return nil }}
	l := DefaultLimits()
	l.HealthTimeout = 300 * time.Millisecond
	s := newTestService(t, l,
		&strategy{name: "primary", driver: "fake", chunkSize: 1 << 20, store: ok},
		&strategy{name: "hung", driver: "fake", chunkSize: 1 << 20, store: hung})

	done := make(chan sdk.Health, 1)
	go func() { done <- s.Health(context.Background()) }()
	<-pinged
	waitUntil(t, "the healthy strategy's result", func() bool { return s.strategies["primary"].health.Load() != nil })
	if h := s.strategies["hung"].health.Load(); h != nil {
		t.Fatalf("the hung strategy has a result before its deadline: %+v", h)
	}
	h := <-done
	if h.Status != sdk.HealthDegraded || len(h.Components) != 2 {
		t.Fatalf("health %+v", h)
	}
	if c := h.Components[1]; c.Name != "hung" || c.Status != sdk.HealthNotServing || !strings.Contains(c.Message, "health_timeout 300ms") {
		t.Fatalf("hung component %+v", c)
	}
	if c := h.Components[0]; c.Status != sdk.HealthServing {
		t.Fatalf("healthy component %+v", c)
	}
	if _, err := s.pick("hung"); !errors.Is(err, sdk.ErrUnavailable) {
		t.Fatalf("pick(hung) = %v, want ErrUnavailable", err)
	}
	if _, err := s.pick(""); err != nil {
		t.Fatalf("pick(default) = %v", err)
	}
	if _, err := s.pick("nope"); !errors.Is(err, sdk.ErrInvalidArgument) || !strings.Contains(err.Error(), "hung, primary") {
		t.Fatalf("pick(nope) = %v", err)
	}
}

// TestListPaging checks the page size rules and the token against a fake
// store.
func TestListPaging(t *testing.T) {
	keys := make([]string, 25)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%02d", i)
	}
	var last store.ListQuery
	fs := &fakeStore{ListFunc: func(_ context.Context, q store.ListQuery) ([]store.Object, error) {
		last = q
		var out []store.Object
		skipped := int64(0)
		for _, k := range keys {
			if !strings.HasPrefix(k, q.Prefix) || k <= q.After {
				continue
			}
			if skipped < q.Offset {
				skipped++
				continue
			}
			if len(out) == q.Limit {
				break
			}
			out = append(out, store.Object{Key: k})
		}
		return out, nil
	}}
	l := DefaultLimits()
	l.DefaultPageSize, l.MaxPageSize = 4, 10
	s := newTestService(t, l, &strategy{name: "primary", driver: "fake", chunkSize: 1 << 20, store: fs})
	ctx := context.Background()

	resp, err := s.List(ctx, &dwv1.ListObjectsRequest{Prefix: "k"})
	if err != nil || len(resp.Items) != 4 || !resp.HasMore || last.Limit != 5 {
		t.Fatalf("default page: %v %d items, has_more %v, asked %d", err, len(resp.GetItems()), resp.GetHasMore(), last.Limit)
	}
	resp, err = s.List(ctx, &dwv1.ListObjectsRequest{Prefix: "k", Limit: 1000})
	if err != nil || len(resp.Items) != 10 {
		t.Fatalf("capped page: %v %d items", err, len(resp.GetItems()))
	}
	var all []string
	token := ""
	for {
		resp, err := s.List(ctx, &dwv1.ListObjectsRequest{Prefix: "k", Limit: 7, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range resp.Items {
			all = append(all, it.Key)
		}
		if !resp.HasMore {
			if resp.NextPageToken != "" {
				t.Fatal("a token on the last page")
			}
			break
		}
		token = resp.NextPageToken
	}
	if strings.Join(all, ",") != strings.Join(keys, ",") {
		t.Fatalf("paged %v", all)
	}
	for _, bad := range []*dwv1.ListObjectsRequest{
		{Limit: -1},
		{Offset: -1},
		{Offset: 2, PageToken: token},
		{Prefix: strings.Repeat("p", 1025)},
		{Prefix: "nul\x00"},
		{Prefix: "k", PageToken: "garbage"},
		{Strategy: "other"},
	} {
		if _, err := s.List(ctx, bad); !errors.Is(err, sdk.ErrInvalidArgument) {
			t.Errorf("List(%v) = %v, want invalid argument", bad, err)
		}
	}
}

func TestPutHeaderValidation(t *testing.T) {
	long := strings.Repeat("v", 9000)
	for _, h := range []*dwv1.PutObjectHeader{
		{Key: ""},
		{Key: strings.Repeat("k", 1025)},
		{Key: "a", ContentType: "text/plain\r\nX-Evil: 1"},
		{Key: "a", ContentType: strings.Repeat("t", 256)},
		{Key: "a", Metadata: map[string]string{"Upper": "x"}},
		{Key: "a", Metadata: map[string]string{"a": "line\nbreak"}},
		{Key: "a", Metadata: map[string]string{"a": long}},
		{Key: "a", Size: -2},
		{Key: "a", Sha256: "ABC"},
	} {
		if err := validateHeader(h); !errors.Is(err, sdk.ErrInvalidArgument) {
			t.Errorf("validateHeader(%v) = %v", h, err)
		}
	}
	many := map[string]string{}
	for i := 0; i < 65; i++ {
		many[fmt.Sprintf("m%d", i)] = "v"
	}
	if err := validateHeader(&dwv1.PutObjectHeader{Key: "a", Metadata: many}); !errors.Is(err, sdk.ErrInvalidArgument) {
		t.Errorf("65 metadata entries: %v", err)
	}
	if err := validateHeader(&dwv1.PutObjectHeader{Key: "ok/key", ContentType: "text/plain; charset=utf-8", Metadata: map[string]string{"owner": "alice"}, Size: -1}); err != nil {
		t.Errorf("a good header: %v", err)
	}
}

// TestRequestDuration checks request_duration_seconds: one histogram per
// operation and configured strategy, requests timed to their end (a Get
// to the end of its stream), failures included, and requests that name
// no configured strategy under strategy "".
func TestRequestDuration(t *testing.T) {
	fs := &fakeStore{
		ListFunc: func(context.Context, store.ListQuery) ([]store.Object, error) { return nil, nil },
		GetFunc: func(_ context.Context, key string, _, _ int64) (store.Object, int64, int64, store.Reader, error) {
			return store.Object{Key: key, Size: 2}, 0, 2, &pieces{p: [][]byte{{1}, {2}}}, nil
		},
	}
	s := newTestService(t, DefaultLimits(),
		&strategy{name: "primary", driver: "fake", chunkSize: 1 << 20, store: fs},
		&strategy{name: "secondary", driver: "fake", chunkSize: 1 << 20, store: fs})
	ctx := context.Background()
	for _, req := range []*dwv1.ListObjectsRequest{{}, {Strategy: "primary"}, {Strategy: "secondary"}, {Strategy: "nope"}} {
		_, _ = s.List(ctx, req)
	}
	if _, err := s.Stat(ctx, &dwv1.StatObjectRequest{Key: "a"}); err == nil {
		t.Fatal("the fake's Stat fails")
	}
	// The stream's sends wait 30 ms: the Get is timed until it ends.
	release := make(chan struct{})
	time.AfterFunc(30*time.Millisecond, func() { close(release) })
	if err := s.Get(&dwv1.GetObjectRequest{Key: "a"}, &blockingStream{ctx: ctx, sent: make(chan int, 2), release: release}); err != nil {
		t.Fatal(err)
	}

	m, err := s.Metrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*sdk.HistogramSnapshot{}
	for _, v := range m.Values {
		if v.Name != "request_duration_seconds" {
			continue
		}
		if v.Kind != sdk.KindHistogram || v.Histogram == nil || len(v.Labels) != 2 || v.Help != requestDurationHelp {
			t.Fatalf("request_duration_seconds = %+v", v)
		}
		got[v.Labels["operation"]+"/"+v.Labels["strategy"]] = v.Histogram
	}
	// Every operation of each configured strategy, and only the list of
	// the unconfigured one.
	if len(got) != 2*numReqs+1 {
		t.Errorf("%d histograms: %v", len(got), slices.Sorted(maps.Keys(got)))
	}
	for key, want := range map[string]uint64{
		"list/primary": 2, "list/secondary": 1, "list/": 1, "stat/primary": 1, "get/primary": 1,
		"put/primary": 0, "delete/secondary": 0, "list_stream/primary": 0,
	} {
		if h := got[key]; h == nil || h.Count != want {
			t.Errorf("%s: %+v, want count %d", key, h, want)
		}
	}
	if h := got["get/primary"]; h != nil && h.Sum < 0.03 {
		t.Errorf("get timed %v s, want at least the 30 ms of its stream", h.Sum)
	}
}

func metricValue(m sdk.Metrics, name string) float64 {
	for _, v := range m.Values {
		if v.Name == name {
			return v.Value
		}
	}
	return -1
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// spaceStore is a fakeStore on a local volume (store.SpaceReporter).
type spaceStore struct {
	fakeStore
	space store.Space
}

func (f *spaceStore) Space(context.Context) (store.Space, error) { return f.space, nil }

// TestHealthFullVolume: a strategy whose volume is too full to write is
// degraded, says so with its free space, and keeps being picked (reads go
// on); with room again it is serving. Metrics carry the free space.
func TestHealthFullVolume(t *testing.T) {
	full := &spaceStore{fakeStore: fakeStore{PingFunc: func(context.Context) error { return nil }},
		space: store.Space{FreeBytes: 12345, LogBytes: 0, WritesFailing: "volume full: 12345 bytes free"}}
	s := newTestService(t, DefaultLimits(), &strategy{name: "primary", driver: "sqlite", chunkSize: 1 << 20, store: full})
	h := s.Health(context.Background())
	if h.Status != sdk.HealthDegraded || !strings.Contains(h.Message, "read-only") {
		t.Fatalf("health %+v; want degraded, read-only", h)
	}
	if c := h.Components[0]; c.Status != sdk.HealthDegraded || !strings.Contains(c.Message, "free_bytes=12345") || !strings.Contains(c.Message, "writes fail: volume full") {
		t.Fatalf("component %+v", c)
	}
	if _, err := s.pick("primary"); err != nil {
		t.Fatalf("a read-only strategy is not picked: %v", err)
	}
	m, err := s.Metrics(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, v := range m.Values {
		if v.Name == "volume_free_bytes" && v.Value == 12345 {
			found = true
		}
	}
	if !found {
		t.Fatalf("no volume_free_bytes 12345 in %+v", m.Values)
	}
	full.space.WritesFailing = ""
	if h := s.Health(context.Background()); h.Status != sdk.HealthServing || h.Components[0].Status != sdk.HealthServing {
		t.Fatalf("health with room again %+v", h)
	}
}
