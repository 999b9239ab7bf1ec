package engine

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"

	"github.com/datawarehouse/dw/plugins/dataprotection/internal/repo"
)

// errStop: the caller's yield asked to stop.
var errStop = errors.New("stop")

// usedWalker enumerates the blobs below trees, each once. Trees and data
// have separate seen sets: a file chunk may have the very bytes (so the ID)
// of a tree, and must not hide that tree's children.
type usedWalker struct {
	r         *repo.Repo
	yield     func(repo.ID) bool
	seenTrees map[repo.ID]struct{}
	seenData  map[repo.ID]struct{}
}

func newUsedWalker(r *repo.Repo, yield func(repo.ID) bool) *usedWalker {
	return &usedWalker{r: r, yield: yield, seenTrees: map[repo.ID]struct{}{}, seenData: map[repo.ID]struct{}{}}
}

// data yields id if it is new; false means stop.
func (u *usedWalker) data(id repo.ID) bool {
	if _, ok := u.seenData[id]; ok {
		return true
	}
	u.seenData[id] = struct{}{}
	return u.yield(id)
}

func (u *usedWalker) tree(ctx context.Context, id repo.ID) error {
	if _, ok := u.seenTrees[id]; ok {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	u.seenTrees[id] = struct{}{}
	if !u.yield(id) {
		return errStop
	}
	t, err := loadTree(u.r, id)
	if err != nil {
		return err
	}
	return u.nodes(ctx, t.Nodes)
}

func (u *usedWalker) nodes(ctx context.Context, nodes []repo.Node) error {
	for i := range nodes {
		n := &nodes[i]
		for _, id := range n.Content {
			if !u.data(id) {
				return errStop
			}
		}
		if n.Subtree != nil {
			if err := u.tree(ctx, *n.Subtree); err != nil {
				return err
			}
		}
	}
	return nil
}

// Used enumerates the blobs referenced by snaps, trees and data, each once
// (yield returning false stops it). It loads every tree (each hash is
// checked); an unreadable tree is an error, since then the blobs below it
// are unknown and a prune must not go on. Memory: a set of the distinct
// blob IDs seen (about 100 bytes per blob: 1 GiB of 1 MiB chunks needs
// about 100 KiB).
func Used(ctx context.Context, r *repo.Repo, snaps []repo.Snapshot, yield func(repo.ID) bool) error {
	u := newUsedWalker(r, yield)
	for _, s := range snaps {
		if err := u.tree(ctx, s.Tree); err != nil {
			if errors.Is(err, errStop) {
				return nil
			}
			return fmt.Errorf("blobs of snapshot %s: %w", s.ID, err)
		}
	}
	return nil
}

// VerifyReport sums up a Verify.
type VerifyReport struct {
	Snapshots int64 // snapshots walked
	Trees     int64 // distinct tree blobs loaded
	DataBlobs int64 // distinct data blobs loaded
	DataBytes int64 // their plaintext bytes
	Problems  int64 // problems reported
}

type dataCheck struct {
	id    repo.ID
	where string
}

type verifier struct {
	r         *repo.Repo
	fn        func(string)
	mu        sync.Mutex // guards report and fn
	report    VerifyReport
	seenTrees map[repo.ID]struct{}
	seenData  map[repo.ID]struct{}
	checks    chan dataCheck
}

func (v *verifier) problem(format string, args ...any) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.report.Problems++
	if v.fn != nil {
		v.fn(fmt.Sprintf(format, args...))
	}
}

// Verify loads every blob of every snapshot's trees and files, each once,
// which checks its hash (and its decompression), and checks that trees are
// well formed. fn receives one line per problem ("snapshot ID: /path: what
// is wrong"); Verify goes on after a problem and returns an error only when
// it cannot go on (the snapshot list is unreadable, ctx is done). Data
// blobs are checked by GOMAXPROCS goroutines. Memory: a set of the distinct
// blob IDs seen, as for Used.
func Verify(ctx context.Context, r *repo.Repo, fn func(problem string)) (VerifyReport, error) {
	v := &verifier{r: r, fn: fn, seenTrees: map[repo.ID]struct{}{}, seenData: map[repo.ID]struct{}{},
		checks: make(chan dataCheck, 64)}
	// A manifest that cannot be read is a problem to report, not a
	// snapshot to skip silently.
	snaps, err := r.ScanSnapshots(func(name string, err error) {
		v.problem("snapshot manifest %s: %v", name, err)
	})
	if err != nil {
		return VerifyReport{}, fmt.Errorf("verify: list snapshots: %w", err)
	}
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() { v.work(ctx) })
	}
	err = nil
	for _, s := range snaps {
		v.report.Snapshots++
		if err = v.tree(ctx, s.Tree, "snapshot "+s.ID+": /"); err != nil {
			break
		}
	}
	close(v.checks)
	wg.Wait()
	if err != nil {
		return v.report, fmt.Errorf("verify: %w", err)
	}
	return v.report, nil
}

func (v *verifier) work(ctx context.Context) {
	var buf []byte
	for c := range v.checks {
		if ctx.Err() != nil {
			continue
		}
		data, err := v.r.Load(repo.DataBlob, c.id, buf)
		if err != nil {
			v.problem("%s: data blob %s: %v", c.where, c.id, err)
			continue
		}
		buf = data[:0]
		v.mu.Lock()
		v.report.DataBlobs++
		v.report.DataBytes += int64(len(data))
		v.mu.Unlock()
	}
}

// tree checks one tree and queues its data blobs; where is the folder's
// path ending in '/'.
func (v *verifier) tree(ctx context.Context, id repo.ID, where string) error {
	if _, ok := v.seenTrees[id]; ok {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	v.seenTrees[id] = struct{}{}
	t, err := loadTree(v.r, id)
	if err != nil {
		v.problem("%s: %v", where, err)
		return nil
	}
	v.mu.Lock()
	v.report.Trees++
	v.mu.Unlock()
	for i := range t.Nodes {
		n := &t.Nodes[i]
		for _, id := range n.Content {
			if _, ok := v.seenData[id]; ok {
				continue
			}
			v.seenData[id] = struct{}{}
			select {
			case v.checks <- dataCheck{id: id, where: where + n.Name}:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if n.Subtree != nil {
			if err := v.tree(ctx, *n.Subtree, where+n.Name+"/"); err != nil {
				return err
			}
		}
	}
	return nil
}
