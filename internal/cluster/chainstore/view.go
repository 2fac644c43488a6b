package chainstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/cluster/bus"
	"github.com/powcoord/powcoord/internal/ledger"
)

// View is a read-only copy of the chain in CHAIN, kept in memory: each
// read first fetches the messages appended since the previous read (one
// stream info request when nothing was), so reading the chain often
// costs about the new blocks, not the whole stream. Any coordinator,
// active or standby, can keep one (a cluster coordinator's GET
// /api/blocks and /api/status). It implements web.BlockReader. Safe for
// concurrent use.
type View struct {
	js     jetstream.JetStream
	stream string

	mu     sync.Mutex
	next   uint64         // first stream sequence not read yet
	blocks []ledger.Block // read so far, by height; appended to, never changed in place
}

// NewView returns an empty View of CHAIN; its first read loads the chain.
func NewView(js jetstream.JetStream) *View {
	return &View{js: js, stream: bus.StreamChain}
}

// refresh reads the messages appended since the last read and returns
// every block read so far, by height. The slice is the caller's to read,
// not to change.
func (v *View) refresh(ctx context.Context) ([]ledger.Block, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	st, err := v.js.Stream(ctx, v.stream)
	if err != nil {
		return nil, fmt.Errorf("chainstore: stream %s: %w", v.stream, err)
	}
	state := st.CachedInfo().State
	if state.LastSeq+1 < v.next {
		// The stream is shorter than what was read: it was deleted
		// and made again. Read it anew.
		v.next, v.blocks = 0, nil
	}
	if v.next < state.FirstSeq {
		v.next = state.FirstSeq
	}
	blocks := v.blocks
	sorted := true
	for ; v.next <= state.LastSeq && state.Msgs > 0; v.next++ {
		m, err := st.GetMsg(ctx, v.next)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err == nil {
			var kind string
			var b ledger.Block
			if kind, b, err = decode(v.stream, m); err == nil && kind == kindBlock {
				if n := len(blocks); n > 0 && b.Height < blocks[n-1].Height {
					sorted = false
				}
				blocks = append(blocks, b)
			}
		}
		if err != nil {
			if !sorted {
				blocks = sortedCopy(blocks)
			}
			v.blocks = blocks
			return nil, fmt.Errorf("chainstore: stream %s message %d: %w", v.stream, v.next, err)
		}
	}
	if !sorted {
		blocks = sortedCopy(blocks)
	}
	v.blocks = blocks
	return blocks[:len(blocks):len(blocks)], nil
}

// sortedCopy returns blocks sorted by height in a new array, so that
// slices handed out before keep their order.
func sortedCopy(blocks []ledger.Block) []ledger.Block {
	c := slices.Clone(blocks)
	slices.SortStableFunc(c, func(a, b ledger.Block) int { return cmp.Compare(a.Height, b.Height) })
	return c
}

// Blocks returns the blocks with height >= fromHeight, oldest first, at
// most limit (<= 0: all).
func (v *View) Blocks(ctx context.Context, fromHeight int64, limit int) ([]ledger.Block, error) {
	all, err := v.refresh(ctx)
	if err != nil {
		return nil, err
	}
	i, _ := slices.BinarySearchFunc(all, fromHeight, func(b ledger.Block, h int64) int { return cmp.Compare(b.Height, h) })
	out := all[i:]
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// LastBlocks returns the newest n blocks, oldest first.
func (v *View) LastBlocks(ctx context.Context, n int) ([]ledger.Block, error) {
	all, err := v.refresh(ctx)
	if err != nil || n <= 0 {
		return nil, err
	}
	return all[max(0, len(all)-n):], nil
}

// Tip returns the newest block (false when the chain has none yet).
func (v *View) Tip(ctx context.Context) (ledger.Block, bool, error) {
	all, err := v.refresh(ctx)
	if err != nil || len(all) == 0 {
		return ledger.Block{}, false, err
	}
	return all[len(all)-1], true, nil
}

// InBestChain reports whether hash is the block at height in CHAIN
// (work.ChainLookup).
func (v *View) InBestChain(ctx context.Context, hash chainmath.Hash, height int64) (bool, error) {
	blocks, err := v.Blocks(ctx, height, 1)
	if err != nil {
		return false, err
	}
	return len(blocks) == 1 && blocks[0].Height == height && blocks[0].Hash == hash, nil
}
