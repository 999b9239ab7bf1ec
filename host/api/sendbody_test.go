package api

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
)

// gatedBody delivers its data only once open is closed, and records
// whether any byte has been read.
type gatedBody struct {
	open      chan struct{}
	data      []byte
	delivered atomic.Bool
	waiting   chan struct{} // closed when the first Read starts waiting
}

func (b *gatedBody) Read(p []byte) (int, error) {
	select {
	case <-b.waiting:
	default:
		close(b.waiting)
	}
	<-b.open
	if len(b.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p, b.data)
	b.data = b.data[n:]
	b.delivered.Store(true)
	return n, nil
}

// countingStream is the client side of a Put that counts what it is sent.
type countingStream struct {
	grpc.ClientStream // nil: the methods sendBody does not call
	sent              int
	bytes             int
}

func (s *countingStream) Send(m *[]byte) error { s.sent++; s.bytes += len(*m); return nil }
func (s *countingStream) CloseAndRecv() (*int, error) {
	n := s.bytes
	return &n, nil
}

// A stalled upload opens no plugin stream: sendBody waits for the body's
// first bytes before it calls put, so a client that sends the headers of
// a PUT and stalls costs the plugin nothing.
func TestSendBodyOpensTheStreamAfterTheFirstBytes(t *testing.T) {
	for _, size := range []int64{10, -1, 3 * putMessageBytes} {
		body := &gatedBody{open: make(chan struct{}), waiting: make(chan struct{}), data: make([]byte, max(size, 100))}
		var opened atomic.Int32
		stream := &countingStream{}
		put := func(context.Context, ...grpc.CallOption) (grpc.ClientStreamingClient[[]byte, int], error) {
			if !body.delivered.Load() {
				t.Errorf("size %d: the plugin stream was opened before the body's first byte", size)
			}
			opened.Add(1)
			return stream, nil
		}
		type result struct {
			n   *int
			err error
		}
		done := make(chan result, 1)
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			hdr := []byte("header")
			n, err := sendBody(ctx, cancel, put, &hdr, size, body, func(b []byte) *[]byte { return &b })
			done <- result{n, err}
		}()
		<-body.waiting // sendBody is blocked on the body
		if opened.Load() != 0 {
			t.Fatalf("size %d: the plugin stream is open while the body has sent nothing", size)
		}
		close(body.open)
		r := <-done
		cancel()
		if r.err != nil {
			t.Fatalf("size %d: %v", size, r.err)
		}
		if want := len("header") + int(max(size, 100)); *r.n != want || opened.Load() != 1 {
			t.Errorf("size %d: stream got %d bytes in %d opens, want %d in 1", size, *r.n, opened.Load(), want)
		}
	}
}

// A body that fails before its first byte never reaches the plugin.
func TestSendBodyFailedBeforeTheFirstByte(t *testing.T) {
	put := func(context.Context, ...grpc.CallOption) (grpc.ClientStreamingClient[[]byte, int], error) {
		t.Error("the plugin stream was opened for a body that failed at once")
		return &countingStream{}, nil
	}
	boom := errors.New("connection reset")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hdr := []byte("header")
	_, err := sendBody(ctx, cancel, put, &hdr, 10, &failingReader{err: boom}, func(b []byte) *[]byte { return &b })
	if !errors.Is(err, errBody) || !errors.Is(err, boom) {
		t.Errorf("err = %v, want errBody wrapping the body's error", err)
	}
}
