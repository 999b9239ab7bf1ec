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

// File path limits of the FileStore contract.
const (
	// MaxFilePathBytes is the longest file path.
	MaxFilePathBytes = 4096
	// MaxFileNameBytes is the longest element of a file path (Linux's
	// NAME_MAX).
	MaxFileNameBytes = 255
)

// filePathRule is the FileStore path rule, quoted in every error.
const filePathRule = "a path is relative to the root: '/'-separated names of 1 to 255 bytes of UTF-8, " +
	"without control characters or '\\', and without empty, '.' or '..' names; at most 4096 bytes"

// ValidateFilePath checks a path of the FileStore contract: relative,
// '/'-separated, no empty, "." or ".." element, no element over
// MaxFileNameBytes, no control character (NUL included) and no backslash
// (which other systems read as a separator), valid UTF-8, at most
// MaxFilePathBytes. The empty path (the root folder) is refused; callers
// that accept the root (listing) check for "" first. The error wraps
// ErrInvalidArgument and names the broken rule.
//
// The rule is lexical: it keeps a name from climbing out of the root by
// itself. Symlinks inside the root that point out are the store's to refuse
// (the filesystem plugin opens every name through os.Root).
func ValidateFilePath(p string) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("file path %s (%s): %w", fmt.Sprintf(format, args...), filePathRule, ErrInvalidArgument)
	}
	switch {
	case p == "":
		return bad("is empty")
	case len(p) > MaxFilePathBytes:
		return bad("is %d bytes, at most %d allowed", len(p), MaxFilePathBytes)
	case !utf8.ValidString(p):
		return bad("is not valid UTF-8")
	case p[0] == '/':
		return bad("%q is absolute", shortPath(p))
	}
	for i, r := range p {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return bad("contains control character %U at byte %d", r, i)
		}
		if r == '\\' {
			return bad("%q contains '\\' at byte %d", shortPath(p), i)
		}
	}
	for name := range strings.SplitSeq(p, "/") {
		switch {
		case name == "":
			return bad("%q has an empty name (a leading, trailing or doubled '/')", shortPath(p))
		case name == "." || name == "..":
			return bad("%q contains %q", shortPath(p), name)
		case len(name) > MaxFileNameBytes:
			return bad("has a name of %d bytes, at most %d allowed", len(name), MaxFileNameBytes)
		}
	}
	return nil
}

// shortPath keeps error messages readable for hostile, long paths.
func shortPath(p string) string {
	const max = 200
	if len(p) <= max {
		return p
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(p[cut]) {
		cut--
	}
	return p[:cut] + "…"
}

// MaxIDBytes is the longest id that ValidateID accepts.
const MaxIDBytes = 128

// idRule is the id rule, quoted in every error of ValidateID.
const idRule = "must be 1 to 128 of A-Z, a-z, 0-9, '_' and '-'"

// ValidateID checks an opaque id, such as a backup job or snapshot id: 1 to
// MaxIDBytes of ASCII letters, digits, '_' and '-', so that it is safe
// unescaped in a URL path, a file name and a KV key. what names the id in
// the error ("job id"); the error wraps ErrInvalidArgument and states the
// rule, and shows a long id cut (quoteShort).
func ValidateID(what, id string) error {
	ok := id != "" && len(id) <= MaxIDBytes
	for i := 0; ok && i < len(id); i++ {
		c := id[i]
		ok = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-'
	}
	if ok {
		return nil
	}
	return fmt.Errorf("%s %s: %w: %s", what, quoteShort(id), ErrInvalidArgument, idRule)
}
