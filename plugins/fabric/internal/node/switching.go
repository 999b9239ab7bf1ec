package node

import "fmt"

// recommend applies the switching rules to count nodes in topology cur:
//   - up when count >= upAt × max[cur]: the next topology above whose
//     capacity fits (count < upAt × max[t]), else the top one;
//   - else down when count < downAt × max[lower]: the topology below.
//
// It returns "" when cur should stay. Because downAt < upAt, a topology
// reached by either move does not immediately recommend the way back.
func recommend(count int, cur Topology, m MaxNodes, upAt, downAt float64) (Topology, string) {
	r := cur.rank()
	if r < 0 {
		return "", ""
	}
	c := float64(count)
	if up := upAt * float64(m.For(cur)); r < len(topologies)-1 && c >= up {
		for _, t := range topologies[r+1:] {
			if c < upAt*float64(m.For(t)) {
				return t, fmt.Sprintf("node count %d reached up_at %g × max_nodes.%s %d = %g; %s fits it (%d < %g × max_nodes.%s %d)",
					count, upAt, cur, m.For(cur), up, t, count, upAt, t, m.For(t))
			}
		}
		top := topologies[len(topologies)-1]
		return top, fmt.Sprintf("node count %d reached up_at %g × max_nodes.%s %d = %g; no topology above fits it, moving to the top (%s)",
			count, upAt, cur, m.For(cur), up, top)
	}
	if r > 0 {
		lower := topologies[r-1]
		if down := downAt * float64(m.For(lower)); c < down {
			return lower, fmt.Sprintf("node count %d is below down_at %g × max_nodes.%s %d = %g",
				count, downAt, lower, m.For(lower), down)
		}
	}
	return "", ""
}

// switchStreak is the hysteresis in time: a recommendation becomes stable
// once the same one was computed on streakNeed consecutive interval ticks.
// Evaluations between ticks (on membership changes) can break a streak but
// not advance it, so a burst of joins cannot fake three evaluations.
type switchStreak struct {
	cand Topology
	n    int
}

const streakNeed = 3

// tick records an evaluation on an interval tick and returns the stable
// recommendation ("" when none).
func (s *switchStreak) tick(cand Topology) Topology {
	switch {
	case cand == "":
		*s = switchStreak{}
	case cand == s.cand:
		s.n++
	default:
		*s = switchStreak{cand: cand, n: 1}
	}
	return s.stable()
}

// check records an evaluation between ticks.
func (s *switchStreak) check(cand Topology) Topology {
	if cand != s.cand {
		*s = switchStreak{}
	}
	return s.stable()
}

func (s *switchStreak) stable() Topology {
	if s.n >= streakNeed {
		return s.cand
	}
	return ""
}

// supersedes reports whether record a takes precedence over b: a higher
// epoch, then the greater setter id.
func (a topoRecord) supersedes(b topoRecord) bool {
	if a.Epoch != b.Epoch {
		return a.Epoch > b.Epoch
	}
	return a.By > b.By
}
