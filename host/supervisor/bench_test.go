package supervisor

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/datawarehouse/dw/host/internal/testplugins"
)

// BenchmarkStartPlugins measures Start — discovery, hashing, spawn,
// AutoMTLS handshake, GetInfo, Configure (with the host KV) and
// ApplyLimits — until every plugin serves. Stop is not timed.
func BenchmarkStartPlugins(b *testing.B) {
	built := buildTestPlugins(b)
	for _, n := range []int{1, 5} {
		b.Run(fmt.Sprintf("plugins=%d", n), func(b *testing.B) {
			h := newHarness(b, nil, nil)
			for i := range n {
				testplugins.InstallAs(b, filepath.Join(built, "dw-plugin-good"), filepath.Join(h.dir, fmt.Sprintf("dw-plugin-good%d", i)))
			}
			for b.Loop() {
				m, err := NewManager(h.opts)
				if err != nil {
					b.Fatal(err)
				}
				if err := m.Start(context.Background()); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				for _, st := range m.Statuses() {
					if st.State != StateServing {
						b.Fatalf("%s: %s %s", st.Name, st.State, st.LastError)
					}
				}
				if err := m.Stop(context.Background()); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}

// BenchmarkRecoverKill9 measures the time from kill -9 of a serving plugin
// to it serving again (exit noticed, reaped, restarted after a 1ms
// backoff, handshaken, configured, limits applied).
func BenchmarkRecoverKill9(b *testing.B) {
	h := newHarness(b, []string{"good"}, func(o *Options) {
		o.Backoff = Backoff{Initial: time.Millisecond, Max: time.Millisecond, QuarantineAfter: 1 << 30, Window: time.Minute}
	})
	h.start()
	for b.Loop() {
		st := h.status("good")
		if err := syscall.Kill(st.PID, syscall.SIGKILL); err != nil {
			b.Fatal(err)
		}
		for {
			cur, _ := h.m.Status("good")
			if cur.State == StateServing && cur.PID != st.PID {
				break
			}
			time.Sleep(100 * time.Microsecond)
		}
	}
	_ = os.Stdout.Sync()
}
