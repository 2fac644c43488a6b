// Package chainstore keeps the embedded chain of a powcoord cluster in the
// JetStream stream CHAIN, so that every coordinator can read it and only
// the elected one can extend it.
//
// A Store implements simchain.BlockStore. Its writes go through a
// bus.Appender: every append names the stream's last sequence as the
// writer saw it, and the stream refuses it once anyone else has appended.
// When a new leader claims the stream (bus.Claim appends its term marker),
// every append of the old leader fails with bus.ErrFenced, so two
// coordinators can never both extend the chain: the chain in the stream is
// one linear history, and a deposed leader's Submit fails instead of
// forking it.
//
// # Messages on CHAIN (subject powcoord.chain.main)
//   - a term marker (header Powcoord-Kind: term), written by bus.Claim;
//     skipped by readers;
//   - a setting (Powcoord-Kind: meta, Powcoord-Meta-Key: the key; data: the
//     value); the last one of a key wins;
//   - a block (no Powcoord-Kind header; data: the JSON encoding of
//     ledger.Block, raw block and header as base64; Nats-Msg-Id: the block
//     hash in hex).
package chainstore

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/powcoord/powcoord/internal/cluster/bus"
	"github.com/powcoord/powcoord/internal/ledger"
)

// Subject is the subject of every message of the chain on CHAIN.
const Subject = bus.SubjectChain + ".main"

// Header names on CHAIN messages besides bus's.
const (
	HeaderMetaKey = "Powcoord-Meta-Key"
	kindMeta      = "meta"
)

// Store is the chain in the CHAIN stream. A Store made with Open can
// write; one made with Reader only reads. Safe for concurrent use.
type Store struct {
	js     jetstream.JetStream
	stream string

	mu  sync.Mutex
	app *bus.Appender // nil: read only
}

// Open returns a writable Store: it claims the stream for the leader's
// term and id (bus.Claim), which fences off every earlier writer.
func Open(ctx context.Context, js jetstream.JetStream, term uint64, id string) (*Store, error) {
	app, err := bus.Claim(ctx, js, bus.StreamChain, Subject, term, id)
	if err != nil {
		return nil, fmt.Errorf("chainstore: %w", err)
	}
	return &Store{js: js, stream: bus.StreamChain, app: app}, nil
}

// Reader returns a read-only Store (for standbys and status pages).
func Reader(js jetstream.JetStream) *Store {
	return &Store{js: js, stream: bus.StreamChain}
}

// wireBlock is the stored encoding of a block.
type wireBlock struct {
	Height  int64  `json:"height"`
	Hash    string `json:"hash"` // display hex
	Header  []byte `json:"header"`
	Raw     []byte `json:"raw"`
	Finder  string `json:"finder"`
	Time    uint32 `json:"time"`
	FoundAt int64  `json:"found_at_ns"`
}

// AddBlock appends b. It fails wrapping bus.ErrFenced when another
// coordinator has claimed the stream since this Store was opened. (That
// the block extends the chain is the embedded chain's own check.)
func (s *Store) AddBlock(ctx context.Context, b ledger.Block) error {
	if s.app == nil {
		return errors.New("chainstore: AddBlock on a read-only store")
	}
	data, err := json.Marshal(wireBlock{Height: b.Height, Hash: b.Hash.String(), Header: b.Header[:], Raw: b.Raw, Finder: b.Finder, Time: b.Time, FoundAt: b.FoundAt.UnixNano()})
	if err != nil {
		return fmt.Errorf("chainstore: encoding block %s: %w", b.Hash, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.app.Append(ctx, data, nil, hex.EncodeToString(b.Hash[:])); err != nil {
		return fmt.Errorf("chainstore: block %s at height %d: %w", b.Hash, b.Height, err)
	}
	return nil
}

// SetMeta appends a setting.
func (s *Store) SetMeta(ctx context.Context, key, value string) error {
	if s.app == nil {
		return errors.New("chainstore: SetMeta on a read-only store")
	}
	h := nats.Header{}
	h.Set(bus.HeaderKind, kindMeta)
	h.Set(HeaderMetaKey, key)
	s.mu.Lock()
	defer s.mu.Unlock()
	seq := s.app.Last() + 1
	if _, err := s.app.Append(ctx, []byte(value), h, fmt.Sprintf("meta.%s.%d", key, seq)); err != nil {
		return fmt.Errorf("chainstore: setting %s: %w", key, err)
	}
	return nil
}

// contents reads the whole stream: its blocks in order and its settings.
func (s *Store) contents(ctx context.Context) ([]ledger.Block, map[string]string, error) {
	st, err := s.js.Stream(ctx, s.stream)
	if err != nil {
		return nil, nil, fmt.Errorf("chainstore: stream %s: %w", s.stream, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("chainstore: stream %s: %w", s.stream, err)
	}
	var blocks []ledger.Block
	meta := map[string]string{}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("chainstore: stream %s message %d: %w", s.stream, seq, err)
		}
		kind, b, err := decode(s.stream, m)
		if err != nil {
			return nil, nil, err
		}
		switch kind {
		case kindBlock:
			blocks = append(blocks, b)
		case kindMeta:
			meta[m.Header.Get(HeaderMetaKey)] = string(m.Data)
		}
	}
	sort.SliceStable(blocks, func(i, j int) bool { return blocks[i].Height < blocks[j].Height })
	return blocks, meta, nil
}

// kindBlock is what decode calls a block message (which has no
// Powcoord-Kind header).
const kindBlock = "block"

// decode reads message m of stream: its kind ("term", kindMeta or
// kindBlock) and, for a block, the block.
func decode(stream string, m *jetstream.RawStreamMsg) (string, ledger.Block, error) {
	switch k := m.Header.Get(bus.HeaderKind); k {
	case "term", kindMeta:
		return k, ledger.Block{}, nil
	}
	var w wireBlock
	if err := json.Unmarshal(m.Data, &w); err != nil {
		return "", ledger.Block{}, fmt.Errorf("chainstore: stream %s message %d: not a block: %w", stream, m.Sequence, err)
	}
	b := ledger.Block{Height: w.Height, Raw: w.Raw, Finder: w.Finder, Time: w.Time}
	if len(w.Header) != len(b.Header) {
		return "", ledger.Block{}, fmt.Errorf("chainstore: stream %s message %d: header is %d bytes", stream, m.Sequence, len(w.Header))
	}
	copy(b.Header[:], w.Header)
	hb, err := hex.DecodeString(w.Hash)
	if err != nil || len(hb) != len(b.Hash) {
		return "", ledger.Block{}, fmt.Errorf("chainstore: stream %s message %d: hash %q", stream, m.Sequence, w.Hash)
	}
	for i := range hb { // display order to internal order
		b.Hash[i] = hb[len(hb)-1-i]
	}
	b.FoundAt = timeFromNanos(w.FoundAt)
	return kindBlock, b, nil
}

// Blocks returns the stored blocks with height >= fromHeight, oldest
// first, at most limit (<= 0: all).
func (s *Store) Blocks(ctx context.Context, fromHeight int64, limit int) ([]ledger.Block, error) {
	all, _, err := s.contents(ctx)
	if err != nil {
		return nil, err
	}
	var out []ledger.Block
	for _, b := range all {
		if b.Height >= fromHeight {
			out = append(out, b)
			if limit > 0 && len(out) == limit {
				break
			}
		}
	}
	return out, nil
}

// Meta returns the last value stored for key.
func (s *Store) Meta(ctx context.Context, key string) (string, bool, error) {
	_, meta, err := s.contents(ctx)
	if err != nil {
		return "", false, err
	}
	v, ok := meta[key]
	return v, ok, nil
}
