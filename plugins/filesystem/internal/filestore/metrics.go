package filestore

import (
	"context"
	"sort"
	"sync/atomic"
	"time"

	"github.com/datawarehouse/dw/plugins/filesystem/internal/scheduler"
	"github.com/datawarehouse/dw/sdk/v6"
	dwv1 "github.com/datawarehouse/dw/sdk/v6/proto/dw/v1"
)

// Requests counted in the metrics.
const (
	opPut = iota
	opGet
	opStat
	opDelete
	opList
	numOps
)

var opNames = [numOps]string{"put", "get", "stat", "delete", "list"}

const requestDurationHelp = "Time to serve a request, from its start to its end (for put and get the whole transfer), " +
	"by operation and priority; priority is empty for requests whose priority is none of high, normal, low."

// requestLatency holds the request_duration_seconds histograms: one per
// operation and priority class, and one per operation for requests whose
// priority is not a class (refused at once).
type requestLatency struct {
	byClass    [numOps][len(scheduler.Classes)]*sdk.Histogram
	noPriority [numOps]*sdk.Histogram
}

func newRequestLatency() *requestLatency {
	l := &requestLatency{}
	for op := range numOps {
		for c := range l.byClass[op] {
			l.byClass[op][c] = sdk.NewHistogram(sdk.LatencyBuckets)
		}
		l.noPriority[op] = sdk.NewHistogram(sdk.LatencyBuckets)
	}
	return l
}

// timeRequest records the time from start to now of a request of kind op
// with priority prio. Handlers defer it first thing, so that it times the
// whole request, refusals and waits for admission included.
func (s *Service) timeRequest(op int, prio dwv1.Priority, start time.Time) {
	h := s.latency.noPriority[op]
	if c, ok := classIndex(prio); ok {
		h = s.latency.byClass[op][c]
	}
	h.ObserveSince(start)
}

// stats are the plugin's counters; all atomic.
type stats struct {
	activeGets, activePuts               atomic.Int64
	bytesIn, bytesOut                    atomic.Uint64
	readNanos, writeNanos                atomic.Uint64
	directTransfers, bufferedTransfers   atomic.Uint64
	pathSwitches                         atomic.Uint64
	refusedPaths                         atomic.Uint64
	requests, requestErrors, requestNano [numOps]atomic.Uint64
}

func (s *stats) observe(op int, start time.Time, err error) {
	s.requests[op].Add(1)
	s.requestNano[op].Add(uint64(time.Since(start)))
	if err != nil {
		s.requestErrors[op].Add(1)
	}
}

// b2f turns a flag into a gauge value.
func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Metrics reports the queue (length, wait and service time per class,
// in-flight, backpressure), the quotas per caller, the device class and how
// it was decided, the probed capabilities and the I/O path, the
// transfers, and request latency histograms per operation and priority.
func (s *Service) Metrics(context.Context) (sdk.Metrics, error) {
	if !s.configured.Load() {
		return sdk.Metrics{}, nil
	}
	st := &s.stats
	q := s.sched.Stats()
	res := s.detector.Current()
	p := s.path.Load()
	m := sdk.Metrics{}
	m.Backpressure, m.Reason = s.sched.Backpressure()
	add := func(ms ...sdk.Metric) { m.Values = append(m.Values, ms...) }
	add(
		sdk.Gauge("queue_max", "Operations that may wait in the I/O queue (max_queue_depth).", float64(q.MaxQueued)),
		sdk.Gauge("dispatch_depth", "Operations the device runs at once (queue_depth of its class).", float64(q.Depth)),
		sdk.Gauge("in_flight", "Operations running on the device now.", float64(q.InFlight)),
		sdk.Counter("background_restrained_total", "Dispatch decisions that held low-priority work back for high-priority work.", float64(q.Restrained)),
	)
	for _, c := range scheduler.Classes {
		cl := c.String()
		add(
			sdk.Gauge("queue_length", "Admitted operations not running now, by priority class.", float64(q.Queued[c]), "class", cl),
			sdk.Gauge("queue_waiting", "Operations waiting for a dispatch slot now, by priority class.", float64(q.Waiting[c]), "class", cl),
			sdk.Counter("admitted_total", "Requests admitted to the I/O queue, by class.", float64(q.Admitted[c]), "class", cl),
			sdk.Counter("refused_total", "Requests refused because the I/O queue was full (429), by class.", float64(q.Refused[c]), "class", cl),
			sdk.Counter("dispatched_total", "Dispatches of the I/O queue (one per chunk or metadata operation), by class.", float64(q.Dispatched[c]), "class", cl),
			sdk.Counter("wait_seconds_total", "Time operations waited for a dispatch slot, by class; divide by dispatched_total for the mean.", q.WaitSeconds[c], "class", cl),
			sdk.Counter("service_seconds_total", "Time operations ran on the device, by class; divide by dispatched_total for the mean.", q.ServiceSeconds[c], "class", cl),
		)
	}
	callers := s.quotas.Load().Stats()
	names := make([]string, 0, len(callers))
	for n := range callers {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		c := callers[n]
		add(
			sdk.Counter("quota_admitted_total", "Requests admitted by the caller's quota.", float64(c.Admitted), "caller", n),
			sdk.Counter("quota_throttled_total", "Quota takes that had to wait, by caller.", float64(c.Throttled), "caller", n),
			sdk.Counter("quota_refused_total", "Requests refused over quota after max_throttle_wait (429), by caller.", float64(c.Refused), "caller", n),
			sdk.Counter("quota_throttled_seconds_total", "Time requests waited for quota, by caller.", c.ThrottledSeconds, "caller", n),
		)
	}
	add(
		sdk.Gauge("device_info", "The root's device class and how it was decided (value 1).", 1,
			"class", string(s.dev.Class), "device", s.dev.Device, "source", s.dev.Source, "reason", s.dev.Reason),
		sdk.Gauge("capability_available", "1 if the last probe found the kernel capability usable.", b2f(res.IOURing.Available), "capability", "io_uring"),
		sdk.Gauge("capability_available", "1 if the last probe found the kernel capability usable.", b2f(res.ODirect.Available), "capability", "o_direct"),
		sdk.Gauge("probe_timestamp_seconds", "Unix time of the last capability probe.", float64(res.At.UnixNano())/1e9),
		sdk.Gauge("probe_duration_seconds", "Duration of the last capability probe.", res.Took.Seconds()),
		sdk.Gauge("io_path_info", "The I/O path in use for large transfers (value 1).", 1, "path", p.name),
		sdk.Counter("io_path_switches_total", "Switches of the I/O path after a re-detection.", float64(st.pathSwitches.Load())),
		sdk.Counter("transfers_total", "Transfers by the I/O path they used.", float64(st.directTransfers.Load()), "path", "direct"),
		sdk.Counter("transfers_total", "Transfers by the I/O path they used.", float64(st.bufferedTransfers.Load()), "path", "buffered"),
		sdk.Gauge("active_transfers", "Transfers in progress.", float64(st.activeGets.Load()), "kind", "get"),
		sdk.Gauge("active_transfers", "Transfers in progress.", float64(st.activePuts.Load()), "kind", "put"),
		sdk.Counter("bytes_in_total", "File bytes received from clients.", float64(st.bytesIn.Load())),
		sdk.Counter("bytes_out_total", "File bytes sent to clients.", float64(st.bytesOut.Load())),
		sdk.Counter("read_seconds_total", "Time spent in file reads.", float64(st.readNanos.Load())/1e9),
		sdk.Counter("write_seconds_total", "Time spent in file writes.", float64(st.writeNanos.Load())/1e9),
		sdk.Gauge("buffers_in_use", "Chunk buffers held by transfers now.", float64(s.bufs.inUse.Load())),
		sdk.Gauge("buffers_max", "Chunk buffers available to all transfers.", maxBuffers),
		sdk.Counter("buffer_waits_total", "Transfers that waited for a chunk buffer.", float64(s.bufs.waits.Load())),
		sdk.Counter("refused_paths_total", "Requests refused for a path that breaks the rules or leads outside the root.", float64(st.refusedPaths.Load())),
	)
	for i := range numOps {
		add(
			sdk.Counter("requests_total", "Requests by kind.", float64(st.requests[i].Load()), "op", opNames[i]),
			sdk.Counter("request_errors_total", "Requests that failed, by kind.", float64(st.requestErrors[i].Load()), "op", opNames[i]),
			sdk.Counter("request_seconds_total", "Time of requests by kind, from their start to their end, quota and queue waits included.", float64(st.requestNano[i].Load())/1e9, "op", opNames[i]),
		)
		for _, c := range scheduler.Classes {
			add(s.latency.byClass[i][c].Metric("request_duration_seconds", requestDurationHelp, "operation", opNames[i], "priority", c.String()))
		}
		// Requests of no priority class: only the operations that had
		// some, as the host sends none.
		if v := s.latency.noPriority[i].Metric("request_duration_seconds", requestDurationHelp, "operation", opNames[i], "priority", ""); v.Histogram.Count > 0 {
			add(v)
		}
	}
	return m, nil
}
