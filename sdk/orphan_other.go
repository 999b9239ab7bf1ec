//go:build !linux

package sdk

import (
	"os"
	"strconv"

	"github.com/hashicorp/go-hclog"

	"github.com/datawarehouse/dw/sdk/v6/internal/contract"
)

// watchHost polls the parent pid: on systems without PR_SET_PDEATHSIG and
// pidfd this is the only portable signal that the host is gone.
func watchHost(_ hclog.Logger, onGone func(reason string)) (stop func()) {
	hostPID := os.Getppid()
	if s := os.Getenv(contract.EnvHostPID); s != "" {
		if pid, err := strconv.Atoi(s); err == nil && pid > 0 {
			hostPID = pid
		}
	}
	done := make(chan struct{})
	fired := false
	go pollParent(hostPID, done, func(reason string) {
		if !fired {
			fired = true
			onGone(reason)
		}
	})
	return func() { close(done) }
}

// killOwnGroup does nothing here: the host starts plugins in their own
// process group on Linux only.
func killOwnGroup() {}
