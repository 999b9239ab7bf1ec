package sdk

import (
	"context"

	"google.golang.org/grpc/metadata"
)

// CallerMetadataKey is the gRPC metadata key in which the host passes the
// identity of the API caller (the auth token's name, or "anonymous") to a
// plugin's domain services.
const CallerMetadataKey = "dw-caller"

// AnonymousCaller is the caller identity of requests without a token.
const AnonymousCaller = "anonymous"

// Caller returns the identity of the API caller on whose behalf the host
// called a plugin's service: the name of the caller's token, or
// AnonymousCaller. Plugins use it for per-caller quotas and audit logs.
func Caller(ctx context.Context) string {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return AnonymousCaller
	}
	if v := md.Get(CallerMetadataKey); len(v) > 0 && v[0] != "" {
		return v[0]
	}
	return AnonymousCaller
}

// WithCaller returns a context whose outgoing gRPC calls carry caller as
// the caller identity. The host uses it; plugins read it with Caller.
func WithCaller(ctx context.Context, caller string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, CallerMetadataKey, caller)
}
