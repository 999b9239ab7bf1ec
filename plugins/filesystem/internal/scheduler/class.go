package scheduler

import (
	"fmt"

	"github.com/datawarehouse/dw/sdk/v6"
)

// Class is an operation's priority.
type Class int

// Priority classes, highest first.
const (
	High Class = iota
	Normal
	Low
)

// Classes lists every class, highest priority first; Stats arrays are
// indexed by Class in this order.
var Classes = [...]Class{High, Normal, Low}

// numClasses is the number of classes (len of an array is a constant).
const numClasses = len(Classes)

// weights are the smooth weighted round robin weights, indexed by Class.
var weights = [numClasses]int{High: 8, Normal: 4, Low: 1}

// String returns "high", "normal" or "low".
func (c Class) String() string {
	switch c {
	case High:
		return "high"
	case Normal:
		return "normal"
	case Low:
		return "low"
	}
	return fmt.Sprintf("class(%d)", int(c))
}

// Weight returns the class's dispatch weight: high 8, normal 4, low 1.
// It returns 0 for an unknown class.
func (c Class) Weight() int {
	if !c.valid() {
		return 0
	}
	return weights[c]
}

func (c Class) valid() bool { return c >= High && c <= Low }

// ParseClass parses a priority as sent in X-DW-Priority: "high", "normal"
// or "low"; the empty string is the default, normal. Anything else is an
// error wrapping sdk.ErrInvalidArgument.
func ParseClass(s string) (Class, error) {
	switch s {
	case "high":
		return High, nil
	case "", "normal":
		return Normal, nil
	case "low":
		return Low, nil
	}
	return Normal, fmt.Errorf("priority %q: must be high, normal or low: %w", s, sdk.ErrInvalidArgument)
}
