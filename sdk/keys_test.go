package sdk

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateObjectKey(t *testing.T) {
	for _, tc := range []struct {
		key  string
		rule string // "" = valid
	}{
		{"a", ""},
		{strings.Repeat("k", MaxObjectKeyBytes), ""},
		{"", "empty"},
		{strings.Repeat("k", MaxObjectKeyBytes+1), "1025 bytes, at most 1024"},
		{"\xff", "not valid UTF-8"},
		{"a\x00", "contains NUL at byte 1"},
	} {
		err := ValidateObjectKey(tc.key)
		if tc.rule == "" {
			if err != nil {
				t.Errorf("ValidateObjectKey(%.20q) = %v", tc.key, err)
			}
			continue
		}
		if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), tc.rule) || !strings.Contains(err.Error(), "1 to 1024 bytes") {
			t.Errorf("ValidateObjectKey(%.20q) = %v, want the rule %q", tc.key, err, tc.rule)
		}
	}
	if err := ValidateKVKey(strings.Repeat("k", MaxKVKeyBytes+1)); !errors.Is(err, ErrInvalidArgument) || !strings.HasPrefix(err.Error(), "kv key") {
		t.Errorf("ValidateKVKey(long) = %v", err)
	}
}
