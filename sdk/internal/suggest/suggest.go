// Package suggest finds the known name nearest to a mistyped one, for the
// "did you mean" of every key-path error: the SDK's decoding of limits and
// settings and the host's config file (through pluginhost.SuggestKey) give
// the same suggestion for the same typo.
package suggest

import "strings"

// maxInput bounds the runes compared, so that a hostile key costs little.
const maxInput = 64

// Key returns the known name nearest to key, if it is near enough: an edit
// distance (Levenshtein, with the swap of two neighbouring letters counted
// as one edit; letter case ignored) of at most max(2, len/3) of the known
// name, and less than its length, so that a suggestion shares at least one
// letter with key. On a tie the first of known wins; "" when none is near.
func Key(key string, known []string) string {
	kr := []rune(strings.ToLower(key))
	if len(kr) > maxInput {
		return ""
	}
	best, bestDist := "", -1
	for _, k := range known {
		cr := []rune(strings.ToLower(k))
		if len(cr) > maxInput {
			continue
		}
		limit := max(2, len(cr)/3)
		if diff := len(cr) - len(kr); diff > limit || -diff > limit {
			continue // the distance is at least diff
		}
		if d := Distance(kr, cr); d <= limit && d < len(cr) && (bestDist < 0 || d < bestDist) {
			best, bestDist = k, d
		}
	}
	return best
}

// Distance is the optimal-string-alignment distance between a and b: the
// Levenshtein distance with a transposition of neighbours as one edit.
func Distance(a, b []rune) int {
	// Three rows: i-2, i-1, i.
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
