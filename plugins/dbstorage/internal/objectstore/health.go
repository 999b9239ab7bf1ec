package objectstore

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/datawarehouse/dw/plugins/dbstorage/internal/store"
	"github.com/datawarehouse/dw/sdk/v6"
)

// minKickSpacing is the least time between two checks asked for by
// failing requests (not by the interval or GET …/health), so that a dead
// database is not pinged once per request.
const minKickSpacing = time.Second

// healthChecker runs checks of every strategy in parallel, each under
// health_timeout. Concurrent callers share the check in flight.
type healthChecker struct {
	s *Service

	mu       sync.Mutex
	inflight *healthRun
	wg       sync.WaitGroup // every check goroutine
}

// healthRun is one check of all strategies.
type healthRun struct {
	done chan struct{}
}

// run starts a check of every strategy, or joins the one in flight, and
// returns a channel closed when every strategy has reported. Each strategy
// reports — and its state is updated — as soon as its own check ends: a
// hung strategy is marked unhealthy at its deadline, the others at once.
func (h *healthChecker) run() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.inflight != nil {
		return h.inflight.done
	}
	r := &healthRun{done: make(chan struct{})}
	h.inflight = r
	timeout := h.s.currentLimits().HealthTimeout
	var wg sync.WaitGroup
	for _, name := range h.s.order {
		st := h.s.strategies[name]
		wg.Add(1)
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			defer wg.Done()
			h.s.checkStrategy(st, timeout)
		}()
	}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		wg.Wait()
		h.mu.Lock()
		h.inflight = nil
		h.mu.Unlock()
		close(r.done)
	}()
	return r.done
}

// wait blocks until every check goroutine has ended.
func (h *healthChecker) wait() { h.wg.Wait() }

// checkStrategy pings one strategy under timeout and records the result,
// logging changes of state.
func (s *Service) checkStrategy(st *strategy, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	err := pingWithin(ctx, st)
	took := time.Since(start)
	next := &strategyHealth{ok: err == nil, checkedAt: time.Now(), took: took}
	if err != nil {
		next.message = err.Error()
		if ctx.Err() != nil {
			next.message = fmt.Sprintf("no answer within health_timeout %s: %v", timeout, err)
		}
	} else {
		next.message = fmt.Sprintf("%s answered in %s", st.driver, took.Round(time.Microsecond))
		addSpace(ctx, st, next)
	}
	prev := st.health.Swap(next)
	s.stats.healthChecks.Add(1)
	switch {
	case !next.ok && (prev == nil || prev.ok):
		s.logger.Warn("strategy unhealthy", "strategy", st.name, "driver", st.driver, "error", next.message)
	case next.ok && prev != nil && !prev.ok:
		s.logger.Info("strategy healthy again", "strategy", st.name, "driver", st.driver, "took", took)
	}
}

// addSpace adds to a healthy strategy's report the free space of its
// volume (SQLite: free_bytes by statfs of the database folder, wal_bytes
// the write-ahead log) and, while writes fail for space, says so: the
// strategy is then degraded, reads go on.
func addSpace(ctx context.Context, st *strategy, h *strategyHealth) {
	sr, ok := st.store.(store.SpaceReporter)
	if !ok {
		return
	}
	sp, err := sr.Space(ctx)
	if err != nil {
		h.message += fmt.Sprintf("; free space unknown: %v", err)
		return
	}
	h.message += fmt.Sprintf("; free_bytes=%d wal_bytes=%d", sp.FreeBytes, sp.LogBytes)
	if sp.WritesFailing != "" {
		h.writesFailing = true
		h.message += "; read-only until space is freed: writes fail: " + sp.WritesFailing
	}
}

// pingWithin runs Ping and returns when it ends or ctx does, whichever is
// first: a driver that ignored the deadline still cannot hold the check.
func pingWithin(ctx context.Context, st *strategy) error {
	done := make(chan error, 1)
	go func() { done <- st.store.Ping(ctx) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("%w: ping: %w", sdk.ErrUnavailable, ctx.Err())
	}
}

// healthLoop checks every strategy at start, every health_interval, and
// when a request found a strategy unreachable. It ends when ctx does.
func (s *Service) healthLoop(ctx context.Context) {
	defer close(s.loopDone)
	timer := time.NewTimer(0) // first check at once
	defer timer.Stop()
	var lastKick time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.intervalSet:
			timer.Reset(s.currentLimits().HealthInterval)
			continue
		case <-s.healthKick:
			if time.Since(lastKick) < minKickSpacing {
				continue
			}
			lastKick = time.Now()
		case <-timer.C:
			timer.Reset(s.currentLimits().HealthInterval)
		}
		select {
		case <-s.health.run():
		case <-ctx.Done():
			return
		}
	}
}

// Health checks every strategy now, in parallel, and reports each as a
// component. It waits for the checks (each bounded by health_timeout) or
// for ctx, whichever ends first; a strategy still being checked when ctx
// ends is reported with its previous result.
func (s *Service) Health(ctx context.Context) sdk.Health {
	if len(s.order) == 0 {
		return sdk.Health{Status: sdk.HealthNotServing, Message: "not configured"}
	}
	select {
	case <-s.health.run():
	case <-ctx.Done():
	}
	return s.healthReport()
}

// healthReport builds the report from the recorded states.
func (s *Service) healthReport() sdk.Health {
	var h sdk.Health
	bad, readOnly := 0, 0
	for _, name := range s.order {
		st := s.strategies[name]
		c := sdk.ComponentHealth{Name: name, Status: sdk.HealthServing, Message: "not checked yet"}
		if r := st.health.Load(); r != nil {
			c.Message, c.CheckedAt = r.message, r.checkedAt
			switch {
			case !r.ok:
				c.Status = sdk.HealthNotServing
				bad++
			case r.writesFailing:
				c.Status = sdk.HealthDegraded
				readOnly++
			}
		}
		h.Components = append(h.Components, c)
	}
	switch {
	case bad == 0 && readOnly > 0:
		h.Status = sdk.HealthDegraded
		h.Message = fmt.Sprintf("%d of %d strategies read-only: their volume is full; writes to them get 503 until space is freed", readOnly, len(s.order))
	case bad == 0:
		h.Status = sdk.HealthServing
		h.Message = fmt.Sprintf("%d strategies healthy", len(s.order))
	case bad == len(s.order):
		h.Status = sdk.HealthNotServing
		h.Message = fmt.Sprintf("all %d strategies unhealthy", bad)
	default:
		h.Status = sdk.HealthDegraded
		h.Message = fmt.Sprintf("%d of %d strategies unhealthy; requests to them get 503, the others keep working", bad, len(s.order))
	}
	return h
}
