package sdk

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// MaxObjectKeyBytes is the longest object key of the ObjectStore contract.
const MaxObjectKeyBytes = 1024

// ValidateObjectKey checks an object key of the ObjectStore contract: 1 to
// MaxObjectKeyBytes bytes of UTF-8 without NUL. The error wraps
// ErrInvalidArgument and names the broken rule.
func ValidateObjectKey(key string) error { return validateKey("object key", key, MaxObjectKeyBytes) }

// validateKey is the one key rule of dw's key spaces (host KV, objects):
// 1 to maxBytes bytes of valid UTF-8 without NUL.
func validateKey(what, key string, maxBytes int) error {
	rule := fmt.Sprintf("keys are 1 to %d bytes of UTF-8 without NUL", maxBytes)
	switch {
	case key == "":
		return fmt.Errorf("%s is empty (%s): %w", what, rule, ErrInvalidArgument)
	case len(key) > maxBytes:
		return fmt.Errorf("%s is %d bytes, at most %d allowed (%s): %w", what, len(key), maxBytes, rule, ErrInvalidArgument)
	case !utf8.ValidString(key):
		return fmt.Errorf("%s is not valid UTF-8 (%s): %w", what, rule, ErrInvalidArgument)
	}
	if i := strings.IndexByte(key, 0); i >= 0 {
		return fmt.Errorf("%s contains NUL at byte %d (%s): %w", what, i, rule, ErrInvalidArgument)
	}
	return nil
}
