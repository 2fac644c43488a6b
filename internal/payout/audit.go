package payout

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"strconv"
	"strings"

	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/ledger"
)

// BlockRules are the rules one PPLNS block was paid under, as kept with
// its payout record (ledger.PayoutRecord.Rules) and written at the head
// of its window download: with them and the window's shares anyone can
// recompute the block's outputs (Verify).
type BlockRules struct {
	Window         float64 `json:"window_blocks"`
	Bits           string  `json:"bits"` // the block's compact target, hex
	FeeBasisPoints int64   `json:"fee_basis_points"`
	FeeScript      string  `json:"fee_script,omitempty"` // hex
	Dust           int64   `json:"dust"`
	// MaxOutputs is the cap on paying outputs the block was split
	// under: Rules.MaxOutputs, lowered to what the template left room
	// for.
	MaxOutputs int `json:"max_outputs"`
}

func (p *Plan) recordRules(s *Snapshot) BlockRules {
	return BlockRules{Window: p.rules.Window, Bits: fmt.Sprintf("%08x", s.Bits), FeeBasisPoints: p.rules.FeeBasisPoints,
		FeeScript: hex.EncodeToString(p.rules.FeeScript), Dust: p.rules.Dust, MaxOutputs: s.MaxOuts}
}

func (r BlockRules) encode() string {
	b, _ := json.Marshal(r)
	return string(b)
}

// ParseBlockRules reads the rules kept with a payout record.
func ParseBlockRules(s string) (BlockRules, error) {
	var r BlockRules
	if s == "" {
		return r, errors.New("payout: the block's record keeps no rules (recorded before rules were kept, or paid solo)")
	}
	d := json.NewDecoder(strings.NewReader(s))
	d.DisallowUnknownFields()
	if err := d.Decode(&r); err != nil {
		return r, fmt.Errorf("payout: block rules %q: %w", s, err)
	}
	return r, nil
}

// WindowFormat names the window download's format (its first line).
const WindowFormat = "powcoord-pplns-window/1"

// WindowHead is the first line of a window download: the block, the
// rules it was paid under and what it paid.
type WindowHead struct {
	Format string      `json:"format"` // WindowFormat
	Block  WindowBlock `json:"block"`
}

// WindowBlock is a found block's payout record in a window download.
type WindowBlock struct {
	Hash       string     `json:"hash"`
	Height     int64      `json:"height"`
	Mode       string     `json:"mode"`
	Cutoff     int64      `json:"cutoff"`      // ledger id of the newest share the window could hold
	WindowSize string     `json:"window_size"` // work units (2^-64 difficulty), decimal
	Value      int64      `json:"value"`       // satoshis paid out
	Rules      BlockRules `json:"rules"`
	// Outputs are the paying outputs of the block's coinbase, in order,
	// as recorded when it was found.
	Outputs []WindowOutput `json:"outputs"`
}

// WindowOutput is one paying output of the block.
type WindowOutput struct {
	Script  string `json:"script"` // hex
	Address string `json:"address,omitempty"`
	Amount  int64  `json:"amount"`         // satoshis
	Work    string `json:"work,omitempty"` // window work units it pays for, decimal
	Fee     bool   `json:"fee,omitempty"`
}

// WindowShare is one share of a window download, newest first.
type WindowShare struct {
	ID         int64   `json:"id"` // the ledger's id (position) of the share
	Worker     string  `json:"worker"`
	Address    string  `json:"address"`          // its payout address: ledger.AccountOf(worker)
	Script     string  `json:"script,omitempty"` // hex script it is paid to; empty: it cannot be paid (skipped)
	Difficulty float64 `json:"difficulty"`
	Hash       string  `json:"hash,omitempty"` // the share's header hash (display hex), when the ledger kept it
}

// WindowEnd is the last line of a complete window download.
type WindowEnd struct {
	End    bool `json:"end"`
	Shares int  `json:"shares"` // share lines written
}

// WindowLedger is a ledger a block's window can be read back from: the
// SQLite store and the cluster's PostgreSQL ledger.
type WindowLedger interface {
	// BlockPayouts returns the payout record of the found block hash.
	BlockPayouts(ctx context.Context, hash chainmath.Hash) (rec ledger.PayoutRecord, ok bool, err error)
	// WindowShares calls fn with each share whose id is at most cutoff,
	// from the newest to the oldest, until fn returns false.
	WindowShares(ctx context.Context, cutoff int64, fn func(id int64, sh *ledger.Share) bool) error
}

// ErrNoRecord is returned by WriteWindow for a block with no payout
// record.
var ErrNoRecord = errors.New("payout: no payout record for the block")

// ErrNotPPLNS is returned by WriteWindow for a block paid without a PPLNS
// window (solo, or a record without its rules).
var ErrNotPPLNS = errors.New("payout: the block was not paid by a PPLNS window")

// WriteWindow writes the PPLNS window the found block hash paid as JSON
// lines: a WindowHead, each share of the window newest first
// (WindowShare: the shares walked from the record's cutoff until the
// window is full, the one that filled it included, shares that cannot be
// paid included with no script) and a WindowEnd. scriptOf maps a payout
// label (ledger.AccountOf a worker name) to its script, as the plan's
// did. Errors before the first
// line wrap ErrNoRecord or ErrNotPPLNS, or are the ledger's; an error
// after it leaves the download without its WindowEnd.
func WriteWindow(ctx context.Context, w io.Writer, led WindowLedger, hash chainmath.Hash, scriptOf func(label string) ([]byte, error)) error {
	rec, ok, err := led.BlockPayouts(ctx, hash)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("block %s: %w", hash, ErrNoRecord)
	}
	if rec.Mode != PPLNS {
		return fmt.Errorf("block %s was paid %s: %w", hash, rec.Mode, ErrNotPPLNS)
	}
	rules, err := ParseBlockRules(rec.Rules)
	if err != nil {
		return fmt.Errorf("block %s: %v: %w", hash, err, ErrNotPPLNS)
	}
	size, ok := new(big.Int).SetString(rec.Window, 10)
	if !ok {
		return fmt.Errorf("payout: block %s: window size %q is not a decimal number", hash, rec.Window)
	}
	head := WindowHead{Format: WindowFormat, Block: WindowBlock{Hash: hash.String(), Height: rec.Height, Mode: rec.Mode, Cutoff: rec.Cutoff,
		WindowSize: rec.Window, Value: rec.Value, Rules: rules, Outputs: make([]WindowOutput, 0, len(rec.Outputs))}}
	for _, o := range rec.Outputs {
		head.Block.Outputs = append(head.Block.Outputs, WindowOutput{Script: hex.EncodeToString(o.Script), Address: o.Label, Amount: o.Amount, Work: o.Work, Fee: o.Fee})
	}
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	if err := enc.Encode(head); err != nil {
		return err
	}
	win := NewWindow(size)
	n := 0
	var werr error
	err = led.WindowShares(ctx, rec.Cutoff, func(id int64, sh *ledger.Share) bool {
		ws := WindowShare{ID: id, Worker: sh.Worker, Address: ledger.AccountOf(sh.Worker), Difficulty: sh.Difficulty}
		if sh.Hash != (chainmath.Hash{}) {
			ws.Hash = sh.Hash.String()
		}
		more := true
		if script, err := scriptOf(ws.Address); err == nil {
			if m, err := win.Add(script, sh.Difficulty); err == nil {
				ws.Script, more = hex.EncodeToString(script), m
			}
		}
		if werr = enc.Encode(ws); werr != nil {
			return false
		}
		n++
		if n%1024 == 0 {
			if werr = bw.Flush(); werr != nil {
				return false
			}
		}
		return more
	})
	if err == nil {
		err = werr
	}
	if err != nil {
		bw.Flush()
		return fmt.Errorf("payout: window of block %s: %w", hash, err)
	}
	if err := enc.Encode(WindowEnd{End: true, Shares: n}); err != nil {
		return err
	}
	return bw.Flush()
}

// Verified is what Verify recomputed from a window download.
type Verified struct {
	Hash    string
	Height  int64
	Shares  int // share lines read
	Skipped int // shares that cannot be paid
	Outputs []Output
}

// maxLine bounds one line of a window download.
const maxLine = 1 << 20

// Verify reads a window download (WriteWindow's format) and recomputes
// the block's outputs from its rules and shares, to the satoshi: the
// window size from the rules, each miner's work from the shares, the
// split (Split). It returns an error naming every difference from the
// outputs the block paid (the download's head), and the first line that
// cannot be read, by number.
func Verify(r io.Reader) (*Verified, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), maxLine)
	line := 0
	next := func() ([]byte, bool) {
		if !sc.Scan() {
			return nil, false
		}
		line++
		return sc.Bytes(), true
	}
	first, ok := next()
	if !ok {
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("payout: reading the window download: %w", err)
		}
		return nil, errors.New("payout: the window download is empty")
	}
	var head WindowHead
	if err := strictJSON(first, &head); err != nil {
		return nil, fmt.Errorf("payout: line 1: the head: %w", err)
	}
	if head.Format != WindowFormat {
		return nil, fmt.Errorf("payout: line 1: format %q: want %q", head.Format, WindowFormat)
	}
	b := head.Block
	ru := b.Rules
	bits, err := strconv.ParseUint(ru.Bits, 16, 32)
	if err != nil {
		return nil, fmt.Errorf("payout: line 1: rules: bits %q: not 8 hex digits", ru.Bits)
	}
	target, err := chainmath.CompactToBig(uint32(bits))
	if err != nil {
		return nil, fmt.Errorf("payout: line 1: rules: bits %q: %w", ru.Bits, err)
	}
	feeScript, err := hex.DecodeString(ru.FeeScript)
	if err != nil {
		return nil, fmt.Errorf("payout: line 1: rules: fee script %q: not hex", ru.FeeScript)
	}
	if len(feeScript) == 0 {
		feeScript = nil
	}
	size, err := WindowUnits(ru.Window, target)
	if err != nil {
		return nil, fmt.Errorf("payout: line 1: rules: %w", err)
	}
	var diffs []string
	if size.String() != b.WindowSize {
		diffs = append(diffs, fmt.Sprintf("window size: %v blocks at bits %s is %s units, the block's record says %s", ru.Window, ru.Bits, size, b.WindowSize))
	}
	win := NewWindow(size)
	v := &Verified{Hash: b.Hash, Height: b.Height}
	scriptOfAddr := map[string]string{}
	idOfAddr := map[string]int64{}
	lastID := b.Cutoff + 1
	var end *WindowEnd
	for {
		data, ok := next()
		if !ok {
			break
		}
		if end != nil {
			return nil, fmt.Errorf("payout: line %d: a line after the end line", line)
		}
		if strings.HasPrefix(string(data), `{"end"`) {
			end = &WindowEnd{}
			if err := strictJSON(data, end); err != nil {
				return nil, fmt.Errorf("payout: line %d: the end line: %w", line, err)
			}
			continue
		}
		var s WindowShare
		if err := strictJSON(data, &s); err != nil {
			return nil, fmt.Errorf("payout: line %d: share: %w", line, err)
		}
		v.Shares++
		if s.ID >= lastID {
			return nil, fmt.Errorf("payout: line %d: share id %d: ids must fall from the cutoff %d, the line before had %d", line, s.ID, b.Cutoff, lastID)
		}
		lastID = s.ID
		if win.Full() {
			diffs = append(diffs, fmt.Sprintf("share id %d (line %d): listed after the window was already full", s.ID, line))
			continue
		}
		if a := ledger.AccountOf(s.Worker); a != s.Address {
			diffs = append(diffs, fmt.Sprintf("share id %d: worker %q belongs to address %q, the share says %q", s.ID, s.Worker, a, s.Address))
		}
		if s.Script == "" {
			v.Skipped++
			continue
		}
		script, err := hex.DecodeString(s.Script)
		if err != nil {
			return nil, fmt.Errorf("payout: line %d: share id %d: script %q: not hex", line, s.ID, s.Script)
		}
		if prev, ok := scriptOfAddr[s.Address]; ok && prev != s.Script {
			diffs = append(diffs, fmt.Sprintf("share id %d: address %q is paid to script %s here but to %s in share id %d", s.ID, s.Address, s.Script, prev, idOfAddr[s.Address]))
		} else if !ok {
			scriptOfAddr[s.Address], idOfAddr[s.Address] = s.Script, s.ID
		}
		if _, err := win.Add(script, s.Difficulty); err != nil {
			v.Skipped++
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("payout: line %d: %w", line+1, err)
	}
	if end == nil {
		diffs = append(diffs, "the download ends without its end line: it was cut short")
	} else if end.Shares != v.Shares {
		diffs = append(diffs, fmt.Sprintf("the end line counts %d shares, the download holds %d", end.Shares, v.Shares))
	}
	for _, o := range b.Outputs {
		if o.Fee || o.Address == "" {
			continue
		}
		if s, ok := scriptOfAddr[o.Address]; ok && s != o.Script {
			diffs = append(diffs, fmt.Sprintf("address %q: the block pays it to script %s, its shares to %s", o.Address, o.Script, s))
		}
	}
	outs, err := Split(win.Work(), Params{Value: b.Value, FeeBasisPoints: ru.FeeBasisPoints, FeeScript: feeScript, Dust: ru.Dust, MaxOutputs: ru.MaxOutputs})
	if err != nil && !errors.Is(err, ErrNoWork) {
		return nil, fmt.Errorf("payout: recomputing the split: %w", err)
	}
	v.Outputs = outs
	diffs = append(diffs, compareOutputs(b.Outputs, outs)...)
	if len(diffs) > 0 {
		return v, &MismatchError{Hash: b.Hash, Diffs: diffs}
	}
	return v, nil
}

func compareOutputs(paid []WindowOutput, got []Output) []string {
	var diffs []string
	if len(paid) != len(got) {
		diffs = append(diffs, fmt.Sprintf("the block pays %d outputs, the window's shares give %d", len(paid), len(got)))
	}
	for i := range max(len(paid), len(got)) {
		var p WindowOutput
		var g Output
		havePaid, haveGot := i < len(paid), i < len(got)
		if havePaid {
			p = paid[i]
		}
		if haveGot {
			g = got[i]
		}
		gs, gw := hex.EncodeToString(g.Script), ""
		if g.Units != nil {
			gw = g.Units.String()
		}
		switch {
		case !haveGot:
			diffs = append(diffs, fmt.Sprintf("output %d: the block pays %d sat to %s (%s), the window's shares pay nothing there", i, p.Amount, p.Script, who(p)))
		case !havePaid:
			diffs = append(diffs, fmt.Sprintf("output %d: the window's shares pay %d sat to %s for work %s, the block pays nothing there", i, g.Value, gs, gw))
		case p.Script != gs:
			diffs = append(diffs, fmt.Sprintf("output %d: the block pays script %s (%s), the window's shares give script %s", i, p.Script, who(p), gs))
		case p.Amount != g.Value || p.Fee != g.Fee || p.Work != gw:
			diffs = append(diffs, fmt.Sprintf("output %d (%s): the block pays %d sat for work %q, the window's shares give %d sat for work %q", i, who(p), p.Amount, p.Work, g.Value, gw))
		}
	}
	return diffs
}

func who(o WindowOutput) string {
	if o.Fee {
		return "the pool fee"
	}
	if o.Address != "" {
		return "address " + o.Address
	}
	return "script " + o.Script
}

// MismatchError says how a window download differs from what its block
// paid.
type MismatchError struct {
	Hash  string
	Diffs []string
}

// Error lists the differences, one a line.
func (e *MismatchError) Error() string {
	return fmt.Sprintf("payout: block %s does not pay what its window gives:\n  %s", e.Hash, strings.Join(e.Diffs, "\n  "))
}

func strictJSON(data []byte, v any) error {
	d := json.NewDecoder(strings.NewReader(string(data)))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return errors.New("more than one JSON value on the line")
	}
	return nil
}
