//go:build !unix

package sdktest

import (
	"os"
	"os/exec"
	"time"
)

func setProcessGroup(*exec.Cmd) {}

func killGroup(int) {}

func signaled(*os.ProcessState) (os.Signal, bool) { return nil, false }

func leftInGroup(int, time.Duration) []int { return nil }
