package scheduler

import (
	"context"
	"fmt"
	"runtime"
	"testing"
)

// BenchmarkUncontended: Admit + one Run of a no-op + Done on one goroutine,
// the scheduler's overhead per operation when the device is idle.
func BenchmarkUncontended(b *testing.B) {
	ctx := context.Background()
	q := New(1024, 32)
	noop := func() error { return nil }
	b.ReportAllocs()
	for b.Loop() {
		op, err := q.Admit(Normal)
		if err != nil {
			b.Fatal(err)
		}
		if err := op.Run(ctx, noop); err != nil {
			b.Fatal(err)
		}
		op.Done()
	}
}

// BenchmarkContended: the same cycle from many goroutines (8 per CPU) over
// depth 2 and depth 32 slots, classes mixed. "yield" runs fn with a
// runtime.Gosched so that steps overlap and waiters really queue (it adds
// the cost of a goroutine switch).
func BenchmarkContended(b *testing.B) {
	for _, depth := range []int{2, 32} {
		for _, yield := range []bool{false, true} {
			name := fmt.Sprintf("depth=%d", depth)
			fn := func() error { return nil }
			if yield {
				name += "/yield"
				fn = func() error { runtime.Gosched(); return nil }
			}
			b.Run(name, func(b *testing.B) {
				ctx := context.Background()
				q := New(1<<20, depth)
				b.ReportAllocs()
				b.SetParallelism(8)
				b.RunParallel(func(pb *testing.PB) {
					i := 0
					for pb.Next() {
						op, err := q.Admit(Classes[i%numClasses])
						if err != nil {
							b.Error(err)
							return
						}
						i++
						if err := op.Run(ctx, fn); err != nil {
							b.Error(err)
							return
						}
						op.Done()
					}
				})
				st := q.Stats()
				var waits, dispatched float64
				for c := range numClasses {
					waits += st.WaitSeconds[c]
					dispatched += float64(st.Dispatched[c])
				}
				if dispatched > 0 {
					b.ReportMetric(waits/dispatched*1e9, "wait-ns/op")
				}
			})
		}
	}
}
