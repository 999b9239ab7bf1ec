package rpcgateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"sync"

	lru "github.com/hashicorp/golang-lru/v2"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/datawarehouse/dw/sdk/v6"
	"github.com/datawarehouse/dw/sdk/v6/pluginhost"
)

// CallerMetadataKey is the gRPC metadata key under which the host passes the
// identity of the HTTP caller to the plugin.
const CallerMetadataKey = pluginhost.CallerMetadataKey

// ContractService is the SDK contract service; the gateway never calls it.
const ContractService = "dw.sdk.v1.ScalableSubsystem"

// DefaultMaxConnections is how many plugin connections' descriptors a
// Gateway caches when Options.MaxConnections is 0.
const DefaultMaxConnections = 64

// Options configure a Gateway.
type Options struct {
	// MaxConnections bounds how many connections' descriptors are cached;
	// 0 means DefaultMaxConnections. The least recently used one is
	// dropped first.
	MaxConnections int
}

// Gateway resolves and calls gRPC methods of plugins with JSON. It is safe
// for concurrent use.
type Gateway struct {
	mu    sync.Mutex
	conns *lru.Cache[*grpc.ClientConn, *connCache]
}

// connCache holds the services resolved on one connection.
type connCache struct {
	mu       sync.Mutex
	services map[string]*resolution
}

// resolution is one service being or having been resolved; done is closed
// when svc or err is set.
type resolution struct {
	done chan struct{}
	svc  *service
	err  error
}

// service is a resolved service: its descriptor and the types of the files
// it was resolved from (for google.protobuf.Any).
type service struct {
	desc  protoreflect.ServiceDescriptor
	types *dynamicpb.Types
}

// New returns a Gateway.
func New(opts Options) *Gateway {
	n := opts.MaxConnections
	if n <= 0 {
		n = DefaultMaxConnections
	}
	c, err := lru.New[*grpc.ClientConn, *connCache](n)
	if err != nil { // only for n <= 0, excluded above
		panic(fmt.Sprintf("rpcgateway: new cache: %v", err))
	}
	return &Gateway{conns: c}
}

var (
	serviceNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$`)
	methodNameRE  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// Allowed reports whether service may be called through the gateway on a
// plugin offering the domain services offered. The error wraps
// sdk.ErrInvalidArgument for a malformed name, sdk.ErrPermissionDenied for
// the contract and plumbing services (dw.sdk.v1.*, grpc.*, plugin.*; saying
// why), and sdk.ErrNotFound for a service the plugin does not offer (naming
// those it does).
func Allowed(service string, offered []string) error {
	switch {
	case len(service) > 255 || !serviceNameRE.MatchString(service):
		return fmt.Errorf("service %q: %w: a service is a fully qualified protobuf name such as dw.echo.v1.Echo (letters, digits and '_', dot-separated)",
			shorten(service), sdk.ErrInvalidArgument)
	case service == ContractService:
		return fmt.Errorf("service %s: %w: it is the host's plugin contract; calling it directly would bypass the config transaction (change limits in the config file and reload, and read them with GET /v1/subsystems/{name}/limits, /metrics or /health)",
			service, sdk.ErrPermissionDenied)
	case strings.HasPrefix(service, "dw.sdk.v1."):
		return fmt.Errorf("service %s: %w: it is part of the host–plugin SDK plumbing (package dw.sdk.v1), not a domain service of the plugin", service, sdk.ErrPermissionDenied)
	case strings.HasPrefix(service, "grpc."):
		return fmt.Errorf("service %s: %w: it is gRPC plumbing (health, reflection), not a domain service of the plugin", service, sdk.ErrPermissionDenied)
	case strings.HasPrefix(service, "plugin."):
		return fmt.Errorf("service %s: %w: it is go-plugin plumbing (broker, controller, stdio), not a domain service of the plugin", service, sdk.ErrPermissionDenied)
	case !slices.Contains(offered, service):
		return fmt.Errorf("service %s: %w: the plugin offers %s", service, sdk.ErrNotFound, offeredList(offered))
	}
	return nil
}

func offeredList(offered []string) string {
	var callable []string
	for _, s := range offered {
		if Allowed(s, []string{s}) == nil {
			callable = append(callable, s)
		}
	}
	if len(callable) == 0 {
		return "no domain services"
	}
	slices.Sort(callable)
	return strings.Join(callable, ", ")
}

func shorten(s string) string {
	const n = 80
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// Lookup finds a method the gateway can call on conn: service must be
// Allowed among offered (the plugin's domain services), the plugin must
// describe it over reflection, it must have the method, and the method must
// be unary or server-streaming. Descriptors are cached per conn.
func (g *Gateway) Lookup(ctx context.Context, conn *grpc.ClientConn, offered []string, serviceName, method string) (*Method, error) {
	if err := Allowed(serviceName, offered); err != nil {
		return nil, err
	}
	if len(method) > 255 || !methodNameRE.MatchString(method) {
		return nil, fmt.Errorf("method %q: %w: a method name is letters, digits and '_', such as Echo", shorten(method), sdk.ErrInvalidArgument)
	}
	svc, err := g.service(ctx, conn, serviceName)
	if err != nil {
		return nil, err
	}
	md := svc.desc.Methods().ByName(protoreflect.Name(method))
	if md == nil {
		names := make([]string, 0, svc.desc.Methods().Len())
		for i := range svc.desc.Methods().Len() {
			names = append(names, string(svc.desc.Methods().Get(i).Name()))
		}
		slices.Sort(names)
		return nil, fmt.Errorf("method %s/%s: %w: the service has %s", serviceName, method, sdk.ErrNotFound, strings.Join(names, ", "))
	}
	if md.IsStreamingClient() {
		kind := "client-streaming"
		if md.IsStreamingServer() {
			kind = "bidirectional-streaming"
		}
		return nil, fmt.Errorf("method %s/%s: %w: it is %s; the JSON gateway calls only unary and server-streaming methods",
			serviceName, method, sdk.ErrUnimplemented, kind)
	}
	return &Method{conn: conn, desc: md, types: svc.types, path: "/" + serviceName + "/" + method}, nil
}

// service returns the resolved service, resolving it once per connection.
func (g *Gateway) service(ctx context.Context, conn *grpc.ClientConn, name string) (*service, error) {
	g.mu.Lock()
	cc, ok := g.conns.Get(conn)
	if !ok {
		cc = &connCache{services: make(map[string]*resolution)}
		g.conns.Add(conn, cc)
	}
	g.mu.Unlock()

	for {
		cc.mu.Lock()
		r, ok := cc.services[name]
		if !ok {
			r = &resolution{done: make(chan struct{})}
			cc.services[name] = r
			cc.mu.Unlock()
			r.svc, r.err = resolveService(ctx, conn, name)
			if r.err != nil {
				// Do not cache failures: the next call tries again.
				cc.mu.Lock()
				delete(cc.services, name)
				cc.mu.Unlock()
			}
			close(r.done)
			return r.svc, r.err
		}
		cc.mu.Unlock()
		select {
		case <-r.done:
		case <-ctx.Done():
			return nil, fmt.Errorf("resolve service %s: %w", name, ctx.Err())
		}
		// Another call resolved it; if that call was cut short by its own
		// context, try again with ours.
		if r.err != nil && ctx.Err() == nil &&
			(errors.Is(r.err, context.Canceled) || errors.Is(r.err, context.DeadlineExceeded)) {
			continue
		}
		return r.svc, r.err
	}
}

// Method is a callable gRPC method of a plugin.
type Method struct {
	conn  *grpc.ClientConn
	desc  protoreflect.MethodDescriptor
	types *dynamicpb.Types
	path  string
}

// Descriptor is the method's descriptor.
func (m *Method) Descriptor() protoreflect.MethodDescriptor { return m.desc }

// FullMethod is the gRPC method path, "/package.Service/Method".
func (m *Method) FullMethod() string { return m.path }

// ServerStreaming reports whether the method streams its replies.
func (m *Method) ServerStreaming() bool { return m.desc.IsStreamingServer() }

// DecodeRequest decodes a JSON request body into the method's input
// message. An empty body is the empty message.
func (m *Method) DecodeRequest(data []byte) (*dynamicpb.Message, error) {
	return DecodeJSON(m.desc.Input(), m.types, data)
}

// EncodeReply encodes a reply as single-line JSON with proto field names,
// leaving out unpopulated fields.
func (m *Method) EncodeReply(msg proto.Message) ([]byte, error) {
	b, err := protojson.MarshalOptions{UseProtoNames: true, Resolver: m.types}.Marshal(msg)
	if err != nil {
		return nil, fmt.Errorf("encode reply of %s as JSON: %w", m.path, err)
	}
	return b, nil
}

// Call invokes a unary method. Errors from the plugin match the sdk
// sentinels: the connection (made with pluginhost.DialOptions) passes them
// through sdk.FromStatus.
func (m *Method) Call(ctx context.Context, req proto.Message) (proto.Message, error) {
	if m.desc.IsStreamingServer() {
		return nil, fmt.Errorf("call %s: %w: it is server-streaming; use Stream", m.path, sdk.ErrInvalidArgument)
	}
	reply := dynamicpb.NewMessage(m.desc.Output())
	if err := m.conn.Invoke(ctx, m.path, req, reply); err != nil {
		return nil, fmt.Errorf("call %s: %w", m.path, err)
	}
	return reply, nil
}

// Stream invokes a server-streaming method and calls fn with each reply, in
// order, holding one reply at a time: fn must not keep msg after it
// returns. An error from fn stops the stream and is returned.
func (m *Method) Stream(ctx context.Context, req proto.Message, fn func(msg proto.Message) error) error {
	if !m.desc.IsStreamingServer() {
		return fmt.Errorf("stream %s: %w: it is unary; use Call", m.path, sdk.ErrInvalidArgument)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cs, err := m.conn.NewStream(ctx, &grpc.StreamDesc{StreamName: string(m.desc.Name()), ServerStreams: true}, m.path)
	if err != nil {
		return fmt.Errorf("stream %s: %w", m.path, err)
	}
	if err := cs.SendMsg(req); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("stream %s: send request: %w", m.path, err)
	}
	if err := cs.CloseSend(); err != nil {
		return fmt.Errorf("stream %s: close send: %w", m.path, err)
	}
	reply := dynamicpb.NewMessage(m.desc.Output())
	for {
		proto.Reset(reply)
		err := cs.RecvMsg(reply)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("stream %s: %w", m.path, err)
		}
		if err := fn(reply); err != nil {
			return err
		}
	}
}

// DecodeJSON decodes data, JSON in the protobuf JSON mapping, into a new
// dynamic message of type md. resolver finds the types named in
// google.protobuf.Any values; nil means protoregistry.GlobalTypes. An empty
// (or all-blank) body is the empty message. Errors wrap
// sdk.ErrInvalidArgument and give the position of the problem.
func DecodeJSON(md protoreflect.MessageDescriptor, resolver *dynamicpb.Types, data []byte) (*dynamicpb.Message, error) {
	msg := dynamicpb.NewMessage(md)
	if len(strings.TrimSpace(string(data))) == 0 {
		return msg, nil
	}
	opts := protojson.UnmarshalOptions{}
	if resolver != nil {
		opts.Resolver = resolver
	} else {
		opts.Resolver = protoregistry.GlobalTypes
	}
	if err := opts.Unmarshal(data, msg); err != nil {
		// protojson writes "proto:" and a random kind of space before its
		// message, to stop people from matching it; we show it to people.
		detail := strings.TrimLeft(strings.TrimPrefix(err.Error(), "proto:"), " \u00a0")
		if strings.Contains(detail, "unexpected EOF") {
			detail += fmt.Sprintf(" (the body ends at byte %d before the JSON is complete)", len(data))
		}
		return nil, fmt.Errorf("request body is not a valid %s in JSON: %w: %s", md.FullName(), sdk.ErrInvalidArgument, detail)
	}
	return msg, nil
}
