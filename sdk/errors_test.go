package sdk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/datawarehouse/dw/sdk/v6/internal/contract"
)

func TestErrorsRoundTrip(t *testing.T) {
	for _, s := range sentinels {
		wrapped := fmt.Errorf("get object %q: %w", "a/b", s.err)
		st := ToStatus(wrapped)
		if got := status.Code(st); got != s.code {
			t.Errorf("%v: code %v, want %v", s.err, got, s.code)
		}
		back := FromStatus(st)
		if !errors.Is(back, s.err) {
			t.Errorf("%v: FromStatus(ToStatus) = %v, does not match the sentinel", s.err, back)
		}
		if back.Error() != wrapped.Error() {
			t.Errorf("%v: message %q, want %q", s.err, back.Error(), wrapped.Error())
		}
		for _, other := range sentinels {
			if other.err != s.err && errors.Is(back, other.err) {
				t.Errorf("%v also matches %v", s.err, other.err)
			}
		}
	}
}

func TestRetryAfterCrossesTheWire(t *testing.T) {
	err := WithRetryAfter(fmt.Errorf("queue full: %w", ErrBackpressure), 1500*time.Millisecond)
	back := FromStatus(ToStatus(err))
	if !errors.Is(back, ErrBackpressure) {
		t.Fatalf("lost the sentinel: %v", back)
	}
	d, ok := RetryAfter(back)
	if !ok || d != 1500*time.Millisecond {
		t.Fatalf("RetryAfter = %v, %v", d, ok)
	}
	if WithRetryAfter(nil, time.Second) != nil {
		t.Fatal("WithRetryAfter(nil) must be nil")
	}
}

func TestFromStatusPlainCodes(t *testing.T) {
	tests := []struct {
		code codes.Code
		want error
	}{
		{codes.NotFound, ErrNotFound},
		{codes.Unavailable, ErrPluginShutdown},
		{codes.ResourceExhausted, ErrBackpressure},
		{codes.DeadlineExceeded, context.DeadlineExceeded},
		{codes.Canceled, context.Canceled},
		{codes.PermissionDenied, ErrPermissionDenied},
	}
	for _, tt := range tests {
		got := FromStatus(status.Error(tt.code, "boom"))
		if !errors.Is(got, tt.want) {
			t.Errorf("code %v: %v does not match %v", tt.code, got, tt.want)
		}
	}
	if got := FromStatus(status.Error(codes.Canceled, "grpc: the client connection is closing")); !errors.Is(got, ErrPluginShutdown) {
		t.Errorf("closing connection: %v is not ErrPluginShutdown", got)
	}
	if got := FromStatus(status.Error(codes.ResourceExhausted, "grpc: received message larger than max (5000000 vs. 4194304)")); errors.Is(got, ErrBackpressure) {
		t.Errorf("an oversized message is not backpressure: %v", got)
	}
	plain := errors.New("not grpc")
	if FromStatus(plain) != plain {
		t.Error("a non-status error must pass through")
	}
	if FromStatus(nil) != nil || ToStatus(nil) != nil {
		t.Error("nil must stay nil")
	}
	if got := status.Code(ToStatus(context.DeadlineExceeded)); got != codes.DeadlineExceeded {
		t.Errorf("deadline: %v", got)
	}
	unknown := ToStatus(errors.New("disk on fire"))
	if status.Code(unknown) != codes.Unknown {
		t.Errorf("unknown error code: %v", status.Code(unknown))
	}
}

// An error that came from a plugin and is sent on again keeps its status.
func TestForwardedStatusKeepsCode(t *testing.T) {
	back := FromStatus(ToStatus(fmt.Errorf("x: %w", ErrQuotaExceeded)))
	again := FromStatus(ToStatus(fmt.Errorf("host: %w", back)))
	if !errors.Is(again, ErrQuotaExceeded) {
		t.Fatalf("forwarded error lost its sentinel: %v", again)
	}
}

func TestCallerMetadata(t *testing.T) {
	if got := Caller(context.Background()); got != AnonymousCaller {
		t.Fatalf("no metadata: %q", got)
	}
	out := metadata.AppendToOutgoingContext(context.Background(), contract.CallerMetadataKey, "alice")
	md, _ := metadata.FromOutgoingContext(out)
	in := metadata.NewIncomingContext(context.Background(), md)
	if got := Caller(in); got != "alice" {
		t.Fatalf("Caller = %q", got)
	}
}

// TestConversionsAreIdempotent: ToStatus of a status and FromStatus of a
// converted error keep them; a forwarded error keeps its problems.
func TestConversionsAreIdempotent(t *testing.T) {
	orig := fmt.Errorf("%w: %w", ErrInvalidLimits, &DecodeError{Problems: []FieldProblem{{Path: "limits.a", Message: "bad", Allowed: []string{"x"}}}})
	st := ToStatus(orig)
	if again := ToStatus(st); again != st {
		t.Errorf("ToStatus(ToStatus(err)) = %v, want the same status", again)
	}
	back := FromStatus(st)
	if again := FromStatus(back); again != back {
		t.Errorf("FromStatus(FromStatus(err)) = %v, want the same error", again)
	}
	wrapped := fmt.Errorf("apply limits: %w", back)
	if FromStatus(wrapped) != wrapped {
		t.Error("FromStatus of a wrapped converted error must keep it")
	}
	// The host forwards it: code, reason and problems survive.
	fwd := FromStatus(status.Convert(ToStatus(wrapped)).Err())
	var de *DecodeError
	if !errors.Is(fwd, ErrInvalidLimits) || !errors.As(fwd, &de) || de.Problems[0].Allowed[0] != "x" || fwd.Error() != "apply limits: invalid limits: limits.a: bad" {
		t.Errorf("forwarded: %v %#v", fwd, de)
	}
	if FromStatus(io.EOF) != io.EOF { //nolint:errorlint // identity is the point
		t.Error("io.EOF must pass through")
	}
	// A panic from the wire (a plugin of this SDK) is ErrPanicked.
	p := FromStatus(status.Convert(ToStatus(fmt.Errorf("%w in Put: boom (x.go:1)", ErrPanicked))).Err())
	if !errors.Is(p, ErrPanicked) || status.Code(p) != codes.Internal {
		t.Errorf("panic: %v", p)
	}
}
