package contract

import "testing"

func TestMethodNames(t *testing.T) {
	for _, tc := range []struct{ full, service, method string }{
		{"/dw.sdk.v1.ScalableSubsystem/ApplyLimits", "dw.sdk.v1.ScalableSubsystem", "ApplyLimits"},
		{"/grpc.health.v1.Health/Check", "grpc.health.v1.Health", "Check"},
		{"Put", "Put", "Put"},
	} {
		if got := Service(tc.full); got != tc.service {
			t.Errorf("Service(%q) = %q, want %q", tc.full, got, tc.service)
		}
		if got := ShortMethod(tc.full); got != tc.method {
			t.Errorf("ShortMethod(%q) = %q, want %q", tc.full, got, tc.method)
		}
	}
}

func TestShortFile(t *testing.T) {
	for in, want := range map[string]string{
		"/src/plugins/filesystem/internal/filestore/grpc.go": "filestore/grpc.go",
		"github.com/datawarehouse/dw/sdk/v6/server.go":       "sdk/v6/server.go",
		"example.com/foo/v2/main.go":                         "foo/v2/main.go",
		"v2/main.go":                                         "v2/main.go",
		"main.go":                                            "main.go",
	} {
		if got := shortFile(in); got != want {
			t.Errorf("shortFile(%q) = %q, want %q", in, got, want)
		}
	}
}
