package stratum

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/powcoord/powcoord/internal/chainmath"
)

// Job is a mining.notify decoded: the one place that knows how a miner's
// share (extranonce1, extranonce2, ntime, nonce, version bits) becomes an
// 80-byte block header. docs/stratum-v1.md ("Rebuilding the header")
// describes the rule; the coordinator, the agent, the load generator and
// the node test helper all build headers through it.
//
// A Job is read-only once built and safe for concurrent use.
type Job struct {
	// ID is the job id the pool chose; shares name it.
	ID string
	// PrevHash is the previous block's hash in internal byte order, as it
	// sits in the header (the notify carries it word-swapped).
	PrevHash chainmath.Hash
	// Coinb1 and Coinb2 are the coinbase transaction (without witness)
	// before and after the extranonce slot.
	Coinb1, Coinb2 []byte
	// Branch is the merkle branch of the coinbase, in internal byte order,
	// folded in order.
	Branch []chainmath.Hash
	// Version, Bits and NTime are the header's version, compact target
	// (nBits) and timestamp.
	Version, Bits, NTime uint32
	// Clean asks the miner to drop every earlier job.
	Clean bool
}

// ParseJob decodes mining.notify params straight into a Job.
func ParseJob(params json.RawMessage) (*Job, error) {
	n, err := ParseNotify(params)
	if err != nil {
		return nil, err
	}
	return DecodeNotify(n)
}

// DecodeNotify checks and decodes every field of a notify (their
// encodings: docs/stratum-v1.md, "mining.notify: fields and byte orders").
// The error names the job, the field and the value that is wrong.
func DecodeNotify(n *Notify) (*Job, error) {
	if n.JobID == "" {
		return nil, errors.New("mining.notify: job id is empty")
	}
	j := &Job{ID: n.JobID, Clean: n.Clean}
	fail := func(err error) (*Job, error) {
		return nil, fmt.Errorf("mining.notify job %.40q: %w", n.JobID, err)
	}
	var err error
	if j.PrevHash, err = chainmath.ParseStratumPrevHash(n.PrevHash); err != nil {
		return fail(err)
	}
	if j.Coinb1, err = decodeHex("coinb1", n.Coinb1); err != nil {
		return fail(err)
	}
	if j.Coinb2, err = decodeHex("coinb2", n.Coinb2); err != nil {
		return fail(err)
	}
	j.Branch = make([]chainmath.Hash, len(n.Branch))
	for i, b := range n.Branch {
		if len(b) != 64 {
			return fail(fmt.Errorf("merkle branch entry %d %.70q: want 64 hex characters, have %d", i, b, len(b)))
		}
		if _, err := hex.Decode(j.Branch[i][:], []byte(b)); err != nil {
			return fail(fmt.Errorf("merkle branch entry %d %q: not hex", i, b))
		}
	}
	if j.Version, err = ParseHex32("version", n.Version); err != nil {
		return fail(err)
	}
	if j.Bits, err = ParseHex32("nbits", n.NBits); err != nil {
		return fail(err)
	}
	if t, err := chainmath.CompactToBig(j.Bits); err != nil {
		return fail(err)
	} else if t.Sign() == 0 {
		return fail(fmt.Errorf("nbits %08x: target is zero", j.Bits))
	}
	if j.NTime, err = ParseHex32("ntime", n.NTime); err != nil {
		return fail(err)
	}
	return j, nil
}

// decodeHex decodes a hex field, naming it (and at most 40 characters of
// its value) when it is not hex.
func decodeHex(field, s string) ([]byte, error) {
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%s %.40q (%d characters): %v", field, s, len(s), err)
	}
	return b, nil
}

// Notify encodes j as the notify that decodes back to it (lower-case hex).
func (j *Job) Notify() *Notify {
	n := &Notify{
		JobID:    j.ID,
		PrevHash: chainmath.StratumPrevHash(j.PrevHash),
		Coinb1:   hex.EncodeToString(j.Coinb1),
		Coinb2:   hex.EncodeToString(j.Coinb2),
		Branch:   make([]string, len(j.Branch)),
		Version:  Hex32(j.Version),
		NBits:    Hex32(j.Bits),
		NTime:    Hex32(j.NTime),
		Clean:    j.Clean,
	}
	for i := range j.Branch {
		n.Branch[i] = hex.EncodeToString(j.Branch[i][:])
	}
	return n
}

// CoinbaseSize is the length of the coinbase for extranonces of these
// lengths.
func (j *Job) CoinbaseSize(en1Len, en2Len int) int {
	return len(j.Coinb1) + en1Len + en2Len + len(j.Coinb2)
}

// AppendCoinbase appends the coinbase transaction coinb1 ‖ en1 ‖ en2 ‖
// coinb2 to dst and returns the extended slice.
func (j *Job) AppendCoinbase(dst, en1, en2 []byte) []byte {
	dst = append(dst, j.Coinb1...)
	dst = append(dst, en1...)
	dst = append(dst, en2...)
	return append(dst, j.Coinb2...)
}

// RootOf returns the merkle root of a block whose coinbase transaction is
// coinbase (as AppendCoinbase built it): its txid folded with the branch.
func (j *Job) RootOf(coinbase []byte) chainmath.Hash {
	return chainmath.RootFromBranch(chainmath.DoubleSHA256(coinbase), j.Branch)
}

// stackCoinbase is the coinbase size MerkleRoot and Header build without
// allocating; a larger coinbase costs one allocation.
const stackCoinbase = 512

// MerkleRoot returns the merkle root for extranonces en1 and en2. It does
// not allocate for a coinbase of up to 512 bytes.
func (j *Job) MerkleRoot(en1, en2 []byte) chainmath.Hash {
	var buf [stackCoinbase]byte
	return j.RootOf(j.AppendCoinbase(buf[:0], en1, en2))
}

// Header returns the header of a share: the merkle root for en1 and en2,
// the miner's ntime and nonce, and the version with the bits under mask
// taken from versionBits (BIP 310 version rolling; mask 0 keeps the job's
// version). Bits of versionBits outside mask are ignored: checking that a
// miner stayed inside its mask is the caller's rule.
func (j *Job) Header(en1, en2 []byte, ntime, nonce, versionBits, mask uint32) chainmath.Header {
	return j.HeaderWithRoot(j.MerkleRoot(en1, en2), ntime, nonce, versionBits, mask)
}

// HeaderWithRoot is Header for a merkle root already computed (by RootOf,
// when the caller also keeps the coinbase bytes, or by MerkleRoot).
func (j *Job) HeaderWithRoot(root chainmath.Hash, ntime, nonce, versionBits, mask uint32) chainmath.Header {
	return chainmath.Header{
		Version:    j.RolledVersion(versionBits, mask),
		PrevBlock:  j.PrevHash,
		MerkleRoot: root,
		Time:       ntime,
		Bits:       j.Bits,
		Nonce:      nonce,
	}
}

// RolledVersion is the job's version with the bits under mask replaced by
// those of versionBits (docs/stratum-v1.md, "Version rolling").
func (j *Job) RolledVersion(versionBits, mask uint32) uint32 {
	return j.Version&^mask | versionBits&mask
}

// BlockTarget is the target a header must meet to be a block (from Bits).
func (j *Job) BlockTarget() (chainmath.Target, error) {
	t, err := chainmath.CompactToBig(j.Bits)
	if err != nil {
		return chainmath.Target{}, fmt.Errorf("job %.40q: %w", j.ID, err)
	}
	return chainmath.TargetFromBig(t), nil
}
