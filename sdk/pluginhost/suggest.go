package pluginhost

import "github.com/datawarehouse/dw/sdk/v6/internal/suggest"

// SuggestKey returns the name of known nearest to a mistyped key, or "" when
// none is near enough: the "did you mean" the SDK gives for limits and
// settings, so that the host's own config errors suggest the same.
func SuggestKey(key string, known []string) string { return suggest.Key(key, known) }
