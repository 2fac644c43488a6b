package agent

import (
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
	*stratum.Job                  // the notify, decoded
	gen          uint64           // agent job generation, set when published
	sess         submitter        // the connection the job came from (shares go back there)
	root         *chainmath.Hash  // a Stratum V2 standard job's merkle root (no coinbase)
	en1          []byte           // the session's extranonce1
	en2Size      int              // extranonce2 length in bytes
	diff         float64          // share difficulty
	target       chainmath.Target // share target, T1/diff
	parts        uint64           // nonce ranges per extranonce2 (a power of two)
	span         uint64           // nonces per unit: 2^32 / parts
	units        uint64           // extranonce2 values × parts
	next         *atomic.Uint64   // next unit to hand out (shared by the session's jobs)
}

// maxUnits bounds the unit counter; 2^62 units is never reached.
const maxUnits = 1 << 62

// newJob decodes a notify with the session's extranonce and difficulty.
// span, when non-zero, pretends the nonce space of each extranonce2 is
// only span nonces (tests use it to make the agent roll extranonce2 soon).
func newJob(n *stratum.Notify, en1 []byte, en2Size int, diff float64, span uint64) (*job, error) {
	sj, err := stratum.DecodeNotify(n)
	if err != nil {
		return nil, err
	}
	j := &job{Job: sj, en1: en1, en2Size: en2Size, diff: diff, next: new(atomic.Uint64)}
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

// header builds the 80-byte header for extranonce2 and nonce (the
// agent does not roll the version).
func (j *job) header(en2 []byte, nonce uint32) [chainmath.HeaderSize]byte {
	if j.root != nil {
		h := j.HeaderWithRoot(*j.root, j.NTime, nonce, 0, 0)
		return h.Bytes()
	}
	h := j.Header(j.en1, en2, j.NTime, nonce, 0, 0)
	return h.Bytes()
}

// submitter sends a found share to the pool connection a job came from.
type submitter interface {
	submit(j *job, en2 []byte, nonce uint32)
}

// check recomputes the hash of a found nonce and reports whether it meets
// the share target.
func (j *job) check(en2 []byte, nonce uint32) (chainmath.Hash, bool) {
	hdr := j.header(en2, nonce)
	h := chainmath.DoubleSHA256(hdr[:])
	return h, j.target.Meets(&h)
}
