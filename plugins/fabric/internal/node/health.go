package node

import (
	"math"
	"time"
)

// missedBeats counts the heartbeats missed since lastHeard at interval:
// max(0, floor((now − lastHeard − interval/2) / interval)). Half an
// interval of slack absorbs the round trip and timer jitter.
func missedBeats(now, lastHeard time.Time, interval time.Duration) int {
	if interval <= 0 {
		return 0
	}
	late := now.Sub(lastHeard) - interval/2
	if late < 0 {
		return 0
	}
	m := int64(late / interval)
	if m > math.MaxInt32 {
		return math.MaxInt32
	}
	return int(m)
}

// stateFor maps a missed count to a state: 0 alive, 1..limit−1 suspect,
// limit or more dead.
func stateFor(missed, limit int) State {
	switch {
	case missed <= 0:
		return StateAlive
	case missed < limit:
		return StateSuspect
	default:
		return StateDead
	}
}
