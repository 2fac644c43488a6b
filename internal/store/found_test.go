package store

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestFoundBlockLifecycle: a found block is recorded pending (once, even
// when recorded twice), survives a reopen as pending, and once accepted
// is in the blocks list exactly once, also when the chain listed it
// first.
func TestFoundBlockLifecycle(t *testing.T) {
	ctx := context.Background()
	s, path := openTemp(t)
	a, b := testBlock(7), testBlock(8)
	for _, blk := range []Block{a, a, b} {
		if err := s.AddFoundBlock(ctx, blk); err != nil {
			t.Fatal(err)
		}
	}
	at := time.Unix(1700000000, 0)
	if err := s.SetFoundBlockState(ctx, a.Hash, FoundPending, "connection refused", at); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	pending, err := s.FoundBlocks(ctx, FoundPending)
	if err != nil || len(pending) != 2 {
		t.Fatalf("pending after reopen: %d blocks, err %v; want 2", len(pending), err)
	}
	if p := pending[0]; !sameBlock(p.Block, a) || p.Attempts != 1 || p.Reason != "connection refused" || !p.UpdatedAt.Equal(at) {
		t.Fatalf("pending block a: %+v", p)
	}
	// The embedded chain lists b itself before the coordinator settles it.
	if err := s.AddBlock(ctx, b); err != nil {
		t.Fatal(err)
	}
	for _, h := range []Block{a, b} {
		if err := s.SetFoundBlockState(ctx, h.Hash, FoundAccepted, "", at.Add(time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	blocks, err := s.Blocks(ctx, 0, 0)
	if err != nil || len(blocks) != 2 || !sameBlock(blocks[0], a) || !sameBlock(blocks[1], b) {
		t.Fatalf("blocks list %d blocks, err %v; want a and b once each", len(blocks), err)
	}
	fa, ok, err := s.FoundBlock(ctx, a.Hash)
	if err != nil || !ok || fa.State != FoundAccepted || fa.Attempts != 2 {
		t.Fatalf("found block a: %+v ok=%v err=%v", fa, ok, err)
	}
	if rest, _ := s.FoundBlocks(ctx, FoundPending); len(rest) != 0 {
		t.Fatalf("%d still pending", len(rest))
	}
}

func TestFoundBlockErrors(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	a := testBlock(3)
	if err := s.SetFoundBlockState(ctx, a.Hash, FoundAccepted, "", time.Now()); err == nil || !strings.Contains(err.Error(), "not recorded") {
		t.Fatalf("settling an unrecorded block: %v", err)
	}
	s.AddFoundBlock(ctx, a)
	if err := s.SetFoundBlockState(ctx, a.Hash, "lost", "", time.Now()); err == nil || !strings.Contains(err.Error(), `"lost"`) {
		t.Fatalf("unknown state: %v", err)
	}
	short := a
	short.Raw = short.Raw[:10]
	if err := s.AddFoundBlock(ctx, short); err == nil || !strings.Contains(err.Error(), "10 bytes") {
		t.Fatalf("short raw block: %v", err)
	}
	s.Close()
	if err := s.AddFoundBlock(ctx, a); !errors.Is(err, ErrClosed) {
		t.Fatalf("after close: %v", err)
	}
}

// TestFoundBlockOrphanedLeavesBlocksList: an accepted found block that
// becomes orphaned leaves the blocks list and keeps its attempt count (an
// orphaning is no submission); a reorg back to accepted lists it again,
// once, still without counting an attempt.
func TestFoundBlockOrphanedLeavesBlocksList(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	a, b := testBlock(5), testBlock(6)
	at := time.Unix(1700000000, 0)
	for _, blk := range []Block{a, b} {
		if err := s.AddFoundBlock(ctx, blk); err != nil {
			t.Fatal(err)
		}
		if err := s.SetFoundBlockState(ctx, blk.Hash, FoundAccepted, "", at); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SetFoundBlockState(ctx, a.Hash, FoundOrphaned, "a reorg replaced it", at.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	blocks, err := s.Blocks(ctx, 0, 0)
	if err != nil || len(blocks) != 1 || !sameBlock(blocks[0], b) {
		t.Fatalf("blocks list after orphaning a: %d blocks, err %v; want b only", len(blocks), err)
	}
	fa, ok, err := s.FoundBlock(ctx, a.Hash)
	if err != nil || !ok || fa.State != FoundOrphaned || fa.Attempts != 1 || fa.Reason != "a reorg replaced it" {
		t.Fatalf("found block a: %+v ok=%v err=%v; want orphaned after 1 attempt", fa, ok, err)
	}
	if orphaned, err := s.FoundBlocks(ctx, FoundOrphaned); err != nil || len(orphaned) != 1 || orphaned[0].Hash != a.Hash {
		t.Fatalf("orphaned blocks: %+v err %v; want a", orphaned, err)
	}
	if err := s.SetFoundBlockState(ctx, a.Hash, FoundAccepted, "", at.Add(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	blocks, err = s.Blocks(ctx, 0, 0)
	if err != nil || len(blocks) != 2 {
		t.Fatalf("blocks list after a's return: %d blocks, err %v; want 2", len(blocks), err)
	}
	if fa, _, _ := s.FoundBlock(ctx, a.Hash); fa.State != FoundAccepted || fa.Attempts != 1 {
		t.Fatalf("found block a after the reorg back: %+v; want accepted after 1 attempt", fa)
	}
}
