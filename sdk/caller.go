package sdk

import (
	"context"

	"google.golang.org/grpc/metadata"

	"github.com/datawarehouse/dw/sdk/v6/internal/contract"
)

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
	if v := md.Get(contract.CallerMetadataKey); len(v) > 0 && v[0] != "" {
		return v[0]
	}
	return AnonymousCaller
}
