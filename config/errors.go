package config

import (
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/datawarehouse/dw/sdk/v6/pluginhost"
)

// Problem is one thing wrong with a configuration.
type Problem struct {
	// Source is where the offending value came from: the file path given to
	// Load (or the source given to Parse), "defaults" or "environment".
	// Empty for problems found by Validate, which does not know sources.
	Source string
	// Path is the key path of the offending value, such as server.listen or
	// server.auth.tokens[0].name; empty when the problem is with the source
	// as a whole (a YAML syntax error, a file too large).
	Path string
	// Message says what is wrong and what is allowed.
	Message string
}

// String formats p as one line: "config <source>: <path>: <message>".
func (p Problem) String() string {
	var b strings.Builder
	b.WriteString("config")
	if p.Source != "" {
		b.WriteString(" ")
		b.WriteString(p.Source)
	}
	b.WriteString(": ")
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// Error is the error of Load, Parse and Validate for a configuration with
// problems. It holds all of them, sorted by key path; use errors.As to get
// at them.
type Error struct {
	// Problems lists every problem found, sorted by key path.
	Problems []Problem
}

// maxReported is how many problems Error.Error spells out.
const maxReported = 25

// Error formats the problems one a line, each prefixed with its source, as in
// "config dw.yaml: log.level: must be one of …". Past maxReported problems it
// says how many more there are.
func (e *Error) Error() string {
	if len(e.Problems) == 0 {
		return "config: invalid configuration"
	}
	var b strings.Builder
	for i, p := range e.Problems {
		if i == maxReported {
			fmt.Fprintf(&b, "\nconfig: and %d more problems", len(e.Problems)-maxReported)
			break
		}
		if i > 0 {
			b.WriteString("\n")
		}
		b.WriteString(p.String())
	}
	return b.String()
}

// sortProblems sorts ps by key path, then source and message.
func sortProblems(ps []Problem) {
	slices.SortStableFunc(ps, func(a, b Problem) int {
		return cmp.Or(cmp.Compare(a.Path, b.Path), cmp.Compare(a.Source, b.Source), cmp.Compare(a.Message, b.Message))
	})
}

// maxShown is how many characters of a value or key an error message quotes.
const maxShown = 64

// describe formats a configuration value for an error message: strings
// quoted, numbers and booleans as written, collections by kind; long strings
// are cut.
func describe(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case string:
		return strconv.Quote(truncate(v))
	case bool, int, int64, uint64, float64:
		return fmt.Sprint(v)
	case map[string]any:
		return "a mapping"
	case []any:
		return "a list"
	default:
		return fmt.Sprintf("a %T", v)
	}
}

// truncate cuts s to maxShown runes, marking the cut with "…".
func truncate(s string) string {
	if utf8.RuneCountInString(s) <= maxShown {
		return s
	}
	return string([]rune(s)[:maxShown]) + "…"
}

// plainSegmentRE matches a key that can be shown unquoted in a key path.
var plainSegmentRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// pathSegment formats one key for a key path: as it is when it is made of
// letters, digits, _ and -, quoted (and cut when long) otherwise.
func pathSegment(key string) string {
	if plainSegmentRE.MatchString(key) && len(key) <= maxShown {
		return key
	}
	return strconv.Quote(truncate(key))
}

// suggest returns the allowed key nearest to key, or "" when none is
// close: the same rule as the SDK's for plugin limits and settings.
func suggest(key string, allowed []string) string {
	return pluginhost.SuggestKey(key, allowed)
}
