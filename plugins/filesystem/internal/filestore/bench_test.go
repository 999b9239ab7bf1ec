package filestore

import (
	"context"
	"io"
	"testing"

	dwv1 "github.com/datawarehouse/dw/sdk/v6/proto/dw/v1"
)

// BenchmarkPaths compares the direct and the buffered I/O path for a
// 256 MiB file over the plugin's gRPC service on a unix socket, behind
// the SDK's interceptors (sdktest.ServeInProcess; no host): PUT, then GET
// (with the page cache as the PUT left it: the direct path never fills
// it, the buffered one does).
//
//	go test -run '^$' -bench BenchmarkPaths -benchtime 3x ./plugins/filesystem/internal/filestore/
func BenchmarkPaths(b *testing.B) {
	const size = 256 << 20
	data := randomBytes(size, 3)
	for _, direct := range []bool{true, false} {
		name := map[bool]string{true: "direct", false: "buffered"}[direct]
		e := start(b, nil, direct)
		b.Run(name+"/put", func(b *testing.B) {
			b.SetBytes(size)
			for i := 0; i < b.N; i++ {
				if _, err := e.put(b, "big", data, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/get", func(b *testing.B) {
			b.SetBytes(size)
			for i := 0; i < b.N; i++ {
				if n, err := e.drain(context.Background(), "big"); err != nil || n != size {
					b.Fatalf("get: %d bytes, %v", n, err)
				}
			}
		})
		m, _ := e.s.Metrics(context.Background())
		if got := metric(m, "transfers_total", "path", name); got < 2 {
			b.Fatalf("%v transfers took the %s path, want every one", got, name)
		}
	}
}

// drain reads p to the end and counts its bytes.
func (e *env) drain(ctx context.Context, p string) (int64, error) {
	st, err := e.c.Get(ctx, &dwv1.GetFileRequest{Path: p})
	if err != nil {
		return 0, err
	}
	var n int64
	for {
		m, err := st.Recv()
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		n += int64(len(m.GetData()))
	}
}
