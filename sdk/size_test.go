package sdk

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
)

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want Size
	}{
		{"0", 0},
		{"0B", 0},
		{"0.0MiB", 0},
		{"4096", 4096},
		{"512B", 512},
		{"512b", 512},
		{"10KB", 10_000},
		{"10kB", 10_000},
		{"10kb", 10_000},
		{"1KiB", 1024},
		{"1kib", 1024},
		{"64MiB", 64 << 20},
		{"64mib", 64 << 20},
		{"64MIB", 64 << 20},
		{"1.5GiB", 3 << 29},
		{"1.5GB", 1_500_000_000},
		{"1 MiB", 1 << 20},
		{"1\tMiB", 1 << 20},
		{"  2KiB  ", 2048},
		{"0.5KiB", 512},
		{"0.001KB", 1},
		{"1.000KB", 1000},
		{"007MB", 7_000_000},
		{"3TB", 3_000_000_000_000},
		{"3TiB", 3 << 40},
		{"2PB", 2_000_000_000_000_000},
		{"2PiB", 2 << 50},
		{"8191PiB", 8191 << 50},
		{"9223372036854775807", math.MaxInt64},
		{"9223372036854775807B", math.MaxInt64},
		{"00000000000000000000000001", 1},
		{"1.00000000000000000000000000000000000000000000000000000000000000000000KiB", 1024},
		{"0.00000000000000088817841970012523233890533447265625PiB", 1}, // 2^-50 PiB
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if err != nil {
			t.Errorf("ParseSize(%q): %v", tt.in, err)
			continue
		}
		if got != tt.want {
			t.Errorf("ParseSize(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func TestParseSizeErrors(t *testing.T) {
	const want = `want a number with an optional unit B, KB, MB, GB, TB, PB, KiB, MiB, GiB, TiB, PiB (e.g. "64MiB")`
	tests := []struct {
		in  string
		err string
	}{
		{"", `invalid size "": ` + want},
		{"   ", `invalid size "   ": ` + want},
		{"12XB", `invalid size "12XB": ` + want},
		{"lots", `invalid size "lots": ` + want},
		{"MiB", `invalid size "MiB": ` + want},
		{"1.", `invalid size "1.": ` + want},
		{".5KiB", `invalid size ".5KiB": ` + want},
		{"1..5KiB", `invalid size "1..5KiB": ` + want},
		{"+1", `invalid size "+1": ` + want},
		{"1e3", `invalid size "1e3": ` + want},
		{"0x10", `invalid size "0x10": ` + want},
		{"1_000", `invalid size "1_000": ` + want},
		{"NaN", `invalid size "NaN": ` + want},
		{"Inf", `invalid size "Inf": ` + want},
		{"+Inf", `invalid size "+Inf": ` + want},
		{"1 M", `invalid size "1 M": ` + want},
		{"1K", `invalid size "1K": ` + want},
		{"1 Mi B", `invalid size "1 Mi B": ` + want},
		{"1MiB2", `invalid size "1MiB2": ` + want},
		{"1EiB", `invalid size "1EiB": ` + want},
		{"١٢", `invalid size "١٢": ` + want}, // Arabic-Indic digits
		{"-1", `invalid size "-1": must not be negative`},
		{"-0", `invalid size "-0": must not be negative`},
		{" -1MiB", `invalid size " -1MiB": must not be negative`},
		{"1.5B", `invalid size "1.5B": not a whole number of bytes`},
		{"1.5", `invalid size "1.5": not a whole number of bytes`},
		{"0.0001KB", `invalid size "0.0001KB": not a whole number of bytes`},
		{"0.1KiB", `invalid size "0.1KiB": not a whole number of bytes`},
		{"1." + strings.Repeat("1", 58) + "PiB", `invalid size "1.1111111111111111111111111111111111111111111111111111111111PiB": not a whole number of bytes`},
		{"9223372036854775808", `invalid size "9223372036854775808": too large (the maximum is 9223372036854775807 bytes)`},
		{"8192PiB", `invalid size "8192PiB": too large (the maximum is 9223372036854775807 bytes)`},
		{"9223372036854775807KB", `invalid size "9223372036854775807KB": too large (the maximum is 9223372036854775807 bytes)`},
		{"99999999999999999999999999999", `invalid size "99999999999999999999999999999": too large (the maximum is 9223372036854775807 bytes)`},
		{strings.Repeat("9", 100), `invalid size "9999999999999999999999999999999999999999999999999999999999999999"... (100 bytes): too large (the maximum is 9223372036854775807 bytes)`},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if err == nil {
			t.Errorf("ParseSize(%q) = %d, want error %q", tt.in, got, tt.err)
			continue
		}
		if err.Error() != tt.err {
			t.Errorf("ParseSize(%q) error\n got %q\nwant %q", tt.in, err, tt.err)
		}
	}
}

func TestParseSizeHugeInput(t *testing.T) {
	// A megabyte of digits must be handled fast, and errors must stay short.
	tests := []struct {
		in      string
		want    Size
		wantErr bool
	}{
		{strings.Repeat("1", 1<<20), 0, true},
		{"1." + strings.Repeat("0", 1<<20) + "1KiB", 0, true},
		{"1." + strings.Repeat("0", 1<<20) + "KiB", 1024, false},
		{strings.Repeat("0", 1<<20) + "1", 1, false},
		{"1" + strings.Repeat(" ", 1<<20) + "MiB", 1 << 20, false},
		{"1" + strings.Repeat("x", 1<<20), 0, true},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if tt.wantErr {
			if err == nil {
				t.Errorf("ParseSize(<%d bytes>) = %d, want error", len(tt.in), got)
			} else if len(err.Error()) > 250 {
				t.Errorf("ParseSize(<%d bytes>) error is %d bytes long", len(tt.in), len(err.Error()))
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseSize(<%d bytes>) = %d, %v; want %d", len(tt.in), got, err, tt.want)
		}
	}
}

func TestSizeString(t *testing.T) {
	tests := []struct {
		in   Size
		want string
	}{
		{0, "0B"},
		{1, "1B"},
		{1023, "1023B"},
		{1024, "1KiB"},
		{1000, "1KB"},
		{1500, "1500B"},
		{1536, "1536B"},
		{10_000, "10KB"},
		{64 << 20, "64MiB"},
		{3 << 29, "1536MiB"},
		{1_500_000_000, "1500MB"},
		{1_024_000, "1024KB"},      // shorter than 1000KiB
		{1_000_000_000_000, "1TB"}, // not 976562500KiB
		{1 << 40, "1TiB"},
		{10_112_000, "9875KiB"}, // a tie with 10112KB: binary
		{1500 * KiB, "1536KB"},
		{2 << 50, "2PiB"},
		{2_000_000_000_000_000, "2PB"},
		{1 << 60, "1024PiB"},
		{math.MaxInt64, "9223372036854775807B"},
		{-1024, "-1KiB"},
		{-1, "-1B"},
		{math.MinInt64, "-8192PiB"},
	}
	for _, tt := range tests {
		if got := tt.in.String(); got != tt.want {
			t.Errorf("Size(%d).String() = %q, want %q", int64(tt.in), got, tt.want)
		}
	}
}

func TestSizeRoundTrip(t *testing.T) {
	for _, s := range []Size{0, 1, 999, 1000, 1001, 1024, 1025, 4096, 1 << 20, 1_000_000, 3 << 29, 1<<50 + 1, 7 * PiB, 9 * PB, math.MaxInt64, math.MaxInt64 - 1, math.MaxInt64 &^ (1<<50 - 1)} {
		got, err := ParseSize(s.String())
		if err != nil || got != s {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", s.String(), got, err, s)
		}
	}
}

func TestSizeText(t *testing.T) {
	type doc struct {
		Max Size `json:"max"`
	}
	b, err := json.Marshal(doc{Max: 64 * MiB})
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"max":"64MiB"}` {
		t.Errorf("json.Marshal = %s", b)
	}
	var d doc
	if err := json.Unmarshal([]byte(`{"max":"1.5GiB"}`), &d); err != nil {
		t.Fatal(err)
	}
	if d.Max != 1536*MiB {
		t.Errorf("json.Unmarshal: Max = %d", d.Max)
	}
	err = json.Unmarshal([]byte(`{"max":"1.5B"}`), &d)
	if err == nil || !strings.Contains(err.Error(), `invalid size "1.5B": not a whole number of bytes`) {
		t.Errorf("json.Unmarshal of 1.5B: %v", err)
	}
	if d.Max != 1536*MiB {
		t.Errorf("failed UnmarshalText changed the value to %d", d.Max)
	}
}
