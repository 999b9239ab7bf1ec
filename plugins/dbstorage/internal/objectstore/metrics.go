package objectstore

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/datawarehouse/dw/plugins/dbstorage/internal/store"
	"github.com/datawarehouse/dw/sdk/v6"
)

// Operations timed in the query metrics.
const (
	opPut = iota
	opGet
	opStat
	opDelete
	opList
	opCount
	numOps
)

var opNames = [numOps]string{"put", "get", "stat", "delete", "list", "count"}

// Requests timed in request_duration_seconds, one per RPC of the
// ObjectStore service.
const (
	reqPut = iota
	reqGet
	reqStat
	reqDelete
	reqList
	reqListStream
	numReqs
)

var requestNames = [numReqs]string{"put", "get", "stat", "delete", "list", "list_stream"}

const requestDurationHelp = "Time to serve a request, from its start to its end (for put, get and list_stream the whole stream), " +
	"by operation and strategy; strategy is empty for requests that named no configured strategy."

// requestLatency holds one latency histogram per kind of request.
type requestLatency [numReqs]*sdk.Histogram

func newRequestLatency() *requestLatency {
	var l requestLatency
	for i := range l {
		l[i] = sdk.NewHistogram(sdk.LatencyBuckets)
	}
	return &l
}

// stats are the plugin's counters; all atomic.
type stats struct {
	putStreams, getStreams, listStreams atomic.Int64
	bytesIn, bytesOut                   atomic.Uint64
	healthChecks                        atomic.Uint64
	ops                                 [numOps]opStats
	// unrouted times the requests that named no configured strategy (the
	// others are timed by their strategy's latency).
	unrouted *requestLatency
}

// opStats time one kind of database operation. The time of a put or get
// is the time to open it (up to the first byte for a get, to the commit
// for a put), not the transfer.
type opStats struct {
	count, errors atomic.Uint64
	nanos         atomic.Uint64 // total duration
}

func (s *stats) observe(op int, start time.Time, err error) {
	d := time.Since(start)
	o := &s.ops[op]
	o.count.Add(1)
	o.nanos.Add(uint64(d))
	if err != nil {
		o.errors.Add(1)
	}
}

// timeRequest records the time from start to now of a request of kind
// req that named the strategy name ("": the default), under that strategy
// if it is configured. Handlers defer it first thing, so that it times
// the whole request, refusals included.
func (s *Service) timeRequest(req int, name string, start time.Time) {
	if name == "" {
		name = s.defaultName
	}
	l := s.stats.unrouted
	if st, ok := s.strategies[name]; ok {
		l = st.latency
	}
	l[req].ObserveSince(start)
}

// streamStart counts a stream as active until the returned func is called.
func (s *stats) streamStart(g *atomic.Int64) func() {
	g.Add(1)
	return func() { g.Add(-1) }
}

// elevatedFill is the buffer fill (percent) from which backpressure is
// elevated; saturated means a reservation is waiting.
const elevatedFill = 80

// Metrics reports streams, bytes, the buffer budget and its backpressure,
// query latency per operation, request latency histograms per operation
// and strategy, and each strategy's health.
func (s *Service) Metrics(context.Context) (sdk.Metrics, error) {
	b := s.budget.Stats()
	st := &s.stats
	m := sdk.Metrics{Values: []sdk.Metric{
		sdk.Gauge("active_streams", "Object transfers and listings in progress.", float64(st.putStreams.Load()), "kind", "put"),
		sdk.Gauge("active_streams", "Object transfers and listings in progress.", float64(st.getStreams.Load()), "kind", "get"),
		sdk.Gauge("active_streams", "Object transfers and listings in progress.", float64(st.listStreams.Load()), "kind", "list"),
		sdk.Counter("bytes_in_total", "Object bytes received from clients.", float64(st.bytesIn.Load())),
		sdk.Counter("bytes_out_total", "Object bytes sent to clients.", float64(st.bytesOut.Load())),
		sdk.Gauge("buffer_bytes_in_use", "Bytes of the buffer budget reserved by transfers now.", float64(b.InUse)),
		sdk.Gauge("buffer_bytes_capacity", "The buffer budget (max_buffer_bytes).", float64(b.Capacity)),
		sdk.Gauge("buffer_waiting", "Transfers waiting for buffer budget now (backpressure).", float64(b.Waiting)),
		sdk.Counter("buffer_waits_total", "Reservations that had to wait for buffer budget.", float64(b.Waits)),
		sdk.Counter("buffer_wait_seconds_total", "Time spent waiting for buffer budget.", b.WaitTime.Seconds()),
		sdk.Counter("health_checks_total", "Strategy health checks run.", float64(st.healthChecks.Load())),
	}}
	for i := range numOps {
		o := &st.ops[i]
		name := opNames[i]
		m.Values = append(m.Values,
			sdk.Counter("queries_total", "Database operations by kind.", float64(o.count.Load()), "op", name),
			sdk.Counter("query_errors_total", "Database operations that failed, by kind.", float64(o.errors.Load()), "op", name),
			sdk.Counter("query_seconds_total", "Time spent in database operations by kind (to the first byte for get, to the commit for put); divide by queries_total for the mean.", float64(o.nanos.Load())/1e9, "op", name),
		)
	}
	for _, name := range s.order {
		strat := s.strategies[name]
		healthy, took := 1.0, 0.0
		if h := strat.health.Load(); h != nil {
			took = h.took.Seconds()
			if !h.ok {
				healthy = 0
			}
		}
		m.Values = append(m.Values,
			sdk.Gauge("strategy_healthy", "1 if the strategy passed its last health check, else 0.", healthy, "strategy", name, "driver", strat.driver),
			sdk.Gauge("strategy_health_check_seconds", "Duration of the strategy's last health check.", took, "strategy", name),
		)
		if sr, ok := strat.store.(store.SpaceReporter); ok {
			if sp, err := sr.Space(context.Background()); err == nil {
				m.Values = append(m.Values,
					sdk.Gauge("volume_free_bytes", "Free bytes of the volume holding the strategy's database file (SQLite strategies only).", float64(sp.FreeBytes), "strategy", name),
					sdk.Gauge("wal_bytes", "Size of the strategy's write-ahead log file (SQLite strategies only).", float64(sp.LogBytes), "strategy", name),
				)
			}
		}
		for i, h := range strat.latency {
			m.Values = append(m.Values, h.Metric("request_duration_seconds", requestDurationHelp, "operation", requestNames[i], "strategy", name))
		}
	}
	// Requests that named no configured strategy: only the operations
	// that had some, as a healthy deployment has none.
	for i, h := range st.unrouted {
		if v := h.Metric("request_duration_seconds", requestDurationHelp, "operation", requestNames[i], "strategy", ""); v.Histogram.Count > 0 {
			m.Values = append(m.Values, v)
		}
	}
	switch {
	case b.Waiting > 0:
		m.Backpressure = sdk.BackpressureSaturated
		m.Reason = fmt.Sprintf("%d transfers wait for buffer budget: %d of max_buffer_bytes %d bytes in use", b.Waiting, b.InUse, b.Capacity)
	case b.InUse*100 >= b.Capacity*elevatedFill:
		m.Backpressure = sdk.BackpressureElevated
		m.Reason = fmt.Sprintf("buffer budget %d%% used (%d of %d bytes)", b.InUse*100/max(b.Capacity, 1), b.InUse, b.Capacity)
	}
	return m, nil
}
