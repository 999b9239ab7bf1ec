package sdk

import (
	"os/exec"
	"strings"
	"testing"
)

// allowedDeps are the only non-standard import path prefixes the SDK (and
// sdktest) may pull in: go-plugin, hclog, grpc, protobuf and what they need
// themselves. A plugin author's binary must not drag in the host's
// libraries.
var allowedDeps = []string{
	"github.com/datawarehouse/dw/sdk/v6",
	"github.com/hashicorp/go-plugin",
	"github.com/hashicorp/go-hclog",
	"github.com/hashicorp/yamux",
	"github.com/oklog/run",
	"github.com/fatih/color",
	"github.com/mattn/go-colorable",
	"github.com/mattn/go-isatty",
	"github.com/golang/protobuf",
	"google.golang.org/grpc",
	"google.golang.org/protobuf",
	"google.golang.org/genproto/googleapis/rpc",
	"golang.org/x/net",
	"golang.org/x/sys",
	"golang.org/x/text",
}

func TestSDKImportGraphIsLean(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", "./...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	var checked int
	for _, dep := range strings.Fields(string(out)) {
		checked++
		ok := false
		for _, prefix := range allowedDeps {
			if dep == prefix || strings.HasPrefix(dep, prefix+"/") {
				ok = true
				break
			}
		}
		if !ok {
			t.Errorf("sdk/... imports %s: the SDK may only depend on go-plugin, grpc, protobuf and hclog (host/, config/, plugins/ and their libraries are off limits)", dep)
		}
	}
	if checked < 10 {
		t.Fatalf("go list returned only %d packages; the check is not looking at the SDK", checked)
	}
}
