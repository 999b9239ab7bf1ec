package retention

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/datawarehouse/dw/sdk/v6"
)

var day0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func day(n int) time.Time { return day0.Add(time.Duration(n) * 24 * time.Hour) }

// chain returns the snapshots of source src described by kinds ("F" full,
// "I" incremental), one a day from day 1: ids src+"1", src+"2"…, each
// incremental's parent the one before it, chains started by each full.
func chain(src, kinds string) []Snapshot {
	var out []Snapshot
	var parent, start string
	for i, k := range kinds {
		id := fmt.Sprintf("%s%d", src, i+1)
		s := Snapshot{ID: id, Source: src, CompletedAt: day(i + 1)}
		if k == 'F' {
			s.Kind, start = "full", id
		} else {
			s.Kind, s.Parent = "incremental", parent
		}
		s.Chain = start
		out = append(out, s)
		parent = id
	}
	return out
}

func ids(fs []Forgotten) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = f.ID
	}
	return out
}

func TestDecide(t *testing.T) {
	// f1 f2 f3 are a chain (full, inc, inc), f4 f5 another; g has its own.
	files := chain("f", "FIIFI")
	two := append(chain("f", "FIIFI"), chain("g", "FII")...)
	tests := []struct {
		name        string
		snaps       []Snapshot
		policy      Policy
		now         time.Time
		wantForget  []string
		wantReasons []string
		wantRebase  []Rebase
	}{
		{name: "empty input", snaps: nil, policy: Policy{KeepLast: 2}},
		{name: "no rule keeps everything", snaps: files, policy: Policy{}, now: day(100)},
		{
			name: "keep_last drops whole old chains", snaps: files, policy: Policy{KeepLast: 2},
			wantForget:  []string{"f1", "f2", "f3"},
			wantReasons: []string{"beyond keep_last 2", "beyond keep_last 2", "beyond keep_last 2"},
		},
		{
			name: "keep_last cutting a chain re-bases its oldest kept member", snaps: files, policy: Policy{KeepLast: 3},
			wantForget: []string{"f1", "f2"},
			wantRebase: []Rebase{{ID: "f3", Parent: "f2", NewParent: "", Chain: "f1", NewChain: "f3"}},
		},
		{
			name: "keep_within alone, the window's edge included", snaps: files, policy: Policy{KeepWithin: 48 * time.Hour}, now: day(5),
			wantForget:  []string{"f1", "f2"},
			wantReasons: []string{"older than keep_within 48h", "older than keep_within 48h"},
			wantRebase:  []Rebase{{ID: "f3", Parent: "f2", NewParent: "", Chain: "f1", NewChain: "f3"}},
		},
		{
			name: "union: keep_within keeps more than keep_last", snaps: files, policy: Policy{KeepLast: 1, KeepWithin: 48 * time.Hour}, now: day(5),
			wantForget:  []string{"f1", "f2"},
			wantReasons: []string{"beyond keep_last 1 and older than keep_within 48h", "beyond keep_last 1 and older than keep_within 48h"},
			wantRebase:  []Rebase{{ID: "f3", Parent: "f2", NewParent: "", Chain: "f1", NewChain: "f3"}},
		},
		{
			name: "union: keep_last keeps more than keep_within", snaps: files, policy: Policy{KeepLast: 4, KeepWithin: 24 * time.Hour}, now: day(5),
			wantForget: []string{"f1"},
			wantRebase: []Rebase{
				{ID: "f2", Parent: "f1", NewParent: "", Chain: "f1", NewChain: "f2"},
				{ID: "f3", Parent: "f2", NewParent: "f2", Chain: "f1", NewChain: "f2"},
			},
		},
		{
			name: "per source", snaps: two, policy: Policy{KeepLast: 1},
			wantForget: []string{"f1", "g1", "f2", "g2", "f3", "f4"},
			wantRebase: []Rebase{
				{ID: "g3", Parent: "g2", NewParent: "", Chain: "g1", NewChain: "g3"},
				{ID: "f5", Parent: "f4", NewParent: "", Chain: "f4", NewChain: "f5"},
			},
		},
		{
			name: "the newest of a source stays past keep_within", snaps: two, policy: Policy{KeepWithin: 24 * time.Hour}, now: day(5),
			wantForget: []string{"f1", "g1", "f2", "g2", "f3"},
			wantRebase: []Rebase{{ID: "g3", Parent: "g2", NewParent: "", Chain: "g1", NewChain: "g3"}},
		},
		{
			name: "keep_within with snapshots from a clock ahead", snaps: files, policy: Policy{KeepWithin: time.Hour}, now: day(0),
		},
		{
			name: "keep_last larger than the history", snaps: files, policy: Policy{KeepLast: 50},
		},
		{
			// The decode refuses negatives; Decide reads them as 0.
			name: "negative values are no bound", snaps: files, now: day(100),
			policy: Policy{KeepLast: -1, KeepWithin: -time.Second, MaxTotalBytes: -1},
		},
		{
			name: "negative keep_last leaves keep_within alone", snaps: files, policy: Policy{KeepLast: -1, KeepWithin: 48 * time.Hour}, now: day(5),
			wantForget:  []string{"f1", "f2"},
			wantReasons: []string{"older than keep_within 48h", "older than keep_within 48h"},
			wantRebase:  []Rebase{{ID: "f3", Parent: "f2", NewParent: "", Chain: "f1", NewChain: "f3"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan, err := Decide(tt.snaps, tt.policy, tt.now, nil)
			if err != nil {
				t.Fatalf("Decide: %v", err)
			}
			if got := ids(plan.Forget); !slices.Equal(got, tt.wantForget) {
				t.Errorf("forget %q, want %q", got, tt.wantForget)
			}
			for i, want := range tt.wantReasons {
				if got := plan.Forget[i].Reason; got != want {
					t.Errorf("reason of %s = %q, want %q", plan.Forget[i].ID, got, want)
				}
			}
			if !slices.Equal(plan.Rebase, tt.wantRebase) {
				t.Errorf("rebase %+v, want %+v", plan.Rebase, tt.wantRebase)
			}
			if plan.Kept != len(tt.snaps)-len(tt.wantForget) || plan.Sized || plan.Unmet != "" {
				t.Errorf("plan = %+v", plan)
			}
		})
	}
}

func TestForget(t *testing.T) {
	files := chain("f", "FIIFI")
	tests := []struct {
		name       string
		id         string
		wantRebase []Rebase
	}{
		{name: "middle incremental: its child takes its parent", id: "f2",
			wantRebase: []Rebase{{ID: "f3", Parent: "f2", NewParent: "f1", Chain: "f1", NewChain: "f1"}}},
		{name: "full with incrementals: the first starts the chain", id: "f1",
			wantRebase: []Rebase{
				{ID: "f2", Parent: "f1", NewParent: "", Chain: "f1", NewChain: "f2"},
				{ID: "f3", Parent: "f2", NewParent: "f2", Chain: "f1", NewChain: "f2"},
			}},
		{name: "last of a chain: nothing to re-base", id: "f3"},
		{name: "the newest of the source", id: "f5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan, err := Forget(files, tt.id, nil)
			if err != nil {
				t.Fatalf("Forget(%s): %v", tt.id, err)
			}
			if got := ids(plan.Forget); !slices.Equal(got, []string{tt.id}) || plan.Kept != 4 {
				t.Errorf("forget %q, kept %d; want [%s], 4", got, plan.Kept, tt.id)
			}
			if !slices.Equal(plan.Rebase, tt.wantRebase) {
				t.Errorf("rebase %+v, want %+v", plan.Rebase, tt.wantRebase)
			}
		})
	}
	if _, err := Forget(files, "nope", nil); !errors.Is(err, sdk.ErrNotFound) || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("Forget of an unknown id: %v, want ErrNotFound naming it", err)
	}
}

func TestRebaseDamagedChains(t *testing.T) {
	// A parent cycle (c1 <-> c2) and a parent that is not listed.
	snaps := []Snapshot{
		{ID: "c1", Source: "s", Kind: "incremental", Parent: "c2", Chain: "c1", CompletedAt: day(1)},
		{ID: "c2", Source: "s", Kind: "incremental", Parent: "c1", Chain: "c1", CompletedAt: day(2)},
		{ID: "c3", Source: "s", Kind: "incremental", Parent: "c2", Chain: "c1", CompletedAt: day(3)},
		{ID: "d1", Source: "s", Kind: "incremental", Parent: "gone-earlier", Chain: "gone-earlier", CompletedAt: day(4)},
	}
	plan, err := Decide(snaps, Policy{KeepLast: 2}, day(10), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []Rebase{{ID: "c3", Parent: "c2", NewParent: "", Chain: "c1", NewChain: "c3"}}
	if !slices.Equal(plan.Rebase, want) {
		t.Fatalf("rebase %+v, want %+v", plan.Rebase, want)
	}
}

func TestDecideRefuses(t *testing.T) {
	files := chain("f", "FI")
	tests := []struct {
		name   string
		snaps  []Snapshot
		policy Policy
		u      *Usage
		want   string
		is     error
	}{
		{name: "size bound without usage", snaps: files, policy: Policy{MaxTotalBytes: 1}, want: "max_total_bytes needs the blobs"},
		{name: "repeated id", snaps: append(files, files[0]), want: "snapshot id f1 appears twice"},
		{name: "empty id", snaps: []Snapshot{{Source: "x"}}, want: `a snapshot of source "x" has no id`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decide(tt.snaps, tt.policy, day(3), tt.u)
			if err == nil || !strings.Contains(err.Error(), tt.want) || (tt.is != nil && !errors.Is(err, tt.is)) {
				t.Fatalf("Decide = %v, want an error containing %q (is %v)", err, tt.want, tt.is)
			}
		})
	}
	if _, err := Forget(append(files, files[1]), "f1", nil); err == nil || !strings.Contains(err.Error(), "appears twice") {
		t.Fatalf("Forget over repeated ids: %v", err)
	}
}

// blob names a test blob.
func blob(name string) BlobID { return BlobID(sha256.Sum256([]byte(name))) }

// flat fills u the way engine.Used does: every blob of a snapshot used
// directly. uses maps snapshot id to blob names; sizes gives each name's
// size.
func flat(u *Usage, uses map[string][]string, sizes map[string]int64) *Usage {
	for s, names := range uses {
		for _, n := range names {
			u.Uses(s, blob(n))
			u.Blob(blob(n), sizes[n], nil)
		}
	}
	return u
}

func TestDecideSizes(t *testing.T) {
	files := chain("f", "FIIFI")
	sizes := map[string]int64{"base": 1000, "u1": 100, "u2": 100, "u3": 100, "u4": 100, "u5": 100, "p12": 10, "g": 7}
	// base: everyone; uN: only fN; p12: f1 and f2.
	uses := map[string][]string{
		"f1": {"base", "u1", "p12"}, "f2": {"base", "u2", "p12"}, "f3": {"base", "u3"},
		"f4": {"base", "u4"}, "f5": {"base", "u5"},
	}
	tests := []struct {
		name       string
		snaps      []Snapshot
		uses       map[string][]string
		policy     Policy
		wantForget []string
		wantFrees  []int64
		wantAfter  int64
		wantUnmet  bool
		wantReason string // of the last forgotten
	}{
		{
			name: "a blob shared with a kept snapshot frees nothing", snaps: files, uses: uses, policy: Policy{KeepLast: 4},
			wantForget: []string{"f1"}, wantFrees: []int64{100}, wantAfter: 1410,
		},
		{
			name: "the second drop frees what the pair shared", snaps: files, uses: uses, policy: Policy{KeepLast: 3},
			wantForget: []string{"f1", "f2"}, wantFrees: []int64{100, 110}, wantAfter: 1300,
		},
		{
			name: "max_total_bytes drops the oldest until it fits", snaps: files, uses: uses, policy: Policy{MaxTotalBytes: 1300},
			wantForget: []string{"f1", "f2"}, wantFrees: []int64{100, 110}, wantAfter: 1300,
			wantReason: "over max_total_bytes 1300 bytes (1.3 KiB): frees 110 bytes",
		},
		{
			name: "already within max_total_bytes", snaps: files, uses: uses, policy: Policy{MaxTotalBytes: 1510},
			wantAfter: 1510,
		},
		{
			name: "keep rules first, then size", snaps: files, uses: uses, policy: Policy{KeepLast: 4, MaxTotalBytes: 1250},
			wantForget: []string{"f1", "f2", "f3"}, wantFrees: []int64{100, 110, 100}, wantAfter: 1200,
		},
		{
			name: "cannot fit: all but the newest go, and the plan says so", snaps: files, uses: uses, policy: Policy{MaxTotalBytes: 500},
			wantForget: []string{"f1", "f2", "f3", "f4"}, wantFrees: []int64{100, 110, 100, 100}, wantAfter: 1100, wantUnmet: true,
		},
		{
			// f1 and f2 use only base, which f3 keeps: forgetting them
			// frees nothing, so they stay.
			name: "cannot fit: drops that free nothing are not made", snaps: chain("f", "FII"),
			uses:   map[string][]string{"f1": {"base"}, "f2": {"base"}, "f3": {"base"}},
			policy: Policy{MaxTotalBytes: 10}, wantAfter: 1000, wantUnmet: true,
		},
		{
			name: "the newest of every source stays", snaps: append(chain("f", "FIIFI"), chain("g", "F")...),
			uses: map[string][]string{
				"f1": {"base", "u1", "p12"}, "f2": {"base", "u2", "p12"}, "f3": {"base", "u3"},
				"f4": {"base", "u4"}, "f5": {"base", "u5"}, "g1": {"g"},
			},
			policy:     Policy{MaxTotalBytes: 1},
			wantForget: []string{"f1", "f2", "f3", "f4"}, wantFrees: []int64{100, 110, 100, 100}, wantAfter: 1107, wantUnmet: true,
		},
		{
			name: "a snapshot the list lacks keeps its blobs", snaps: files[1:],
			uses: uses, policy: Policy{KeepLast: 3},
			wantForget: []string{"f2"}, wantFrees: []int64{100}, wantAfter: 1410,
		},
		{name: "empty", snaps: nil, uses: nil, policy: Policy{MaxTotalBytes: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := flat(NewUsage(), tt.uses, sizes)
			plan, err := Decide(tt.snaps, tt.policy, day(10), u)
			if err != nil {
				t.Fatalf("Decide: %v", err)
			}
			if got := ids(plan.Forget); !slices.Equal(got, tt.wantForget) {
				t.Fatalf("forget %q, want %q", got, tt.wantForget)
			}
			var frees []int64
			for _, f := range plan.Forget {
				frees = append(frees, f.Frees)
			}
			if !slices.Equal(frees, tt.wantFrees) {
				t.Errorf("frees %v, want %v", frees, tt.wantFrees)
			}
			if !plan.Sized || plan.BytesAfter != tt.wantAfter || plan.BytesFreed != plan.BytesBefore-plan.BytesAfter {
				t.Errorf("bytes before %d after %d freed %d (sized %v); want after %d",
					plan.BytesBefore, plan.BytesAfter, plan.BytesFreed, plan.Sized, tt.wantAfter)
			}
			if (plan.Unmet != "") != tt.wantUnmet {
				t.Errorf("unmet %q, want unmet %v", plan.Unmet, tt.wantUnmet)
			}
			if tt.wantReason != "" {
				if got := plan.Forget[len(plan.Forget)-1].Reason; got != tt.wantReason {
					t.Errorf("reason %q, want %q", got, tt.wantReason)
				}
			}
		})
	}
}

// TestTreeUsage fills Usage with trees: a subtree shared by two snapshots
// is freed only when both go.
func TestTreeUsage(t *testing.T) {
	snaps := chain("f", "FI")
	u := NewUsage()
	// f1: root r1 -> shared dir T (d1, d2) and d3; f2: root r2 -> T and d4.
	u.Uses("f1", blob("r1"))
	u.Uses("f2", blob("r2"))
	u.Blob(blob("r1"), 5, []BlobID{blob("T"), blob("d3")})
	u.Blob(blob("r2"), 6, []BlobID{blob("T"), blob("d4")})
	u.Blob(blob("T"), 7, []BlobID{blob("d1"), blob("d2")})
	u.Blob(blob("T"), 999, nil) // a second record is ignored
	for name, size := range map[string]int64{"d1": 100, "d2": 200, "d3": 400, "d4": 800} {
		u.Blob(blob(name), size, nil)
	}
	if u.Blobs() != 7 {
		t.Fatalf("%d blobs recorded, want 7", u.Blobs())
	}
	plan, err := Forget(snaps, "f1", u)
	if err != nil {
		t.Fatal(err)
	}
	if plan.BytesBefore != 1518 || plan.BytesFreed != 405 || plan.Forget[0].Frees != 405 {
		t.Fatalf("before %d freed %d (frees %d), want 1518, 405", plan.BytesBefore, plan.BytesFreed, plan.Forget[0].Frees)
	}
	plan, err = Decide(snaps, Policy{MaxTotalBytes: 1}, day(3), u)
	if err != nil {
		t.Fatal(err)
	}
	if plan.BytesAfter != 1113 || plan.Unmet == "" {
		t.Fatalf("after %d unmet %q, want 1113 and unmet", plan.BytesAfter, plan.Unmet)
	}
}

// TestSizesAgainstSets checks the graph computation against plain set
// unions over random snapshots, blobs and policies: every drop's Frees is
// the union's shrinkage, and a size drop is made only while over the bound.
func TestSizesAgainstSets(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 300 {
		nBlobs := 1 + rng.IntN(30)
		sizes := map[string]int64{}
		for b := range nBlobs {
			sizes[fmt.Sprint("b", b)] = int64(rng.IntN(1000))
		}
		var snaps []Snapshot
		for _, src := range []string{"a", "b", "c"}[:1+rng.IntN(3)] {
			kinds := []byte(strings.Repeat("I", 1+rng.IntN(8)))
			for i := range kinds {
				if rng.IntN(3) == 0 || i == 0 {
					kinds[i] = 'F'
				}
			}
			snaps = append(snaps, chain(src, string(kinds))...)
		}
		uses := map[string][]string{}
		for _, s := range snaps {
			for range rng.IntN(12) {
				uses[s.ID] = append(uses[s.ID], fmt.Sprint("b", rng.IntN(nBlobs)))
			}
		}
		p := Policy{KeepLast: rng.IntN(4), MaxTotalBytes: int64(rng.IntN(8000))}
		if rng.IntN(2) == 0 {
			p.KeepWithin = time.Duration(rng.IntN(6*24)) * time.Hour
		}
		plan, err := Decide(snaps, p, day(8), flat(NewUsage(), uses, sizes))
		if err != nil {
			t.Fatal(err)
		}
		size := func(gone map[string]bool) int64 {
			set := map[string]bool{}
			for _, s := range snaps {
				if !gone[s.ID] {
					for _, b := range uses[s.ID] {
						set[b] = true
					}
				}
			}
			var n int64
			for b := range set {
				n += sizes[b]
			}
			return n
		}
		gone := map[string]bool{}
		if got := size(gone); got != plan.BytesBefore {
			t.Fatalf("round %d: before %d, sets say %d", round, plan.BytesBefore, got)
		}
		for _, f := range plan.Forget {
			was := size(gone)
			if strings.HasPrefix(f.Reason, "over max_total_bytes") && was <= p.MaxTotalBytes {
				t.Fatalf("round %d: %s dropped for size at %d bytes, within %d", round, f.ID, was, p.MaxTotalBytes)
			}
			gone[f.ID] = true
			if got := was - size(gone); got != f.Frees {
				t.Fatalf("round %d: forgetting %s frees %d, sets say %d", round, f.ID, f.Frees, got)
			}
		}
		if got := size(gone); got != plan.BytesAfter {
			t.Fatalf("round %d: after %d, sets say %d", round, plan.BytesAfter, got)
		}
		if p.MaxTotalBytes > 0 && (plan.BytesAfter > p.MaxTotalBytes) != (plan.Unmet != "") {
			t.Fatalf("round %d: after %d, bound %d, unmet %q", round, plan.BytesAfter, p.MaxTotalBytes, plan.Unmet)
		}
		newest := map[string]Snapshot{}
		for _, s := range snaps {
			if s.CompletedAt.After(newest[s.Source].CompletedAt) {
				newest[s.Source] = s
			}
		}
		for _, s := range newest {
			if gone[s.ID] {
				t.Fatalf("round %d: the newest of %s, %s, was forgotten", round, s.Source, s.ID)
			}
		}
	}
}

func TestTexts(t *testing.T) {
	for d, want := range map[time.Duration]string{
		720 * time.Hour: "720h", 90 * time.Minute: "1h30m", 90 * time.Second: "1m30s", time.Hour + time.Second: "1h0m1s",
	} {
		if got := durationText(d); got != want {
			t.Errorf("durationText(%v) = %q, want %q", d, got, want)
		}
	}
	for b, want := range map[int64]string{
		0: "0 bytes", 1023: "1023 bytes", 1024: "1024 bytes (1.0 KiB)", 1 << 20: "1048576 bytes (1.0 MiB)",
		3 << 30: "3221225472 bytes (3.0 GiB)", 1<<63 - 1: "9223372036854775807 bytes (8.0 EiB)",
	} {
		if got := bytesText(b); got != want {
			t.Errorf("bytesText(%d) = %q, want %q", b, got, want)
		}
	}
}
