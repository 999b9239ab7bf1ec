package scheduler

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/datawarehouse/dw/sdk/v6"
)

// TestStress runs many goroutines of multi-step ops, some cancelled at
// random moments, some with limits changing underneath, and checks that
// in-flight never exceeds the depth, every op completes and the books
// balance. Run it with -race.
func TestStress(t *testing.T) {
	tests := []struct {
		name        string
		maxQueued   int
		depth       int
		changeLimit bool // flip limits between (4, 1) and (32, 4) meanwhile
	}{
		{"depth 1", 8, 1, false},
		{"depth 3", 16, 3, false},
		{"limits changing", 32, 4, true},
	}
	const workers, opsPerWorker = 32, 60
	if testing.Short() {
		t.Skip("stress test")
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := New(tt.maxQueued, tt.depth)
			maxDepth := int64(tt.depth)
			var running, ran, cancelled atomic.Int64
			var over atomic.Bool
			stopLimits := make(chan struct{})
			var limitsDone sync.WaitGroup
			if tt.changeLimit {
				limitsDone.Add(1)
				go func() {
					defer limitsDone.Done()
					for i := 0; ; i++ {
						select {
						case <-stopLimits:
							return
						default:
						}
						if i%2 == 0 {
							q.SetLimits(4, 1)
						} else {
							q.SetLimits(32, 4)
						}
						runtime.Gosched()
					}
				}()
			}

			var wg sync.WaitGroup
			for w := range workers {
				wg.Go(func() {
					for i := range opsPerWorker {
						c := Classes[(w+i)%numClasses]
						var op *Op
						for {
							var err error
							if op, err = q.Admit(c); err == nil {
								break
							} else if !errors.Is(err, sdk.ErrBackpressure) {
								t.Errorf("admit: %v", err)
								return
							}
							runtime.Gosched()
						}
						for chunk := range 1 + i%3 {
							ctx, cancel := context.WithCancel(context.Background())
							if (w+i+chunk)%7 == 0 {
								go cancel() // races with the wait and the hand-over
							}
							err := op.Run(ctx, func() error {
								if n := running.Add(1); n > maxDepth {
									over.Store(true)
								}
								runtime.Gosched()
								running.Add(-1)
								return nil
							})
							cancel()
							switch {
							case err == nil:
								ran.Add(1)
							case errors.Is(err, context.Canceled):
								cancelled.Add(1)
							default:
								t.Errorf("run: %v", err)
							}
						}
						op.Done()
					}
				})
			}
			wg.Wait()
			close(stopLimits)
			limitsDone.Wait()

			if over.Load() {
				t.Fatalf("more than %d steps ran at once", maxDepth)
			}
			st := q.Stats()
			var admitted, dispatched uint64
			for c := range numClasses {
				admitted += st.Admitted[c]
				dispatched += st.Dispatched[c]
			}
			if st.Queued != [3]int{} || st.Waiting != [3]int{} || st.InFlight != 0 {
				t.Fatalf("queue not empty at the end: %+v", st)
			}
			if admitted != workers*opsPerWorker {
				t.Fatalf("admitted %d, want %d", admitted, workers*opsPerWorker)
			}
			if dispatched != uint64(ran.Load()) {
				t.Fatalf("dispatched %d, but %d steps ran (%d cancelled)", dispatched, ran.Load(), cancelled.Load())
			}
			t.Logf("%d steps ran, %d cancelled, stats %+v", ran.Load(), cancelled.Load(), st)
		})
	}
}
