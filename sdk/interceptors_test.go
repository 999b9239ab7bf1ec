package sdk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/datawarehouse/dw/sdk/v6/internal/syncbuf"
	dwv1 "github.com/datawarehouse/dw/sdk/v6/proto/dw/v1"
)

// fakeFileStore is a domain service for the interceptor tests; each method
// calls its function field.
type fakeFileStore struct {
	dwv1.UnimplementedFileStoreServer
	StatFunc func(context.Context, *dwv1.StatFileRequest) (*dwv1.StatFileResponse, error)
	GetFunc  func(*dwv1.GetFileRequest, dwv1.FileStore_GetServer) error
	PutFunc  func(dwv1.FileStore_PutServer) error
}

func (f *fakeFileStore) Stat(ctx context.Context, r *dwv1.StatFileRequest) (*dwv1.StatFileResponse, error) {
	return f.StatFunc(ctx, r)
}
func (f *fakeFileStore) Get(r *dwv1.GetFileRequest, s dwv1.FileStore_GetServer) error {
	return f.GetFunc(r, s)
}
func (f *fakeFileStore) Put(s dwv1.FileStore_PutServer) error { return f.PutFunc(s) }

// domainSubsystem is testSubsystem serving a FileStore, whose Configure
// and ApplyLimits panic on demand.
type domainSubsystem struct {
	*testSubsystem
	files          *fakeFileStore
	applyPanic     atomic.Bool
	configurePanic atomic.Bool
	pool           map[string]int // never made: ApplyLimits's bug
}

func (d *domainSubsystem) Configure(ctx context.Context, cfg Config) error {
	if d.configurePanic.Load() {
		markLine()
		panic(fmt.Errorf("cannot open %s", cfg.DataDir))
	}
	return d.testSubsystem.Configure(ctx, cfg)
}

func (d *domainSubsystem) RegisterGRPC(s *grpc.Server) { dwv1.RegisterFileStoreServer(s, d.files) }

func (d *domainSubsystem) ApplyLimits(ctx context.Context, l wireLimits) error {
	if d.applyPanic.Load() {
		markLine()
		d.pool["boom"]++ // a plugin bug: assignment to a nil map
	}
	return d.testSubsystem.ApplyLimits(ctx, l)
}

var (
	_ Subsystem[wireLimits] = (*domainSubsystem)(nil)
	_ GRPCRegistrar         = (*domainSubsystem)(nil)
)

// panicLine is the line a handler is about to panic at (see markLine).
var panicLine atomic.Value

// markLine records the line of the statement after the call, where a
// handler panics, for the file:line checks.
func markLine() {
	_, _, line, _ := runtime.Caller(1)
	panicLine.Store(strconv.Itoa(line + 1))
}

// startDomain serves a domainSubsystem in process, configured unless
// configure is false, and returns it, its client, a FileStore client and
// the plugin's log.
func startDomain(t *testing.T, configure bool) (*domainSubsystem, *testClient, dwv1.FileStoreClient, *syncbuf.Buffer) {
	t.Helper()
	d := &domainSubsystem{testSubsystem: &testSubsystem{}, files: &fakeFileStore{}}
	logs := &syncbuf.Buffer{}
	logger := hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Debug})
	c := serveInProcess[wireLimits](t, d, logger)
	if configure {
		if err := c.Configure(context.Background(), Config{Subsystem: "testsub"}); err != nil {
			t.Fatal(err)
		}
	}
	return d, c, dwv1.NewFileStoreClient(c.conn), logs
}

// TestInterceptorsTranslateErrors: what a handler returns arrives on the
// host as an sdk error (errors.Is, errors.As, RetryAfter), with no
// ToStatus in the handler and no FromStatus at the call; streams end in
// io.EOF as they should.
func TestInterceptorsTranslateErrors(t *testing.T) {
	ctx := context.Background()
	d, _, fs, _ := startDomain(t, true)

	cases := []struct {
		name  string
		err   error
		is    error
		code  codes.Code
		retry time.Duration
	}{
		{"sentinel", fmt.Errorf("stat %q: %w", "a", ErrNotFound), ErrNotFound, codes.NotFound, 0},
		{"retry hint", WithRetryAfter(fmt.Errorf("queue full: %w", ErrBackpressure), 1500*time.Millisecond), ErrBackpressure, codes.ResourceExhausted, 1500 * time.Millisecond},
		{"context", fmt.Errorf("wait: %w", context.DeadlineExceeded), context.DeadlineExceeded, codes.DeadlineExceeded, 0},
		// A handler of sdk 6.0 converted by hand: converting again changes nothing.
		{"converted by hand", ToStatus(fmt.Errorf("stat %q: %w", "a", ErrPermissionDenied)), ErrPermissionDenied, codes.PermissionDenied, 0},
		{"plain", errors.New("disk on fire"), nil, codes.Unknown, 0},
	}
	for _, tc := range cases {
		d.files.StatFunc = func(context.Context, *dwv1.StatFileRequest) (*dwv1.StatFileResponse, error) { return nil, tc.err }
		_, err := fs.Stat(ctx, &dwv1.StatFileRequest{Path: "a"})
		if tc.is != nil && !errors.Is(err, tc.is) {
			t.Errorf("%s: %v does not match %v", tc.name, err, tc.is)
		}
		if got := status.Code(err); got != tc.code {
			t.Errorf("%s: code %v, want %v", tc.name, got, tc.code)
		}
		if err == nil || err.Error() != tc.err.Error() && !strings.HasSuffix(tc.err.Error(), err.Error()) {
			t.Errorf("%s: message %q, want %q", tc.name, err, tc.err)
		}
		if d, ok := RetryAfter(err); ok != (tc.retry != 0) || d != tc.retry {
			t.Errorf("%s: RetryAfter = %v, %v; want %v", tc.name, d, ok, tc.retry)
		}
		if FromStatus(err) != err {
			t.Errorf("%s: FromStatus of a converted error converted it again", tc.name)
		}
	}

	// Field problems come back as a *DecodeError, with the sentinel.
	d.files.StatFunc = func(context.Context, *dwv1.StatFileRequest) (*dwv1.StatFileResponse, error) {
		return nil, fmt.Errorf("%w: %w", ErrInvalidArgument, &DecodeError{Problems: []FieldProblem{{Path: "path", Message: "must be one of a, b", Allowed: []string{"a", "b"}}}})
	}
	_, err := fs.Stat(ctx, &dwv1.StatFileRequest{})
	var de *DecodeError
	if !errors.Is(err, ErrInvalidArgument) || !errors.As(err, &de) || len(de.Problems) != 1 || !reflect.DeepEqual(de.Problems[0].Allowed, []string{"a", "b"}) {
		t.Errorf("field problems: %v (%#v)", err, de)
	}

	// A server stream: messages, then the handler's error; or io.EOF.
	for _, fail := range []error{fmt.Errorf("read: %w", ErrOutOfRange), nil} {
		d.files.GetFunc = func(_ *dwv1.GetFileRequest, s dwv1.FileStore_GetServer) error {
			for range 2 {
				if err := s.Send(&dwv1.GetFileResponse{Part: &dwv1.GetFileResponse_Data{Data: []byte("x")}}); err != nil {
					return err
				}
			}
			return fail
		}
		st, err := fs.Get(ctx, &dwv1.GetFileRequest{Path: "a"})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for {
			_, err = st.Recv()
			if err != nil {
				break
			}
			n++
		}
		switch {
		case n != 2:
			t.Errorf("got %d messages, want 2", n)
		case fail == nil && err != io.EOF: //nolint:errorlint // io.EOF itself, unwrapped, is the contract of Recv
			t.Errorf("end of stream: %#v, want io.EOF itself", err)
		case fail != nil && (!errors.Is(err, ErrOutOfRange) || err.Error() != "read: out of range"):
			t.Errorf("stream error %v, want ErrOutOfRange", err)
		}
	}

	// A failing stream reports its error from Header too.
	d.files.GetFunc = func(*dwv1.GetFileRequest, dwv1.FileStore_GetServer) error { return ErrNotFound }
	st, err := fs.Get(ctx, &dwv1.GetFileRequest{Path: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Header(); err != nil && !errors.Is(err, ErrNotFound) {
		t.Errorf("Header: %v", err)
	}
	if _, err := st.Recv(); !errors.Is(err, ErrNotFound) {
		t.Errorf("Recv: %v", err)
	}

	// A client stream the server ends early: Send says io.EOF (the caller
	// then reads the status), CloseAndRecv has the error.
	d.files.PutFunc = func(dwv1.FileStore_PutServer) error { return fmt.Errorf("put: %w", ErrAlreadyExists) }
	put, err := fs.Put(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var sendErr error
	for range 1000 {
		if sendErr = put.Send(&dwv1.PutFileRequest{Part: &dwv1.PutFileRequest_Data{Data: make([]byte, 64<<10)}}); sendErr != nil {
			break
		}
	}
	if sendErr != io.EOF { //nolint:errorlint // io.EOF itself is the contract of Send
		t.Errorf("Send after the server ended: %#v, want io.EOF itself", sendErr)
	}
	if _, err := put.CloseAndRecv(); !errors.Is(err, ErrAlreadyExists) {
		t.Errorf("CloseAndRecv: %v", err)
	}
}

// TestPanicsAreRecovered: a panic in a handler, unary or stream, of a
// domain service or of the contract (the plugin's ApplyLimits), fails that
// call with ErrPanicked naming the method, the value and the plugin's
// file:line, logs the stack, and the plugin goes on serving; a panicking
// ApplyLimits leaves the limits in force as they were.
func TestPanicsAreRecovered(t *testing.T) {
	ctx := context.Background()
	d, c, fs, logs := startDomain(t, true)

	d.files.StatFunc = func(context.Context, *dwv1.StatFileRequest) (*dwv1.StatFileResponse, error) {
		markLine()
		panic("boom")
	}
	_, err := fs.Stat(ctx, &dwv1.StatFileRequest{Path: "a"})
	want := "panicked in Stat: boom (sdk/interceptors_test.go:" + panicLine.Load().(string) + ")"
	if !errors.Is(err, ErrPanicked) || status.Code(err) != codes.Internal || err.Error() != want {
		t.Errorf("unary panic: %v (code %v), want %q", err, status.Code(err), want)
	}
	if l := logs.String(); !strings.Contains(l, "recovered a panic") || !strings.Contains(l, "/dw.sdk.v1.FileStore/Stat") || !strings.Contains(l, "goroutine ") {
		t.Errorf("the log lacks the panic and its stack:\n%s", l)
	}

	// A fault (nil pointer) in a stream handler, after a first message.
	d.files.GetFunc = func(_ *dwv1.GetFileRequest, s dwv1.FileStore_GetServer) error {
		if err := s.Send(&dwv1.GetFileResponse{}); err != nil {
			return err
		}
		var info *dwv1.FileInfo
		markLine()
		return errors.New(info.Path)
	}
	st, err := fs.Get(ctx, &dwv1.GetFileRequest{Path: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); err != nil {
		t.Fatalf("first message: %v", err)
	}
	_, err = st.Recv()
	if !errors.Is(err, ErrPanicked) || !strings.HasPrefix(err.Error(), "panicked in Get: runtime error: invalid memory address or nil pointer dereference") ||
		!strings.HasSuffix(err.Error(), "(sdk/interceptors_test.go:"+panicLine.Load().(string)+")") {
		t.Errorf("stream panic: %v (line %s)", err, panicLine.Load())
	}

	// Still serving.
	d.files.StatFunc = func(context.Context, *dwv1.StatFileRequest) (*dwv1.StatFileResponse, error) {
		return &dwv1.StatFileResponse{Info: &dwv1.FileInfo{Path: "a"}}, nil
	}
	if r, err := fs.Stat(ctx, &dwv1.StatFileRequest{Path: "a"}); err != nil || r.GetInfo().GetPath() != "a" {
		t.Fatalf("after the panics: %v %v", r, err)
	}

	// The plugin's ApplyLimits panics: the limits in force stay, and the
	// next ApplyLimits runs (the SDK's mutex was released).
	if _, err := c.ApplyLimits(ctx, map[string]any{"max_items": 3}, 2); err != nil {
		t.Fatal(err)
	}
	d.applyPanic.Store(true)
	_, err = c.ApplyLimits(ctx, map[string]any{"max_items": 4}, 3)
	if !errors.Is(err, ErrPanicked) || err.Error() != "panicked in ApplyLimits: assignment to entry in nil map (sdk/interceptors_test.go:"+panicLine.Load().(string)+")" {
		t.Errorf("ApplyLimits panic: %v", err)
	}
	if got, gen, err := c.Limits(ctx); err != nil || gen != 2 || got["max_items"] != int64(3) {
		t.Errorf("limits after the panic: %v gen %d (%v), want max_items 3 gen 2", got, gen, err)
	}
	d.applyPanic.Store(false)
	if _, err := c.ApplyLimits(ctx, map[string]any{"max_items": 5}, 4); err != nil {
		t.Fatalf("ApplyLimits after the panic: %v", err)
	}
	if got, gen, err := c.Limits(ctx); err != nil || gen != 4 || got["max_items"] != int64(5) {
		t.Errorf("limits: %v gen %d (%v)", got, gen, err)
	}
}

// TestDomainServicesWaitForConfigure: before Configure has succeeded, a
// domain service answers ErrUnavailable without reaching the plugin; the
// contract answers all along. A Configure that panicked (its host KV
// connection released) may be called again.
func TestDomainServicesWaitForConfigure(t *testing.T) {
	ctx := context.Background()
	d, c, fs, _ := startDomain(t, false)
	var reached atomic.Int32
	d.files.StatFunc = func(context.Context, *dwv1.StatFileRequest) (*dwv1.StatFileResponse, error) {
		reached.Add(1)
		return &dwv1.StatFileResponse{}, nil
	}
	d.files.GetFunc = func(*dwv1.GetFileRequest, dwv1.FileStore_GetServer) error {
		reached.Add(1)
		return nil
	}
	refused := func(when string) {
		t.Helper()
		_, err := fs.Stat(ctx, &dwv1.StatFileRequest{Path: "a"})
		if !errors.Is(err, ErrUnavailable) || status.Code(err) != codes.Unavailable || err.Error() != "Stat: unavailable: plugin testsub is not configured yet" {
			t.Errorf("%s: Stat = %v", when, err)
		}
		st, err := fs.Get(ctx, &dwv1.GetFileRequest{Path: "a"})
		if err == nil {
			_, err = st.Recv()
		}
		if !errors.Is(err, ErrUnavailable) {
			t.Errorf("%s: Get = %v", when, err)
		}
		if n := reached.Load(); n != 0 {
			t.Errorf("%s: the plugin was called %d times", when, n)
		}
	}
	refused("before Configure")
	if _, err := c.Info(ctx); err != nil {
		t.Fatalf("GetInfo before Configure: %v", err)
	}
	if _, err := c.Health(ctx); err != nil {
		t.Fatalf("CheckHealth before Configure: %v", err)
	}
	if err := c.Configure(ctx, Config{Subsystem: "testsub", Settings: map[string]any{"rooot": 1}}); !errors.Is(err, ErrInvalidSettings) {
		t.Fatalf("bad settings: %v", err)
	}
	refused("after a failed Configure")
	// A panicking Configure fails the call, and another may follow.
	d.configurePanic.Store(true)
	err := c.Configure(ctx, Config{Subsystem: "testsub", DataDir: "/nowhere", KV: &memKV{}})
	if !errors.Is(err, ErrPanicked) || err.Error() != "panicked in Configure: cannot open /nowhere (sdk/interceptors_test.go:"+panicLine.Load().(string)+")" {
		t.Fatalf("panicking Configure: %v", err)
	}
	refused("after a panicking Configure")
	d.configurePanic.Store(false)
	if err := c.Configure(ctx, Config{Subsystem: "testsub"}); err != nil {
		t.Fatal(err)
	}
	if _, err := fs.Stat(ctx, &dwv1.StatFileRequest{Path: "a"}); err != nil || reached.Load() != 1 {
		t.Fatalf("after Configure: %v", err)
	}
}

// TestFieldProblemsCrossTheWire: the problems of refused limits reach the
// host structured, Allowed lists included, alongside ErrInvalidLimits.
func TestFieldProblemsCrossTheWire(t *testing.T) {
	ctx := context.Background()
	c := connect(t, &testSubsystem{})
	_, err := c.ValidateLimits(ctx, map[string]any{"mode": "ring", "max_itemz": 1, "max_items": 0})
	var de *DecodeError
	if !errors.Is(err, ErrInvalidLimits) || !errors.As(err, &de) {
		t.Fatalf("got %v", err)
	}
	want := []FieldProblem{
		{Path: "limits.max_items", Message: "must be >= 1, got 0"},
		{Path: "limits.max_itemz", Message: `unknown key (did you mean "max_items"?); allowed: buffer, interval, max_items, mode`,
			Allowed: []string{"buffer", "interval", "max_items", "mode"}},
		{Path: "limits.mode", Message: `must be one of fast, safe, got "ring"`, Allowed: []string{"fast", "safe"}},
	}
	if !reflect.DeepEqual(de.Problems, want) {
		t.Errorf("problems:\n got %#v\nwant %#v", de.Problems, want)
	}
	if !strings.Contains(err.Error(), "limits.mode: must be one of fast, safe") {
		t.Errorf("message %q", err)
	}
}
