// Package scheduler is the filesystem plugin's priority I/O queue.
//
// Every file operation is admitted to one Queue with a priority Class (high,
// normal, low), then runs its I/O steps through Op.Run, which holds one of
// the device's dispatch slots while the step runs. A transfer runs one Run
// per chunk, so a long low-priority transfer gives its slot back between
// chunks and cannot hold the device against high-priority work.
//
// # Admission
//
// Admit never blocks. An operation is queued from Admit until Done, except
// while its step is running inside Run. When limits.max_queue_depth
// operations are queued already, Admit refuses at once with an error that
// wraps sdk.ErrBackpressure and carries a retry hint (sdk.WithRetryAfter):
// the time the queue takes to drain at the recent service rate,
// (queued+1) × mean service time / depth, rounded up to whole seconds and
// kept within [1s, 60s]. Room is kept for higher priorities: a low
// operation is refused once 3/4 of max_queue_depth are queued, a normal one
// at 7/8, a high one only at the bound, so a low-priority flood that fills
// the queue cannot lock high-priority work out of it. The mean service time is an exponentially weighted
// moving average (weight 1/8 per step) of how long Run's fn took. A caller
// is never parked without bound: the only wait is in Run, and a done ctx
// ends it.
//
// # Dispatch policy
//
// At most depth steps run at once, over all classes. When a slot frees and
// steps are waiting, the next one is chosen by smooth weighted round robin
// (the nginx upstream algorithm) over the classes that have waiters, with
// weights high 8, normal 4, low 1; within a class the order is first in,
// first out. Each choice adds every waiting class's weight to its current
// weight, picks the class with the largest current weight (ties go to the
// higher priority) and subtracts the sum of the waiting classes' weights
// from the winner. A class with no waiters has its current weight reset to
// 0, so an idle class cannot bank credit and burst later. Consequences:
//
//   - High goes first: a high step that starts waiting behind any number of
//     waiting low steps runs at the next free slot (its 8 beats low's 1).
//   - Nothing starves: with high and low waiting, the dispatch order cycles
//     H H H H L H H H H, so a waiting low step runs within 9 dispatches (the
//     5th, from a fresh start); with all three classes waiting, within 13
//     (the cycle is H N H H N H L H N H H N H). Under sustained load the
//     classes share dispatches 8:4:1.
//
// The tests check the exact sequences, the FIFO order, the credit reset and
// both bounds under a sustained load.
//
// # Low priority as background work
//
// Weights order the device's slots, but on a fast device the slots are
// rarely what a request waits for: a flood of small low-priority reads
// takes the CPU of the whole path (the host's HTTP, the gRPC streams, this
// process) and high-priority reads queue behind it there, where no I/O
// scheduler reaches. Measured on 2 cores, a flood of 64 low readers made
// high-priority 4 KiB reads 12–50× slower at p99 while their wait for a
// slot stayed under a microsecond. So SetBackground (which the filesystem
// plugin turns on) makes low priority background work, as Linux's BFQ
// and ionice's idle class do: while a high operation is admitted, and for
// an anticipation window after the last one is Done (so that a user's next
// interactive read finds the machine still quiet), low steps are
// dispatched at most one per trickle interval, even with free slots. A
// closed-loop flood then slows to the trickle and leaves the CPU to
// high-priority work; low work still moves (one step per trickle, within
// weighted round robin when slots are contended), so it never starves.
// Normal priority is not held back. Held decisions are counted in
// Stats.Restrained; one wake-up timer dispatches held work when it may go.
//
// A slot is handed directly to the chosen waiter through its own buffered
// channel (no broadcast, so no thundering herd), and the queue's one mutex
// is never held while fn runs. A step that starts with a free slot and
// nobody waiting takes it at once without a clock read for its wait and
// without allocating; each Op allocates its wake-up channel only the first
// time it has to wait.
//
// # Live limits
//
// SetLimits changes both limits at once. A larger depth dispatches waiting
// steps immediately; a smaller depth lets running steps finish and
// dispatches nothing until fewer than depth run. A smaller max_queue_depth
// only refuses new admissions: queued work is never dropped. Limits below 1
// are raised to 1 (New and SetLimits clamp rather than panic, because limits
// arrive from live configuration; validation and its messages belong to the
// config layer).
//
// # Cancellation and Done
//
// A ctx that ends while Run waits returns an error wrapping ctx.Err() (a
// ctx already done when Run would have to wait returns at once); the op
// leaves the wait list but stays admitted (and queued) until Done. If a
// slot was handed over at the same moment, either fn runs (the slot won the
// race) or the slot goes on to the next waiter unused; the counts are right
// either way. Run does not look at ctx when a slot is free at once: fn
// should honour ctx itself. Done is idempotent; a Done while a step waits
// ends that wait with ErrDone, and Run after Done returns ErrDone. A panic
// in fn still releases the slot.
//
// # Stats and backpressure
//
// Stats counts per class: queued (admitted, not Done, not running), waiting
// (blocked in Run), admitted, refused, dispatched (steps that ran fn), and
// the total seconds dispatched steps waited and fn ran; a cancelled wait
// adds neither a dispatch nor wait time.
//
// Backpressure reports the queue fill, sum of queued / max_queue_depth:
// saturated at 0.9 or more, elevated at 0.5 or more, none below. It is also
// saturated for one second after Admit refused an operation, so that a
// queue hovering at its limit shows as saturated even when a sample catches
// it just below the threshold.
package scheduler
