package sdk

import (
	"strconv"

	"github.com/datawarehouse/dw/sdk/v6/internal/contract"
)

// Version is the version of this SDK and of the plugin contract it speaks. A
// plugin reports the SDK version it was built with in GetInfo; a host
// accepts a plugin of the same major version whose minor is not newer than
// its own. The Go module's version is the same: sdk 6.1.0 is
// github.com/datawarehouse/dw/sdk/v6@v6.1.0.
const Version = "6.1.0"

// Test hooks, set with -ldflags "-X" only when building test plugins that
// must pretend to be built with another SDK or protocol. Empty means the real
// values above.
var (
	reportedSDKVersion      string
	reportedProtocolVersion string
)

func sdkVersionReported() string {
	if reportedSDKVersion != "" {
		return reportedSDKVersion
	}
	return Version
}

func protocolVersionServed() int {
	if reportedProtocolVersion != "" {
		if v, err := strconv.Atoi(reportedProtocolVersion); err == nil {
			return v
		}
	}
	return contract.ProtocolVersion
}
