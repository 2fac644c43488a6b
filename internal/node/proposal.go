package node

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/btcsuite/btcd/wire/v2"
	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/work"
)

// CheckBlock asks the node whether block would be valid but for its
// proof of work: getblocktemplate in BIP 23 proposal mode, which Bitcoin
// Core and btcd both answer with null for a valid block and a reason
// string otherwise (work.BlockChecker). An error answer of the node for
// the call (say, a block that does not decode) is a rejection too.
func (s *Source) CheckBlock(ctx context.Context, block *wire.MsgBlock) error {
	hash := chainmath.Hash(block.BlockHash())
	var buf bytes.Buffer
	if err := block.Serialize(&buf); err != nil {
		return fmt.Errorf("block %s: serializing: %w", hash, err)
	}
	req := map[string]any{"mode": "proposal", "data": hex.EncodeToString(buf.Bytes()), "rules": []string{"segwit"}}
	raw, _, err := s.call(ctx, "getblocktemplate", []any{req}, false)
	var rerr *RPCError
	if errors.As(err, &rerr) {
		return &work.RejectedError{Hash: hash, Reason: rerr.Message}
	}
	if err != nil {
		return fmt.Errorf("block proposal %s: %w", hash, err)
	}
	var reason *string
	if err := json.Unmarshal(raw, &reason); err != nil {
		return fmt.Errorf("block proposal %s: answer %s is neither null nor a string", hash, raw)
	}
	if reason != nil {
		return &work.RejectedError{Hash: hash, Reason: *reason}
	}
	return nil
}
