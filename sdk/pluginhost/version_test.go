package pluginhost

import (
	"strings"
	"testing"

	"github.com/datawarehouse/dw/sdk/v6"
)

func TestCompatible(t *testing.T) {
	tests := []struct {
		host, plugin string
		ok           bool
		want         string // substring of the error
	}{
		{"6.0.0", "6.0.0", true, ""},
		{"6.0.0", "6.0.9", true, ""},
		{"6.2.0", "6.1.5", true, ""},
		{"6.2.0", "6.2.0-rc.1", true, ""},
		{"6.0.0", "v6.0.0", true, ""},
		{"6.0.0", "6.1.0", false, "newer than this host"},
		{"6.0.0", "6.99.0", false, "accepts >= 6.0.0, < 6.1.0"},
		{"6.0.0", "7.0.0", false, "major version 7"},
		{"6.0.0", "5.9.9", false, "rebuild the plugin against sdk 6 (in its module: go get github.com/datawarehouse/dw/sdk/v6@v6.0.0"},
		{"6.1.0", "7.0.0", false, "go get github.com/datawarehouse/dw/sdk/v6@v6.1.0"},
		{"6.1.0", "6.2.0", false, "upgrade dw to a release with sdk 6.2 or newer, or rebuild the plugin against this host's sdk (in its module: go get github.com/datawarehouse/dw/sdk/v6@v6.1.0)"},
		{"6.0.0", "", false, "want MAJOR.MINOR.PATCH"},
		{"6.0.0", "6.0", false, "want MAJOR.MINOR.PATCH"},
		{"6.0.0", "6.x.0", false, `"x" is not a number`},
		{"6.0.0", "6.0.0.0", false, "want MAJOR.MINOR.PATCH"},
		{"6.0.0", "-1.0.0", false, "invalid version"},
		{"6.0.0", "6.0.99999999999", false, "is not a number"},
		{"bogus", "6.0.0", false, "host sdk version"},
	}
	for _, tt := range tests {
		err := Compatible(tt.host, tt.plugin)
		if tt.ok {
			if err != nil {
				t.Errorf("Compatible(%q, %q) = %v, want nil", tt.host, tt.plugin, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Compatible(%q, %q) = %v, want error containing %q", tt.host, tt.plugin, err, tt.want)
		}
	}
}

func TestVersionIsSixOne(t *testing.T) {
	v, err := ParseSemVer(sdk.Version)
	if err != nil || v.Major != 6 || v.String() != "6.1.0" {
		t.Fatalf("Version = %q (%v), want 6.1.0", sdk.Version, err)
	}
	if got := AcceptedRange(sdk.Version); got != ">= 6.0.0, < 6.2.0" {
		t.Fatalf("AcceptedRange = %q", got)
	}
	if got := GetCommand(sdk.Version); got != "go get "+ModulePath+"@v6.1.0" {
		t.Fatalf("GetCommand = %q", got)
	}
}

func FuzzParseSemVer(f *testing.F) {
	for _, s := range []string{"6.0.0", "v1.2.3-rc.1+b", "", "1..2", "999999999.0.0", "6.0.0-", "+", "1.2.3.4"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseSemVer(s)
		if err != nil {
			return
		}
		again, err := ParseSemVer(v.String())
		if err != nil || again != v {
			t.Fatalf("round trip of %q: %v -> %q -> %v (%v)", s, v, v.String(), again, err)
		}
		_ = Compatible(sdk.Version, s)
	})
}
