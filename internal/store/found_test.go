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
