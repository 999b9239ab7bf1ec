package supervisor

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/datawarehouse/dw/sdk/v6"
)

// Reconfigure restarts with new settings and limits, reports a plugin that
// does not serve with them, stops a disabled one, starts an enabled one,
// and handles subsystems without a binary.
func TestReconfigure(t *testing.T) {
	h := newHarness(t, []string{"good"}, func(o *Options) {
		o.Specs = map[string]Spec{"good": {Enabled: true, Settings: map[string]any{"color": "red"}, Limits: map[string]any{"max_items": 3}}}
		o.Generation = 1
	})
	h.start()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pid := h.status("good").PID

	spec := &Spec{Enabled: true, Settings: map[string]any{"color": "blue"}, Limits: map[string]any{"max_items": 7}}
	if err := h.m.Reconfigure(ctx, "good", spec, 2); err != nil {
		t.Fatal(err)
	}
	st := h.status("good")
	h.notePID(st.PID)
	if st.State != StateServing || st.PID == pid || st.Generation != 2 || st.Restarts != 0 {
		t.Fatalf("after reconfigure: %+v", st)
	}
	if l, gen, err := h.client("good").Limits(ctx); err != nil || l["max_items"] != int64(7) || gen != 2 {
		t.Fatalf("limits %v gen %d err %v", l, gen, err)
	}

	// Settings the plugin rejects: an error saying so; the plugin is
	// refused until it is reconfigured again.
	bad := &Spec{Enabled: true, Settings: map[string]any{"reject": "nope"}, Limits: map[string]any{"max_items": 7}}
	err := h.m.Reconfigure(ctx, "good", bad, 3)
	if !errors.Is(err, sdk.ErrUnavailable) || !strings.Contains(err.Error(), "subsystems.good.reject") {
		t.Fatalf("reconfigure with rejected settings: %v", err)
	}
	if st := h.status("good"); st.State != StateRefused {
		t.Fatalf("state %s", st.State)
	}
	if err := h.m.Reconfigure(ctx, "good", spec, 2); err != nil {
		t.Fatalf("reconfigure back: %v", err)
	}
	h.notePIDs()

	// Disable: the process stops; enable: it starts.
	pid = h.status("good").PID
	off := &Spec{Enabled: false, Settings: spec.Settings, Limits: spec.Limits}
	if err := h.m.Reconfigure(ctx, "good", off, 4); err != nil {
		t.Fatal(err)
	}
	if st := h.status("good"); st.State != StateDisabled || st.PID != 0 {
		t.Fatalf("disabled: %+v", st)
	}
	if !waitGone(pid, 10*time.Second) {
		t.Fatalf("pid %d still runs after disabling", pid)
	}
	if _, err := h.m.Client("good"); !errors.Is(err, sdk.ErrUnavailable) {
		t.Fatalf("client of a disabled plugin: %v", err)
	}
	if err := h.m.Reconfigure(ctx, "good", spec, 5); err != nil {
		t.Fatal(err)
	}
	if st := h.status("good"); st.State != StateServing || st.Generation != 5 {
		t.Fatalf("enabled again: %+v", st)
	}
	h.notePIDs()

	// No section any more: a drop-in with default limits and no settings.
	if err := h.m.Reconfigure(ctx, "good", nil, 6); err != nil {
		t.Fatal(err)
	}
	h.notePIDs()
	if l, _, err := h.client("good").Limits(ctx); err != nil || l["max_items"] != int64(100) {
		t.Fatalf("limits without a section: %v %v", l, err)
	}

	// No binary: missing, then forgotten.
	if err := h.m.Reconfigure(ctx, "ghost", &Spec{Enabled: true}, 6); err != nil {
		t.Fatal(err)
	}
	if st := h.status("ghost"); st.State != StateMissing {
		t.Fatalf("ghost: %+v", st)
	}
	if err := h.m.Reconfigure(ctx, "ghost", nil, 6); err != nil {
		t.Fatal(err)
	}
	if _, ok := h.m.Status("ghost"); ok {
		t.Fatal("ghost still listed")
	}
	if err := h.m.Reconfigure(ctx, "Bad Name", nil, 6); err == nil {
		t.Fatal("reconfigure accepted a bad name")
	}
}

// SetGeneration moves every plugin to a generation without calling them;
// UpdateSpec records a section for the next start without restarting.
func TestSetGenerationAndUpdateSpec(t *testing.T) {
	h := newHarness(t, []string{"good"}, func(o *Options) {
		o.Specs = map[string]Spec{"good": {Enabled: true}, "off": {Enabled: false}}
		o.Generation = 1
	})
	h.start()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	h.m.SetGeneration(5)
	if st := h.status("good"); st.Generation != 5 {
		t.Fatalf("generation %d", st.Generation)
	}
	if _, gen, _ := h.client("good").Limits(ctx); gen != 1 {
		t.Fatalf("the plugin was called: its limits generation is %d", gen)
	}

	pid := h.status("good").PID
	if err := h.m.UpdateSpec("good", &Spec{Enabled: true, Settings: map[string]any{"reject": "later"}}); err != nil {
		t.Fatal(err)
	}
	if st := h.status("good"); st.PID != pid || st.State != StateServing {
		t.Fatalf("UpdateSpec touched the process: %+v", st)
	}
	// The next start uses the recorded settings (and generation 5).
	if err := h.m.Restart(ctx, "good"); err == nil || !strings.Contains(err.Error(), "later") {
		t.Fatalf("restart after UpdateSpec: %v", err)
	}
	if err := h.m.UpdateSpec("good", &Spec{Enabled: true}); err != nil {
		t.Fatal(err)
	}
	if err := h.m.Restart(ctx, "good"); err != nil {
		t.Fatal(err)
	}
	h.notePIDs()
	if _, gen, _ := h.client("good").Limits(ctx); gen != 5 {
		t.Fatalf("restarted plugin got generation %d, want 5", gen)
	}

	// Sections of subsystems without a binary.
	if err := h.m.UpdateSpec("newone", &Spec{Enabled: true}); err != nil {
		t.Fatal(err)
	}
	if st := h.status("newone"); st.State != StateMissing {
		t.Fatalf("newone: %+v", st)
	}
	if err := h.m.UpdateSpec("off", nil); err != nil {
		t.Fatal(err)
	}
	if _, ok := h.m.Status("off"); ok {
		t.Fatal("off still listed after its section was removed")
	}
}

// SetLiveOptions checks its input and applies to the next start.
func TestSetLiveOptions(t *testing.T) {
	h := newHarness(t, []string{"good"}, nil)
	h.start()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	before := h.m.LiveOptions()
	if err := h.m.SetLiveOptions(LiveOptions{Checksums: map[string]string{"dw-plugin-good": "xyz"}}); err == nil {
		t.Fatal("accepted a bad checksum")
	}
	if err := h.m.SetLiveOptions(LiveOptions{StartTimeout: -time.Second}); err == nil {
		t.Fatal("accepted a negative start timeout")
	}
	if got := h.m.LiveOptions(); got.StartTimeout != before.StartTimeout || len(got.Checksums) != 0 {
		t.Fatalf("a refused SetLiveOptions changed the options: %+v", got)
	}
	wrong := strings.Repeat("ab", 32)
	if err := h.m.SetLiveOptions(LiveOptions{StartTimeout: 5 * time.Second, Checksums: map[string]string{"dw-plugin-good": strings.ToUpper(wrong)}, LogLevel: "warn"}); err != nil {
		t.Fatal(err)
	}
	if got := h.m.LiveOptions(); got.StartTimeout != 5*time.Second || got.Checksums["dw-plugin-good"] != wrong || got.LogLevel != "warn" {
		t.Fatalf("options %+v", got)
	}
	h.notePIDs()
	if err := h.m.Restart(ctx, "good"); err == nil || !strings.Contains(err.Error(), "checksum mismatch") {
		t.Fatalf("restart with a wrong pin: %v", err)
	}
	if err := h.m.SetLiveOptions(LiveOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := h.m.Restart(ctx, "good"); err != nil {
		t.Fatal(err)
	}
	h.notePIDs()
}
