package agent

import (
	"encoding/hex"
	"fmt"
	"sync/atomic"

	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/stratum"
)

// job is one mining.notify made ready to hash: the fields decoded, the
// extranonce and share target that were in force when it arrived, and the
// counter that hands out its work units to the threads.
//
// A work unit is one extranonce2 value and one nonce range of it. With an
// extranonce2 of 2 bytes or more a unit is the whole 2^32 nonce space of
// one extranonce2; with a shorter one each extranonce2 is cut into 256
// ranges. Units are taken from next with an atomic add, so no two threads
// ever hash the same header, and a thread that finishes a unit rolls to a
// fresh extranonce2 by taking the next one.
type job struct {
	gen     uint64   // agent job generation, set when published
	sess    *session // the connection the job came from (shares go back there)
	id      string
	clean   bool
	prev    chainmath.Hash // internal byte order
	coinb1  []byte
	coinb2  []byte
	en1     []byte
	en2Size int
	branch  []chainmath.Hash
	version uint32
	nbits   uint32
	ntime   uint32
	diff    float64
	target  chainmath.Target // share target, T1/diff
	parts   uint64           // nonce ranges per extranonce2 (a power of two)
	span    uint64           // nonces per unit: 2^32 / parts
	units   uint64           // extranonce2 values × parts
	next    *atomic.Uint64   // next unit to hand out (shared by the session's jobs)
}

// maxUnits bounds the unit counter; 2^62 units is never reached.
const maxUnits = 1 << 62

// newJob decodes a notify with the session's extranonce and difficulty.
// span, when non-zero, pretends the nonce space of each extranonce2 is
// only span nonces (tests use it to make the agent roll extranonce2 soon).
func newJob(n *stratum.Notify, en1 []byte, en2Size int, diff float64, span uint64) (*job, error) {
	j := &job{id: n.JobID, clean: n.Clean, en1: en1, en2Size: en2Size, diff: diff, next: new(atomic.Uint64)}
	var err error
	if j.prev, err = chainmath.ParseStratumPrevHash(n.PrevHash); err != nil {
		return nil, fmt.Errorf("job %q: %w", n.JobID, err)
	}
	if j.coinb1, err = hex.DecodeString(n.Coinb1); err != nil {
		return nil, fmt.Errorf("job %q: coinb1 %.40q: %v", n.JobID, n.Coinb1, err)
	}
	if j.coinb2, err = hex.DecodeString(n.Coinb2); err != nil {
		return nil, fmt.Errorf("job %q: coinb2 %.40q: %v", n.JobID, n.Coinb2, err)
	}
	j.branch = make([]chainmath.Hash, len(n.Branch))
	for i, b := range n.Branch {
		if len(b) != 64 {
			return nil, fmt.Errorf("job %q: merkle branch %d %q: want 64 hex characters", n.JobID, i, b)
		}
		if _, err := hex.Decode(j.branch[i][:], []byte(b)); err != nil {
			return nil, fmt.Errorf("job %q: merkle branch %d %q: %v", n.JobID, i, b, err)
		}
	}
	if j.version, err = stratum.ParseHex32("version", n.Version); err != nil {
		return nil, fmt.Errorf("job %q: %w", n.JobID, err)
	}
	if j.nbits, err = stratum.ParseHex32("nbits", n.NBits); err != nil {
		return nil, fmt.Errorf("job %q: %w", n.JobID, err)
	}
	if j.ntime, err = stratum.ParseHex32("ntime", n.NTime); err != nil {
		return nil, fmt.Errorf("job %q: %w", n.JobID, err)
	}
	if j.target, err = chainmath.TargetForDifficulty(diff); err != nil {
		return nil, fmt.Errorf("job %q: %w", n.JobID, err)
	}
	j.parts = 1
	if en2Size < 2 {
		j.parts = 256
	}
	j.span = (1 << 32) / j.parts
	if span != 0 {
		j.parts, j.span = 1, min(span, 1<<32)
	}
	space := uint64(maxUnits)
	if en2Size < 8 {
		space = min(uint64(1)<<(8*en2Size), maxUnits)
	}
	j.units = min(space, maxUnits/j.parts) * j.parts
	return j, nil
}

// unit returns the extranonce2 and nonce range of work unit u.
func (j *job) unit(u uint64) (en2 []byte, start uint32, count uint64) {
	v := u / j.parts
	en2 = make([]byte, j.en2Size)
	for i := j.en2Size - 1; i >= 0 && v != 0; i-- { // big-endian counter
		en2[i] = byte(v)
		v >>= 8
	}
	return en2, uint32((u % j.parts) * j.span), j.span
}

// header builds the 80-byte header for extranonce2 and nonce, per
// STRATUM.md: coinbase = coinb1‖en1‖en2‖coinb2, root = sha256d(coinbase)
// folded with the branch, prevhash word-swapped back, fields little-endian.
func (j *job) header(en2 []byte, nonce uint32) [chainmath.HeaderSize]byte {
	cb := make([]byte, 0, len(j.coinb1)+len(j.en1)+len(en2)+len(j.coinb2))
	cb = append(cb, j.coinb1...)
	cb = append(cb, j.en1...)
	cb = append(cb, en2...)
	cb = append(cb, j.coinb2...)
	h := chainmath.Header{
		Version:    j.version,
		PrevBlock:  j.prev,
		MerkleRoot: chainmath.RootFromBranch(chainmath.DoubleSHA256(cb), j.branch),
		Time:       j.ntime,
		Bits:       j.nbits,
		Nonce:      nonce,
	}
	return h.Bytes()
}

// check recomputes the hash of a found nonce and reports whether it meets
// the share target.
func (j *job) check(en2 []byte, nonce uint32) (chainmath.Hash, bool) {
	hdr := j.header(en2, nonce)
	h := chainmath.DoubleSHA256(hdr[:])
	return h, j.target.Meets(&h)
}
