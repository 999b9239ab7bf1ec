package sdk

import "google.golang.org/grpc"

// Flow-control windows of the host–plugin connection. gRPC's default
// stream window (64 KiB, grown by BDP estimation) makes a stream of 1 MiB
// messages wait for window updates many times per message; fixed larger
// windows let a bulk stream (an object, a file) run at memory speed. They
// also bound what a receiver may buffer unread: StreamWindow per stream.
// (grpc-go acknowledges the connection window as data arrives, not as it
// is read, so ConnWindow bounds what is in flight, not what is buffered:
// a receiver that reads n streams slowly holds up to n × StreamWindow.)
// Measured for the filesystem plugin, 1 MiB and 2 MiB stream windows gave
// no better high-priority latency under a flood and no better throughput.
const (
	StreamWindow = 4 << 20
	ConnWindow   = 16 << 20
	// transportBuffer is the size of the connection's read and write
	// buffers.
	transportBuffer = 256 << 10
)

// TransportDialOptions are the gRPC dial options the host uses for plugin
// connections, matching what Serve sets on the plugin side.
func TransportDialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithInitialWindowSize(StreamWindow),
		grpc.WithInitialConnWindowSize(ConnWindow),
		grpc.WithReadBufferSize(transportBuffer),
		grpc.WithWriteBufferSize(transportBuffer),
	}
}

func transportServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.InitialWindowSize(StreamWindow),
		grpc.InitialConnWindowSize(ConnWindow),
		grpc.ReadBufferSize(transportBuffer),
		grpc.WriteBufferSize(transportBuffer),
	}
}
