package quota

import (
	"context"
	"testing"
	"time"
)

// BenchmarkAdmitUnlimited is the fast path every unlimited caller takes.
func BenchmarkAdmitUnlimited(b *testing.B) {
	q := New(Config{Callers: map[string]Rate{"bulk": {BytesPerSecond: MiB}}})
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := q.Admit(ctx, "alice", MiB); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkAdmitLimited admits a limited caller whose rate is high enough
// never to wait: the cost of the buckets themselves.
func BenchmarkAdmitLimited(b *testing.B) {
	q := New(Config{Default: Rate{BytesPerSecond: 1 << 40, OpsPerSecond: 1e12}, MaxWait: time.Second})
	ctx := context.Background()
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := q.Admit(ctx, "alice", 64<<10); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := q.Admit(ctx, "alice", 64<<10); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}

// BenchmarkBytesLimited takes 64 KiB for a limited caller whose rate is high
// enough never to wait.
func BenchmarkBytesLimited(b *testing.B) {
	q := New(Config{Default: Rate{BytesPerSecond: 1 << 50}})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := q.Bytes(ctx, "alice", 64<<10); err != nil {
			b.Fatal(err)
		}
	}
}
