package node

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/btcsuite/btcd/wire/v2"
	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/work"
)

// codeDeserialization is the JSON-RPC error code (RPC_DESERIALIZATION_ERROR
// in Bitcoin Core, ErrRPCDeserialization in btcd) with which both nodes
// refuse a submitted block that does not decode. Every other error code is
// not a verdict on the block: Bitcoin Core answers -28 while it is still
// loading after a restart, and -25 for a failure of its own (a full disk),
// so those are asked again.
const codeDeserialization = -22

// verdict is what one node made of a submitted block.
type verdict int

const (
	// verdictNone: no usable answer (unreachable, timed out, an error of
	// the node's own); the block has to be offered again.
	verdictNone verdict = iota
	// verdictAccepted: submitblock answered null, the node took the
	// block. (null does not say the block became the tip.)
	verdictAccepted
	// verdictKnown: the node already had the block as valid (Bitcoin
	// Core's "duplicate", btcd's "rejected: already have block <hash>"
	// for a block on its best chain).
	verdictKnown
	// verdictStored: the node keeps the block without having connected
	// it (Bitcoin Core's "inconclusive" and "duplicate-inconclusive",
	// btcd's "already have block (orphan)", and its "already have block"
	// for a valid side-chain block): typically a side chain, or a parent
	// it has not seen. Not a rejection, and sending it again
	// would not change anything: the block counts as taken.
	verdictStored
	// verdictRejected: the node refused the block for good.
	verdictRejected
	// verdictHeld: btcd's "rejected: already have block <hash>". btcd
	// answers the same for a valid block and for one it stored and then
	// found invalid when connecting it, so the node is asked which (see
	// heldVerdict).
	verdictHeld
)

// taken reports whether the node holds the block.
func (v verdict) taken() bool {
	return v == verdictAccepted || v == verdictKnown || v == verdictStored
}

// answer is one node's response to a submitted block.
type answer struct {
	idx     int // index of the node in Source.clients
	verdict verdict
	reason  string // the node's words, for every verdict but a plain accept and none
	dup     bool   // the node had the block before this call
	err     error  // why there is no verdict (verdictNone)
}

// judge reads the submitblock response (raw, err) of the node at endpoint
// for the block hash.
//
// Bitcoin Core answers null (accepted), "duplicate", "duplicate-invalid",
// "inconclusive", "duplicate-inconclusive" (older versions) or a BIP 22
// reject reason ("high-hash", "bad-txnmrklroot", ...). btcd answers null
// for every block it stores (also on a side chain, and for an orphan whose
// parent it does not know) and "rejected: <rule error>" otherwise, a
// block it already has included ("rejected: already have block <hash>",
// also for one it found invalid, see heldVerdict; "rejected: already have
// block (orphan) <hash>").
//
// It returns the verdict, the node's words and whether they say the node
// had the block before.
func judge(endpoint string, hash chainmath.Hash, raw json.RawMessage, err error) (v verdict, reason string, dup bool, _ error) {
	if err != nil {
		var rerr *RPCError
		if errors.As(err, &rerr) && rerr.Code == codeDeserialization {
			return verdictRejected, rerr.Message, false, nil
		}
		return verdictNone, "", false, err
	}
	if string(raw) == "null" {
		return verdictAccepted, "", false, nil
	}
	if json.Unmarshal(raw, &reason) != nil {
		return verdictNone, "", false, &TransportError{Endpoint: endpoint, Method: "submitblock",
			Err: fmt.Errorf("submitblock answered %.200s, neither null nor a reason string", raw)}
	}
	switch reason {
	case "duplicate":
		return verdictKnown, reason, true, nil
	case "rejected: already have block " + hash.String():
		return verdictHeld, reason, true, nil
	case "inconclusive":
		return verdictStored, reason, false, nil
	case "duplicate-inconclusive", "rejected: already have block (orphan) " + hash.String():
		return verdictStored, reason, true, nil
	case "duplicate-invalid":
		return verdictRejected, reason, true, nil
	case "":
		return verdictRejected, "rejected (the node gave no reason)", false, nil
	}
	return verdictRejected, reason, false, nil
}

// heldVerdict tells, for btcd's "already have block", whether node c holds
// the block as valid: on its best chain (getblockheader gives
// confirmations; btcd fails it for a block off its best chain), on a valid
// side chain, or as invalid (a chain tip with status "invalid" in
// getchaintips). It gives verdictNone when the node cannot tell.
func heldVerdict(ctx context.Context, c *Client, hash chainmath.Hash, reason string) (verdict, string, error) {
	var hdr struct {
		Confirmations int64 `json:"confirmations"`
	}
	err := c.Call(ctx, "getblockheader", []any{hash.String(), true}, &hdr)
	if err == nil && hdr.Confirmations > 0 {
		return verdictKnown, reason, nil
	}
	var rerr *RPCError
	if err != nil && !errors.As(err, &rerr) {
		return verdictNone, "", err
	}
	var tips []struct {
		Hash   string `json:"hash"`
		Status string `json:"status"`
	}
	if err := c.Call(ctx, "getchaintips", nil, &tips); err != nil {
		return verdictNone, "", err
	}
	for _, tp := range tips {
		if tp.Hash == hash.String() && tp.Status == "invalid" {
			return verdictRejected, reason + ", which it holds as invalid", nil
		}
	}
	return verdictStored, reason, nil
}

// NoAnswerError is a block that no node gave a verdict on: each was
// unreachable, timed out or failed on its side. The block should be
// offered again.
type NoAnswerError struct {
	Hash chainmath.Hash
	// Errs holds one error per node, in the configured order; each names
	// its node.
	Errs []error
}

func (e *NoAnswerError) Error() string {
	msgs := make([]string, len(e.Errs))
	for i, err := range e.Errs {
		msgs[i] = strings.ReplaceAll(err.Error(), "\n", "; ")
	}
	return fmt.Sprintf("block %s not submitted: no node answered: %s", e.Hash, strings.Join(msgs, "; "))
}

// Unwrap returns the nodes' errors.
func (e *NoAnswerError) Unwrap() []error { return e.Errs }

// Submit offers a solved block (full serialization, with witness) with
// submitblock to every configured node at once, each call bounded by
// CallTimeout. It returns nil as soon as one node holds the block (it
// accepted it, already had it, or stored it without connecting it);
// the other nodes' calls run on to their own answer or timeout, even after
// ctx ends. Otherwise it returns a *work.RejectedError with the reason when
// a node refused the block, and a *NoAnswerError naming each node and its
// error when none gave a verdict (or ctx's error when ctx ended first): the
// block should then be offered again.
func (s *Source) Submit(ctx context.Context, block *wire.MsgBlock, finder string) error {
	hash := chainmath.Hash(block.BlockHash())
	var height int64 = -1
	if len(block.Transactions) > 0 && len(block.Transactions[0].TxIn) > 0 {
		if h, err := chainmath.ParseCoinbaseHeight(block.Transactions[0].TxIn[0].SignatureScript); err == nil {
			height = h
		}
	}
	var buf bytes.Buffer
	buf.Grow(block.SerializeSize())
	if err := block.Serialize(&buf); err != nil {
		return fmt.Errorf("block %s: serializing: %w", hash, err)
	}
	hexBlock := hex.EncodeToString(buf.Bytes())

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return fmt.Errorf("block %s not submitted: the node source is closed", hash)
	}
	s.submits.Add(len(s.clients))
	s.mu.Unlock()
	answers := make(chan answer, len(s.clients)) // never blocks a sender
	bg := context.WithoutCancel(ctx)
	for i := range s.clients {
		go func() {
			defer s.submits.Done()
			answers <- s.submitTo(bg, i, hexBlock, hash, height, finder)
		}()
	}

	var got []answer
	for len(got) < len(s.clients) {
		var a answer
		select {
		case a = <-answers:
		case <-ctx.Done():
			s.log.Warn("block submission abandoned before a node answered", "hash", hash.String(), "height", height, "finder", finder, "err", ctx.Err())
			return fmt.Errorf("block %s: no node answered yet: %w", hash, ctx.Err())
		}
		if a.verdict.taken() {
			return s.taken(ctx, a, hash, height, finder)
		}
		got = append(got, a)
	}
	slices.SortFunc(got, func(a, b answer) int { return a.idx - b.idx })

	// The first rejecting node's reason, then any other node's different
	// one, named by its node.
	var reasons, seen []string
	for _, a := range got {
		if a.verdict != verdictRejected || slices.Contains(seen, a.reason) {
			continue
		}
		r := a.reason
		if len(reasons) > 0 {
			r = "node " + s.clients[a.idx].Endpoint() + ": " + r
		}
		seen = append(seen, a.reason)
		reasons = append(reasons, r)
	}
	if len(reasons) > 0 {
		reason := strings.Join(reasons, "; ")
		s.rejected.Add(1)
		s.log.Warn("block rejected", "hash", hash.String(), "height", height, "finder", finder, "reason", reason)
		s.requestFetch()
		return &work.RejectedError{Hash: hash, Reason: reason}
	}
	nerr := &NoAnswerError{Hash: hash}
	for _, a := range got {
		nerr.Errs = append(nerr.Errs, a.err)
	}
	if ctx.Err() == nil {
		s.markDown(nerr)
	}
	s.log.Warn("block not submitted: no node answers", "hash", hash.String(), "height", height, "finder", finder, "err", nerr)
	return nerr
}

// submitTo sends the block to node idx and logs what the node made of it.
func (s *Source) submitTo(ctx context.Context, idx int, hexBlock string, hash chainmath.Hash, height int64, finder string) answer {
	c := s.clients[idx]
	cctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	raw, err := c.CallRaw(cctx, "submitblock", []any{hexBlock})
	v, reason, dup, err := judge(c.Endpoint(), hash, raw, err)
	if v == verdictHeld {
		v, reason, err = heldVerdict(cctx, c, hash, reason)
	}
	a := answer{idx: idx, verdict: v, reason: reason, dup: dup, err: err}
	attrs := []any{"hash", hash.String(), "height", height, "finder", finder, "endpoint", c.Endpoint()}
	switch v {
	case verdictAccepted:
		s.log.Debug("node accepted block", attrs...)
	case verdictKnown:
		s.log.Info("node already has block", append(attrs, "answer", reason)...)
	case verdictStored:
		s.log.Info("node stored block without connecting it", append(attrs, "answer", reason,
			"meaning", "kept as a side-chain block or one whose parent the node lacks; not a rejection, and sending it again changes nothing")...)
	case verdictRejected:
		s.log.Warn("node rejected block", append(attrs, "reason", reason)...)
	default:
		s.log.Warn("node gave no answer to submitblock", append(attrs, "err", err)...)
	}
	return a
}

// taken finishes a Submit that node a holds the block: it counts it, checks
// whether the block became that node's tip and, if so, fetches the
// template on top of it at once rather than waiting for the long-poll.
func (s *Source) taken(ctx context.Context, a answer, hash chainmath.Hash, height int64, finder string) error {
	if !a.dup {
		s.accepted.Add(1)
	}
	c := s.clients[a.idx]
	attrs := []any{"hash", hash.String(), "height", height, "finder", finder, "endpoint", c.Endpoint()}
	if a.reason != "" {
		attrs = append(attrs, "answer", a.reason)
	}
	var best string
	if braw, err := c.CallRaw(ctx, "getbestblockhash", nil); err == nil && json.Unmarshal(braw, &best) == nil {
		if best == hash.String() {
			s.log.Info("block accepted", attrs...)
			if err := s.fetch(ctx); err != nil {
				s.requestFetch()
			}
			return nil
		}
		// A block on a stale job, or one that lost a race: the node
		// keeps it on a side chain.
		s.log.Warn("block accepted but not the tip", append(attrs, "best", best)...)
		if cur := s.Current(); cur.PrevHash.String() != best {
			s.requestFetch()
		}
		return nil
	}
	s.log.Info("block accepted; tip unconfirmed", attrs...)
	s.requestFetch()
	return nil
}

// InBestChain reports whether hash is the block at height on the best
// chain of the first node that answers (in failover order): how a caller
// that holds a found block tells, once the chain has moved past the
// block's height, whether the block made it. A height above the node's tip
// is not in the chain (yet).
func (s *Source) InBestChain(ctx context.Context, hash chainmath.Hash, height int64) (bool, error) {
	if height < 0 {
		return false, fmt.Errorf("block %s: height %d is negative", hash, height)
	}
	raw, idx, err := s.call(ctx, "getblockcount", nil, true)
	if err != nil {
		return false, fmt.Errorf("looking for block %s at height %d: %w", hash, height, err)
	}
	c := s.clients[idx]
	var count int64
	if err := json.Unmarshal(raw, &count); err != nil {
		return false, fmt.Errorf("node %s: getblockcount answered %.200s: %w", c.Endpoint(), raw, err)
	}
	if height > count {
		return false, nil
	}
	var at string
	if err := c.Call(ctx, "getblockhash", []any{height}, &at); err != nil {
		return false, fmt.Errorf("looking for block %s at height %d: %w", hash, height, err)
	}
	return at == hash.String(), nil
}
