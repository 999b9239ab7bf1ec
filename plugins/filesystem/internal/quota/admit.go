package quota

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/time/rate"

	"github.com/datawarehouse/dw/sdk/v6"
)

// Admit admits one request of caller: one operation token plus firstBytes
// bytes (capped at the byte burst). If both can be had within MaxWait, and
// within ctx's deadline if it has one, it waits for them (ctx-aware) and
// returns nil. Otherwise it takes nothing and returns an error wrapping
// sdk.ErrQuotaExceeded with a retry hint (sdk.WithRetryAfter) of the needed
// delay rounded up to whole seconds, at least 1 s. A cancelled ctx returns
// ctx's error, and takes nothing either.
func (q *Quotas) Admit(ctx context.Context, caller string, firstBytes int64) error {
	if q.snap.Load().source(caller).rate.Unlimited() {
		return nil // the fast path: no lock, no allocation
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("admit caller %q: %w", caller, err)
	}
	now := q.now()
	e, s, lims := q.buckets(caller, now)

	var res [numDims]*rate.Reservation
	var delay [numDims]time.Duration
	if lim := lims[dimOps]; lim != nil {
		res[dimOps] = lim.ReserveN(now, 1)
		delay[dimOps] = res[dimOps].DelayFrom(now)
	}
	if lim := lims[dimBytes]; lim != nil && firstBytes > 0 {
		res[dimBytes], _ = reserveUpTo(lim, now, firstBytes)
		delay[dimBytes] = res[dimBytes].DelayFrom(now)
	}
	worst := dimOps
	if delay[dimBytes] > delay[dimOps] {
		worst = dimBytes
	}
	wait := delay[worst]
	if wait == 0 {
		e.admitted.Add(1)
		return nil
	}

	bound, boundName := s.maxWait, "limits.max_throttle_wait"
	if deadline, ok := ctx.Deadline(); ok {
		if left := time.Until(deadline); left < bound {
			bound, boundName = max(left, 0), "the request's remaining deadline"
		}
	}
	if wait > bound {
		cancelAt(res, now)
		e.refused.Add(1)
		src := s.source(caller)
		err := fmt.Errorf("admit caller %q: over its %s quota of %s (%s): needs a %v wait, more than %s (%v): %w",
			caller, dimNames[worst], src.rate.describe(worst), src.keyPath,
			roundForHumans(wait), boundName, roundForHumans(bound), sdk.ErrQuotaExceeded)
		return sdk.WithRetryAfter(err, retryAfter(wait))
	}

	e.throttled.Add(1)
	if err := q.sleep(ctx, wait); err != nil {
		stop := q.now()
		cancelAt(res, stop)
		e.throttledNanos.Add(int64(max(stop.Sub(now), 0)))
		return fmt.Errorf("admit caller %q: wait %v for its %s quota: %w",
			caller, roundForHumans(wait), dimNames[worst], err)
	}
	e.throttledNanos.Add(int64(wait))
	e.admitted.Add(1)
	return nil
}

// Bytes takes n more bytes for caller in burst-sized pieces, waiting as long
// as the rate needs, bounded only by ctx: it is for the rest of a transfer
// after Admit, when the response can no longer be refused. Each piece uses
// the caller's current bucket, so a live change applies mid-transfer. On
// cancellation the pending piece is given back and ctx's error is returned.
func (q *Quotas) Bytes(ctx context.Context, caller string, n int64) error {
	if n <= 0 || !q.snap.Load().source(caller).rate.bytesLimited() {
		return nil
	}
	throttled := false
	for n > 0 {
		now := q.now()
		e, _, lims := q.buckets(caller, now)
		lim := lims[dimBytes]
		if lim == nil {
			return nil // went unlimited meanwhile
		}
		res, took := reserveUpTo(lim, now, n)
		if d := res.DelayFrom(now); d > 0 {
			if !throttled {
				throttled = true
				e.throttled.Add(1)
			}
			if err := q.sleep(ctx, d); err != nil {
				stop := q.now()
				res.CancelAt(stop)
				e.throttledNanos.Add(int64(max(stop.Sub(now), 0)))
				return fmt.Errorf("take %d bytes for caller %q: %w", n, caller, err)
			}
			e.throttledNanos.Add(int64(d))
		}
		n -= took
	}
	return nil
}

// reserveUpTo reserves min(n, burst) tokens of lim at now, re-reading the
// burst if a concurrent Update shrank it in between.
func reserveUpTo(lim *rate.Limiter, now time.Time, n int64) (*rate.Reservation, int64) {
	for {
		take := min(n, int64(lim.Burst()))
		if r := lim.ReserveN(now, int(take)); r.OK() {
			return r, take
		}
	}
}

// cancelAt gives back every reservation in res at instant t.
func cancelAt(res [numDims]*rate.Reservation, t time.Time) {
	for _, r := range res {
		if r != nil {
			r.CancelAt(t)
		}
	}
}

// retryAfter rounds d up to whole seconds, at least 1 s.
func retryAfter(d time.Duration) time.Duration {
	secs := (d + time.Second - 1) / time.Second
	return max(secs, 1) * time.Second
}

// roundForHumans rounds d to milliseconds in messages, when it is that long.
func roundForHumans(d time.Duration) time.Duration {
	if d >= time.Millisecond {
		return d.Round(time.Millisecond)
	}
	return d
}

// sleepContext waits for d or until ctx is done.
func sleepContext(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
