package buffer

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waitWaiting polls Stats until n reservations wait, failing after 10 s.
func waitWaiting(t *testing.T, b *Budget, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for b.Stats().Waiting != n {
		if time.Now().After(deadline) {
			t.Fatalf("waiting never reached %d (now %d)", n, b.Stats().Waiting)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestAcquireWithinCapacity(t *testing.T) {
	b := NewBudget(10)
	ctx := context.Background()
	if err := b.Acquire(ctx, 4); err != nil {
		t.Fatal(err)
	}
	if err := b.Acquire(ctx, 6); err != nil {
		t.Fatal(err)
	}
	if s := b.Stats(); s.InUse != 10 || s.Waiting != 0 || s.Waits != 0 {
		t.Fatalf("stats %+v", s)
	}
	b.Release(10)
	if s := b.Stats(); s.InUse != 0 {
		t.Fatalf("stats after release %+v", s)
	}
}

func TestWaitsUntilReleased(t *testing.T) {
	b := NewBudget(10)
	ctx := context.Background()
	if err := b.Acquire(ctx, 8); err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() { done <- b.Acquire(ctx, 5) }()
	waitWaiting(t, b, 1)
	select {
	case err := <-done:
		t.Fatalf("Acquire returned %v while the budget was spent", err)
	default:
	}
	b.Release(8)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if s := b.Stats(); s.InUse != 5 || s.Waits != 1 {
		t.Fatalf("stats %+v", s)
	}
	b.Release(5)
}

func TestOversizedGrantedWhenIdle(t *testing.T) {
	b := NewBudget(10)
	if err := b.Acquire(context.Background(), 100); err != nil {
		t.Fatal(err)
	}
	b.Release(100)
}

func TestCancelWhileWaiting(t *testing.T) {
	b := NewBudget(10)
	if err := b.Acquire(context.Background(), 10); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- b.Acquire(ctx, 1) }()
	waitWaiting(t, b, 1)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if s := b.Stats(); s.InUse != 10 || s.Waiting != 0 {
		t.Fatalf("stats after cancel %+v", s)
	}
	b.Release(10)
}

func TestFIFO(t *testing.T) {
	// A large waiter at the front is not overtaken by small ones.
	b := NewBudget(10)
	ctx := context.Background()
	if err := b.Acquire(ctx, 6); err != nil {
		t.Fatal(err)
	}
	big := make(chan error)
	go func() { big <- b.Acquire(ctx, 8) }()
	waitWaiting(t, b, 1)
	small := make(chan error)
	go func() { small <- b.Acquire(ctx, 2) }() // would fit, but must queue
	waitWaiting(t, b, 2)
	b.Release(6)
	if err := <-big; err != nil {
		t.Fatal(err)
	}
	if err := <-small; err != nil {
		t.Fatal(err)
	}
	if s := b.Stats(); s.InUse != 10 {
		t.Fatalf("stats %+v", s)
	}
	b.Release(10)
}

func TestSetCapacity(t *testing.T) {
	b := NewBudget(4)
	ctx := context.Background()
	if err := b.Acquire(ctx, 4); err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() { done <- b.Acquire(ctx, 4) }()
	waitWaiting(t, b, 1)
	b.SetCapacity(8) // growing wakes the waiter
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	b.SetCapacity(2) // shrinking revokes nothing
	if s := b.Stats(); s.InUse != 8 || s.Capacity != 2 {
		t.Fatalf("stats %+v", s)
	}
	b.Release(8)
}

func TestConcurrentNeverExceeds(t *testing.T) {
	const capacity = 64
	b := NewBudget(capacity)
	var held atomic.Int64
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				n := int64(1 + (g+i)%16)
				if err := b.Acquire(context.Background(), n); err != nil {
					t.Error(err)
					return
				}
				if h := held.Add(n); h > capacity {
					t.Errorf("%d bytes held, capacity %d", h, capacity)
				}
				held.Add(-n)
				b.Release(n)
			}
		}()
	}
	wg.Wait()
	if s := b.Stats(); s.InUse != 0 || s.Waiting != 0 {
		t.Fatalf("stats at the end %+v", s)
	}
}
