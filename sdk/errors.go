package sdk

import (
	"context"
	"errors"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	dwv1 "github.com/datawarehouse/dw/sdk/v6/proto/dw/v1"
)

// Sentinel errors. A plugin returns them (wrapped as it likes); they cross
// the gRPC connection as status codes with an ErrorInfo reason, and the host
// gets them back so that errors.Is works on both sides.
var (
	// ErrNotFound: the named thing does not exist.
	ErrNotFound = errors.New("not found")
	// ErrAlreadyExists: the thing to create exists already.
	ErrAlreadyExists = errors.New("already exists")
	// ErrInvalidArgument: a request is malformed.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrInvalidLimits: limits were rejected by ValidateLimits or ApplyLimits.
	ErrInvalidLimits = errors.New("invalid limits")
	// ErrInvalidSettings: settings were rejected by Configure.
	ErrInvalidSettings = errors.New("invalid settings")
	// ErrBackpressure: the plugin is saturated; retry later (see RetryAfter).
	ErrBackpressure = errors.New("backpressure")
	// ErrQuotaExceeded: the caller is over its quota; retry later.
	ErrQuotaExceeded = errors.New("quota exceeded")
	// ErrFailedPrecondition: the system is not in a state to do this.
	ErrFailedPrecondition = errors.New("failed precondition")
	// ErrPermissionDenied: the caller may not do this.
	ErrPermissionDenied = errors.New("permission denied")
	// ErrUnimplemented: the plugin does not offer this.
	ErrUnimplemented = errors.New("unimplemented")
	// ErrOutOfRange: a requested range lies outside the thing asked for
	// (HTTP 416 for a byte range).
	ErrOutOfRange = errors.New("out of range")
	// ErrUnavailable: a dependency of the plugin is down; retry later.
	ErrUnavailable = errors.New("unavailable")
	// ErrPluginShutdown: the plugin process is gone or shutting down.
	ErrPluginShutdown = errors.New("plugin shut down")
	// ErrPanicked: a handler of the plugin panicked. The SDK recovers the
	// panic, fails that one call with "panicked in <Method>: <value>
	// (<file>:<line>)", logs the stack and keeps serving; the host answers
	// HTTP 500. A plugin does not return it itself. Since sdk 6.1.
	ErrPanicked = errors.New("panicked")
)

// errorDomain is the ErrorInfo domain of dw's sentinel errors.
const errorDomain = "dw.sdk.v1"

var sentinels = []struct {
	err    error
	code   codes.Code
	reason string
}{
	{ErrNotFound, codes.NotFound, "NOT_FOUND"},
	{ErrAlreadyExists, codes.AlreadyExists, "ALREADY_EXISTS"},
	{ErrInvalidLimits, codes.InvalidArgument, "INVALID_LIMITS"},
	{ErrInvalidSettings, codes.InvalidArgument, "INVALID_SETTINGS"},
	{ErrInvalidArgument, codes.InvalidArgument, "INVALID_ARGUMENT"},
	{ErrBackpressure, codes.ResourceExhausted, "BACKPRESSURE"},
	{ErrQuotaExceeded, codes.ResourceExhausted, "QUOTA_EXCEEDED"},
	{ErrFailedPrecondition, codes.FailedPrecondition, "FAILED_PRECONDITION"},
	{ErrPermissionDenied, codes.PermissionDenied, "PERMISSION_DENIED"},
	{ErrUnimplemented, codes.Unimplemented, "UNIMPLEMENTED"},
	{ErrOutOfRange, codes.OutOfRange, "OUT_OF_RANGE"},
	{ErrPluginShutdown, codes.Unavailable, "PLUGIN_SHUTDOWN"},
	{ErrUnavailable, codes.Unavailable, "UNAVAILABLE"},
	{ErrPanicked, codes.Internal, "PANIC"},
}

// retryAfterError carries a retry hint with an error.
type retryAfterError struct {
	err   error
	after time.Duration
}

func (e *retryAfterError) Error() string { return e.err.Error() }
func (e *retryAfterError) Unwrap() error { return e.err }

// WithRetryAfter attaches a retry hint to err: the caller should wait d
// before trying again. The hint crosses the gRPC connection and becomes the
// HTTP Retry-After header.
func WithRetryAfter(err error, d time.Duration) error {
	if err == nil {
		return nil
	}
	return &retryAfterError{err: err, after: d}
}

// RetryAfter returns the retry hint attached to err, if any.
func RetryAfter(err error) (time.Duration, bool) {
	var ra *retryAfterError
	if errors.As(err, &ra) {
		return ra.after, true
	}
	return 0, false
}

// remoteError is an error that came over gRPC: its message is the remote
// message and it unwraps to the matching sentinel and, when the status
// carried field problems, to the *DecodeError rebuilt from them.
type remoteError struct {
	msg      string
	sentinel error
	problems *DecodeError
	st       *status.Status
}

func (e *remoteError) Error() string { return e.msg }

func (e *remoteError) Unwrap() []error {
	if e.problems == nil {
		return []error{e.sentinel}
	}
	return []error{e.sentinel, e.problems}
}

// GRPCStatus lets grpc-go send the same status on when the host forwards it.
func (e *remoteError) GRPCStatus() *status.Status { return e.st }

// ToStatus converts err into a gRPC status error: sentinel errors become
// codes with an ErrorInfo reason, a retry hint ([WithRetryAfter]) a
// RetryInfo, and the problems of a [*DecodeError] a dw.sdk.v1.FieldProblems
// detail; the message is err's. nil stays nil; an error that already is a
// gRPC status is kept, so ToStatus may be applied twice.
//
// The SDK applies ToStatus to every error a handler served by [Serve]
// returns (a gRPC interceptor does it), so a plugin need not call it;
// plugins written for sdk 6.0 did, and still may.
func ToStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		var re *remoteError
		if !errors.As(err, &re) {
			return err
		}
	}
	code, reason := codes.Unknown, ""
	switch {
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	}
	for _, s := range sentinels {
		if errors.Is(err, s.err) {
			code, reason = s.code, s.reason
			break
		}
	}
	st := status.New(code, err.Error())
	var details []protoadapt.MessageV1
	if reason != "" {
		details = append(details, &errdetails.ErrorInfo{Reason: reason, Domain: errorDomain})
	}
	if d, ok := RetryAfter(err); ok {
		details = append(details, &errdetails.RetryInfo{RetryDelay: durationpb.New(d)})
	}
	var de *DecodeError
	if errors.As(err, &de) && len(de.Problems) > 0 {
		fp := &dwv1.FieldProblems{Problems: make([]*dwv1.FieldProblem, len(de.Problems))}
		for i, p := range de.Problems {
			fp.Problems[i] = &dwv1.FieldProblem{Path: p.Path, Message: p.Message, Allowed: p.Allowed}
		}
		details = append(details, fp)
	}
	if len(details) > 0 {
		if withDetails, derr := st.WithDetails(details...); derr == nil {
			st = withDetails
		}
	}
	return st.Err()
}

// FromStatus converts an error returned by a gRPC call back into an error
// that matches the sdk sentinels with errors.Is, keeps the retry hint for
// [RetryAfter], and unwraps (errors.As) to a [*DecodeError] when the status
// carried field problems. Errors of a dead or closed connection become
// ErrPluginShutdown. nil stays nil, an error that is not a gRPC status is
// returned as it is, and so is one FromStatus already converted.
//
// The host's connections to plugins, and a plugin's connection to the
// host's services, apply FromStatus to every error (a gRPC interceptor
// does it); code calling through them need not.
func FromStatus(err error) error {
	if err == nil {
		return nil
	}
	var re *remoteError
	if errors.As(err, &re) {
		return err
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	var sentinel error
	var retry time.Duration
	hasRetry := false
	var problems *DecodeError
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			if d.GetDomain() != errorDomain {
				continue
			}
			for _, s := range sentinels {
				if s.reason == d.GetReason() {
					sentinel = s.err
				}
			}
		case *errdetails.RetryInfo:
			retry, hasRetry = d.GetRetryDelay().AsDuration(), true
		case *dwv1.FieldProblems:
			if len(d.GetProblems()) == 0 {
				continue
			}
			problems = &DecodeError{Problems: make([]FieldProblem, len(d.GetProblems()))}
			for i, p := range d.GetProblems() {
				problems.Problems[i] = FieldProblem{Path: p.GetPath(), Message: p.GetMessage(), Allowed: p.GetAllowed()}
			}
		}
	}
	if sentinel == nil {
		sentinel = sentinelForCode(st.Code(), st.Message())
	}
	if sentinel == nil {
		sentinel = err
	}
	var out error = &remoteError{msg: st.Message(), sentinel: sentinel, problems: problems, st: st}
	if hasRetry {
		out = WithRetryAfter(out, retry)
	}
	return out
}

// sentinelForCode maps a status that carries no dw ErrorInfo (from grpc-go
// itself, or from a plugin not built on this SDK) to a sentinel.
func sentinelForCode(c codes.Code, msg string) error {
	switch {
	case c == codes.Canceled && strings.Contains(msg, "client connection is closing"):
		// The host closed the plugin's connection: the plugin is going away.
		return ErrPluginShutdown
	case c == codes.ResourceExhausted && strings.Contains(msg, "larger than max"):
		// grpc-go's message size limit: not load, so no retry would help.
		return nil
	}
	switch c {
	case codes.NotFound:
		return ErrNotFound
	case codes.AlreadyExists:
		return ErrAlreadyExists
	case codes.InvalidArgument:
		return ErrInvalidArgument
	case codes.OutOfRange:
		return ErrOutOfRange
	case codes.ResourceExhausted:
		return ErrBackpressure
	case codes.FailedPrecondition, codes.Aborted:
		return ErrFailedPrecondition
	case codes.PermissionDenied, codes.Unauthenticated:
		return ErrPermissionDenied
	case codes.Unimplemented:
		return ErrUnimplemented
	case codes.Unavailable:
		return ErrPluginShutdown
	case codes.Canceled:
		return context.Canceled
	case codes.DeadlineExceeded:
		return context.DeadlineExceeded
	}
	return nil
}
