package sdk

import (
	"math/big"
	"strconv"
	"strings"
)

// Size is a byte count. In configuration it is written as a number with an
// optional unit: "4096", "512B", "10KB" (powers of 1000: KB, MB, GB, TB, PB)
// or "64MiB" (powers of 1024: KiB, MiB, GiB, TiB, PiB). Units are
// case-insensitive, so "10kB" and "64mib" work too; a space may separate the
// number from the unit, and the number may have a fraction as long as the
// result is a whole number of bytes ("1.5GiB").
//
// Size implements encoding.TextMarshaler and encoding.TextUnmarshaler, so it
// reads and writes its string form in JSON and YAML.
type Size int64

// Common sizes.
const (
	Byte Size = 1
	KB   Size = 1000 * Byte
	MB   Size = 1000 * KB
	GB   Size = 1000 * MB
	TB   Size = 1000 * GB
	PB   Size = 1000 * TB
	KiB  Size = 1 << 10
	MiB  Size = 1 << 20
	GiB  Size = 1 << 30
	TiB  Size = 1 << 40
	PiB  Size = 1 << 50
)

// sizeUnit is one unit of a size string.
type sizeUnit struct {
	name string
	mult uint64
}

// binaryUnits and decimalUnits are ordered from the largest down: String
// uses the first that divides a size exactly.
var (
	binaryUnits = []sizeUnit{
		{"PiB", uint64(PiB)}, {"TiB", uint64(TiB)}, {"GiB", uint64(GiB)},
		{"MiB", uint64(MiB)}, {"KiB", uint64(KiB)},
	}
	decimalUnits = []sizeUnit{
		{"PB", uint64(PB)}, {"TB", uint64(TB)}, {"GB", uint64(GB)},
		{"MB", uint64(MB)}, {"KB", uint64(KB)},
	}
)

// sizeWant says what ParseSize accepts.
const sizeWant = `want a number with an optional unit B, KB, MB, GB, TB, PB, KiB, MiB, GiB, TiB, PiB (e.g. "64MiB")`

// maxFractionDigits bounds the significant fraction digits of a size: with a
// multiplier of at most 2^50 or 10^15, a fraction of more than 50
// significant digits never gives a whole number of bytes.
const maxFractionDigits = 50

// sizeError is the error ParseSize returns.
type sizeError struct {
	input  string
	reason string
}

func (e *sizeError) Error() string {
	return "invalid size " + quoteShort(e.input) + ": " + e.reason
}

// ParseSize parses a size such as "64MiB", "1.5GiB", "10KB", "1 MiB" or
// "4096" (bytes). It rejects negative sizes, sizes beyond the range of an
// int64, and fractions that do not come to a whole number of bytes
// ("1.5B"). The error says what is allowed.
func ParseSize(s string) (Size, error) {
	n, reason := parseSize(s)
	if reason != "" {
		return 0, &sizeError{input: s, reason: reason}
	}
	return n, nil
}

// parseSize parses s; on failure it returns the reason, without the input.
func parseSize(s string) (Size, string) {
	t := strings.TrimSpace(s)
	if strings.HasPrefix(t, "-") {
		return 0, "must not be negative"
	}
	// Number: digits, optionally "." and more digits.
	i := 0
	for i < len(t) && isASCIIDigit(t[i]) {
		i++
	}
	intPart := t[:i]
	fracPart := ""
	if i < len(t) && t[i] == '.' {
		j := i + 1
		for j < len(t) && isASCIIDigit(t[j]) {
			j++
		}
		fracPart = t[i+1 : j]
		if fracPart == "" {
			return 0, sizeWant
		}
		i = j
	}
	if intPart == "" {
		return 0, sizeWant
	}
	unit := strings.TrimLeft(t[i:], " \t")
	mult, ok := unitMultiplier(unit)
	if !ok {
		return 0, sizeWant
	}

	intPart = strings.TrimLeft(intPart, "0")
	fracPart = strings.TrimRight(fracPart, "0")
	// 10^19 > MaxInt64, and every multiplier is at least 1.
	if len(intPart) > 19 {
		return 0, sizeTooLarge
	}
	if len(fracPart) > maxFractionDigits {
		return 0, "not a whole number of bytes"
	}
	// value = (intPart.fracPart) * mult, computed exactly.
	num, _ := new(big.Int).SetString("0"+intPart+fracPart, 10)
	num.Mul(num, new(big.Int).SetUint64(mult))
	den := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(len(fracPart))), nil)
	q, r := new(big.Int).QuoRem(num, den, new(big.Int))
	if r.Sign() != 0 {
		return 0, "not a whole number of bytes"
	}
	if !q.IsInt64() {
		return 0, sizeTooLarge
	}
	return Size(q.Int64()), ""
}

// sizeTooLarge is the reason for a size beyond the range of an int64.
const sizeTooLarge = "too large (the maximum is 9223372036854775807 bytes)"

func isASCIIDigit(c byte) bool { return '0' <= c && c <= '9' }

// unitMultiplier returns the multiplier of a unit, case-insensitively; ""
// means bytes.
func unitMultiplier(unit string) (uint64, bool) {
	switch strings.ToLower(unit) {
	case "", "b":
		return 1, true
	case "kb":
		return uint64(KB), true
	case "mb":
		return uint64(MB), true
	case "gb":
		return uint64(GB), true
	case "tb":
		return uint64(TB), true
	case "pb":
		return uint64(PB), true
	case "kib":
		return uint64(KiB), true
	case "mib":
		return uint64(MiB), true
	case "gib":
		return uint64(GiB), true
	case "tib":
		return uint64(TiB), true
	case "pib":
		return uint64(PiB), true
	}
	return 0, false
}

// String returns the shortest exact form of s, with no fraction: the number
// of the largest binary unit that divides s ("64MiB") or of the largest
// decimal unit that divides it ("10KB", "2PB"), whichever is shorter (binary
// on a tie), else bytes ("1234B"). Zero is "0B". ParseSize(s.String())
// returns s for every non-negative s.
func (s Size) String() string {
	if s == 0 {
		return "0B"
	}
	sign := ""
	u := uint64(s)
	if s < 0 {
		sign = "-"
		u = uint64(-(s + 1)) + 1 // -MinInt64 overflows an int64
	}
	best := strconv.FormatUint(u, 10) + "B"
	for _, units := range [][]sizeUnit{binaryUnits, decimalUnits} {
		for _, un := range units {
			if u%un.mult == 0 {
				if f := strconv.FormatUint(u/un.mult, 10) + un.name; len(f) < len(best) {
					best = f
				}
				break
			}
		}
	}
	return sign + best
}

// MarshalText returns s.String().
func (s Size) MarshalText() ([]byte, error) {
	return []byte(s.String()), nil
}

// UnmarshalText parses text with ParseSize.
func (s *Size) UnmarshalText(text []byte) error {
	n, err := ParseSize(string(text))
	if err != nil {
		return err
	}
	*s = n
	return nil
}

// quoteShort quotes s like %q, cutting it after 64 bytes so that hostile
// input cannot blow up an error message.
func quoteShort(s string) string {
	const limit = 64
	if len(s) <= limit {
		return strconv.Quote(s)
	}
	cut := limit
	for cut > 0 && !isRuneStart(s[cut]) {
		cut--
	}
	return strconv.Quote(s[:cut]) + "... (" + strconv.Itoa(len(s)) + " bytes)"
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }
