// Package rpcgateway calls a plugin's domain gRPC methods with JSON, without
// compiled-in stubs: it learns the method's descriptors from the plugin over
// gRPC server reflection (which every dw plugin serves), decodes a JSON
// request into a dynamic message with protojson, invokes the method on the
// plugin's connection and encodes the replies back to JSON.
//
// The admin API exposes it as POST /v1/subsystems/{name}/rpc/{service}/{method}.
// The flow for one call is:
//
//	m, err := gw.Lookup(ctx, client.Conn(), status.Services, service, method)
//	req, err := m.DecodeRequest(body)       // JSON → dynamic message
//	reply, err := m.Call(ctx, req)           // unary
//	err = m.Stream(ctx, req, func(reply proto.Message) error { … }) // server-streaming
//	out, err := m.EncodeReply(reply)         // dynamic message → JSON
//
// Only the plugin's domain services may be called: [Allowed] refuses the
// dw.sdk.v1.ScalableSubsystem contract (limits go through the host's config
// transaction) and the rest of the SDK's plumbing (dw.sdk.v1.*), gRPC
// plumbing (grpc.*) and go-plugin plumbing (plugin.*).
// Client-streaming and bidirectional methods are refused as unimplemented.
//
// Errors wrap the sdk sentinels (sdk.ErrNotFound, sdk.ErrPermissionDenied,
// sdk.ErrInvalidArgument, sdk.ErrUnimplemented, and whatever the plugin
// returned, which the connection's interceptors — pluginhost.DialOptions —
// have passed through sdk.FromStatus), so the HTTP layer maps them to
// statuses in one place.
//
// Descriptors are cached per *grpc.ClientConn, in a bounded LRU: a restarted
// plugin has a new connection and so is resolved afresh.
package rpcgateway
