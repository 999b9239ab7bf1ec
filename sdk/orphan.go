package sdk

import (
	"os"
	"strconv"
	"time"
)

// pollParent calls gone when the parent pid stops being hostPID (the
// process was re-parented because the host exited). It is the fallback of
// watchHost where nothing better is available.
func pollParent(hostPID int, done <-chan struct{}, gone func(string)) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			if os.Getppid() != hostPID {
				gone("host process " + strconv.Itoa(hostPID) + " exited")
				return
			}
		}
	}
}
