package contract

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// Errors cross a plugin connection as gRPC statuses. Rather than have every
// handler and every call site translate them (a forgotten translation is an
// HTTP 500 with a gRPC message), interceptors do it at the boundary: the
// serving side converts what a handler returns (sdk.ToStatus) and recovers
// its panics, the calling side converts every error of a call
// (sdk.FromStatus). The conversions are package sdk's; this file only
// wires them in, so that package sdk, package pluginhost and package
// sdktest install exactly the same interceptors.

// ServerErrors is how the serving side of a plugin connection treats the
// errors and panics of its handlers.
type ServerErrors struct {
	// ToStatus converts the error a handler returns into a gRPC status
	// error (sdk.ToStatus).
	ToStatus func(error) error
	// Panicked is the sentinel the error of a recovered panic wraps
	// (sdk.ErrPanicked).
	Panicked error
	// Logger receives the stack of a recovered panic; nil: hclog's default
	// logger.
	Logger hclog.Logger
	// Refuse, if set, is asked before each call with its full method name
	// ("/pkg.Service/Method"); a non-nil error is the call's answer and the
	// handler is not run.
	Refuse func(fullMethod string) error
}

// Options returns the interceptors as server options, for grpc.NewServer.
func (h ServerErrors) Options() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(h.Unary),
		grpc.ChainStreamInterceptor(h.Stream),
	}
}

// Unary is the unary server interceptor.
func (h ServerErrors) Unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	if h.Refuse != nil {
		if err := h.Refuse(info.FullMethod); err != nil {
			return nil, h.ToStatus(err)
		}
	}
	defer func() {
		if v := recover(); v != nil {
			resp, err = nil, h.ToStatus(h.recovered(info.FullMethod, v))
		}
	}()
	resp, err = handler(ctx, req)
	return resp, h.ToStatus(err)
}

// Stream is the stream server interceptor.
func (h ServerErrors) Stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	if h.Refuse != nil {
		if err := h.Refuse(info.FullMethod); err != nil {
			return h.ToStatus(err)
		}
	}
	defer func() {
		if v := recover(); v != nil {
			err = h.ToStatus(h.recovered(info.FullMethod, v))
		}
	}()
	return h.ToStatus(handler(srv, ss))
}

// maxPanicValue bounds how much of a panic value goes into the call's
// error; the log has all of it.
const maxPanicValue = 1 << 10

// Recovered is recovered for a panic the SDK catches itself inside a
// call, to name the plugin method that panicked rather than the RPC (a
// panic in ApplyLimits during Configure reads "panicked in ApplyLimits").
// Like recovered, it must be called from the deferred function that
// recovered.
func (h ServerErrors) Recovered(fullMethod string, v any) error {
	return h.recovered(fullMethod, v)
}

// recovered logs a recovered panic with its stack and returns the call's
// error: "panicked in Method: value (file.go:line)". It must be called
// from the deferred function that recovered (see panicSite).
func (h ServerErrors) recovered(fullMethod string, v any) error {
	site := panicSite()
	value := fmt.Sprint(v)
	logger := h.Logger
	if logger == nil {
		logger = hclog.Default()
	}
	logger.Error("recovered a panic in a gRPC handler; the call fails and serving goes on",
		"method", fullMethod, "panic", value, "at", site, "stack", string(debug.Stack()))
	if len(value) > maxPanicValue {
		value = strings.ToValidUTF8(value[:maxPanicValue], "") + "…"
	}
	return &panicError{msg: fmt.Sprintf("%s in %s: %s (%s)", h.Panicked, ShortMethod(fullMethod), value, site), sentinel: h.Panicked}
}

// panicError is the error of a recovered panic.
type panicError struct {
	msg      string
	sentinel error
}

func (e *panicError) Error() string { return e.msg }
func (e *panicError) Unwrap() error { return e.sentinel }

// ShortMethod is the method name of a full gRPC method name:
// "/dw.sdk.v1.ScalableSubsystem/ApplyLimits" gives "ApplyLimits".
func ShortMethod(fullMethod string) string {
	return fullMethod[strings.LastIndexByte(fullMethod, '/')+1:]
}

// Service is the service name of a full gRPC method name:
// "/dw.sdk.v1.ScalableSubsystem/ApplyLimits" gives
// "dw.sdk.v1.ScalableSubsystem".
func Service(fullMethod string) string {
	s := strings.TrimPrefix(fullMethod, "/")
	if i := strings.LastIndexByte(s, '/'); i >= 0 {
		return s[:i]
	}
	return s
}

// panicSite returns "folder/file.go:line" of the code that panicked: the
// first frame below the runtime's panic machinery (runtime.gopanic and, for
// a fault or a failed bounds check, runtime.sigpanic or
// runtime.goPanicIndex…) that is not in the runtime. It is called by
// recovered, from the deferred function that recovered, while the
// panicking frames are still on the stack.
func panicSite() string {
	pcs := make([]uintptr, 64)
	n := runtime.Callers(1, pcs)
	frames := runtime.CallersFrames(pcs[:n])
	inPanic := false
	for {
		f, more := frames.Next()
		switch {
		case f.Function == "runtime.gopanic":
			inPanic = true
		case inPanic && !strings.HasPrefix(f.Function, "runtime."):
			return shortFile(f.File) + ":" + strconv.Itoa(f.Line)
		}
		if !more {
			return "unknown location"
		}
	}
}

// shortFile keeps the last folder and the file name of a source path:
// "/src/plugins/filesystem/internal/filestore/grpc.go" gives
// "filestore/grpc.go". A major-version folder is not enough of a name: a
// binary built with -trimpath names "example.com/foo/v2/main.go", which
// gives "foo/v2/main.go".
func shortFile(p string) string {
	parts := strings.Split(p, "/") // the runtime writes "/" on every system
	keep := 2
	if len(parts) >= 3 && isMajorVersion(parts[len(parts)-2]) {
		keep = 3
	}
	if len(parts) > keep {
		parts = parts[len(parts)-keep:]
	}
	return strings.Join(parts, "/")
}

// isMajorVersion reports whether a folder name is "v" and a number, as in
// a module path of major version 2 or later.
func isMajorVersion(s string) bool {
	if len(s) < 2 || s[0] != 'v' {
		return false
	}
	_, err := strconv.Atoi(s[1:])
	return err == nil
}

// ClientErrors returns the dial options that convert every error of a call
// on the connection with fromStatus (sdk.FromStatus): a unary call's, and a
// stream's from the call itself, RecvMsg, SendMsg, Header and CloseSend.
// io.EOF, the end of a stream, stays io.EOF.
func ClientErrors(fromStatus func(error) error) []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(UnaryClientErrors(fromStatus)),
		grpc.WithChainStreamInterceptor(StreamClientErrors(fromStatus)),
	}
}

// UnaryClientErrors is the unary client interceptor of ClientErrors.
func UnaryClientErrors(fromStatus func(error) error) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		return fromStatus(invoker(ctx, method, req, reply, cc, opts...))
	}
}

// StreamClientErrors is the stream client interceptor of ClientErrors.
func StreamClientErrors(fromStatus func(error) error) grpc.StreamClientInterceptor {
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		s, err := streamer(ctx, desc, cc, method, opts...)
		if err != nil {
			return nil, fromStatus(err)
		}
		return &clientStream{ClientStream: s, convert: fromStatus}, nil
	}
}

// clientStream converts the errors of a client stream.
type clientStream struct {
	grpc.ClientStream
	convert func(error) error
}

func (s *clientStream) conv(err error) error {
	if err == nil || errors.Is(err, io.EOF) {
		return err
	}
	return s.convert(err)
}

func (s *clientStream) Header() (metadata.MD, error) {
	md, err := s.ClientStream.Header()
	return md, s.conv(err)
}

func (s *clientStream) CloseSend() error { return s.conv(s.ClientStream.CloseSend()) }
func (s *clientStream) SendMsg(m any) error {
	return s.conv(s.ClientStream.SendMsg(m))
}
func (s *clientStream) RecvMsg(m any) error {
	return s.conv(s.ClientStream.RecvMsg(m))
}
