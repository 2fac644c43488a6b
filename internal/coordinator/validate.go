package coordinator

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/stratum"
)

// shareFacts is what share validation needs to know besides the job and
// the submission: the session's state when the share arrived and the
// coordinator's limits. The session copies them under its lock; validation
// itself takes no lock and does no I/O.
type shareFacts struct {
	subscribed bool
	authorized bool // the submitting worker name is authorized
	en1        [4]byte
	en2Size    int    // bytes of extranonce2 the miner must send
	mask       uint32 // version bits the miner may roll
	stale      bool   // the job no longer builds on the tip
	now        time.Time
	// payTo is the submitting worker's payout script: a job whose
	// coinbase pays another (coinbaseParts.payTo) is not its work.
	payTo []byte
	// ntimeFuture is how far past now an ntime may be; the template's
	// own limit (Template.MaxTimeAt) applies as well.
	ntimeFuture time.Duration

	// For the reject rule only (banCountable), not for validation:
	// expired is set when the job id names a job this connection was
	// sent that our own job changes have since dropped; current is the
	// connection's difficulty now (a share below its job's difficulty
	// but meeting current was found after we lowered it).
	expired bool
	current float64
}

// eased reports whether v is a low-difficulty rejection that meets the
// connection's current difficulty: caused by our lowering it (miners
// apply mining.set_difficulty to the job at hand).
func (f *shareFacts) eased(v *verdict) bool {
	return v.reason == ReasonLowDifficulty && v.hashed && f.current > 0 && chainmath.HashDifficulty(v.hash) >= f.current
}

// verdict is the outcome of validating one share.
type verdict struct {
	err    *stratum.Error // nil: the share is valid
	reason string         // the rejection reason (Reason*); "" when valid

	// Set once the header could be rebuilt (also for some rejections).
	header  chainmath.Header
	raw     [chainmath.HeaderSize]byte
	hash    chainmath.Hash // the work: what duplicates are keyed by
	hashed  bool
	block   bool   // the hash meets the block target (even when stale)
	cb      []byte // the coinbase as mined, when block is set
	ntime   uint32
	nonce   uint32
	version uint32
}

func rejectf(code int, reason, format string, args ...any) verdict {
	return verdict{err: &stratum.Error{Code: code, Message: fmt.Sprintf(format, args...)}, reason: reason}
}

// validateShare judges submission p against job j (nil when the job id is
// unknown) and the session facts f. It checks, in order: subscribed,
// worker authorized, job known, what the parser could not read (p.bad),
// extranonce2 size, ntime window, version bits within the mask; then it
// rebuilds the header and hashes it, and checks stale and the share
// target. A share that meets the block target is marked block even when
// its job is stale (a late block may still win). scratch is reused for
// the coinbase.
//
// Duplicates are not judged here: they depend on what the ledger has
// already made durable, which the connection tracks (shareLane).
func validateShare(j *job, f *shareFacts, p *submission, scratch []byte) (verdict, []byte) {
	if !f.subscribed {
		return rejectf(stratum.CodeNotSubscribed, ReasonNotSubscribed, "not subscribed"), scratch
	}
	if !f.authorized {
		return rejectf(stratum.CodeUnauthorized, ReasonUnauthorized, "worker %q is not authorized", p.worker), scratch
	}
	if j == nil {
		return rejectf(stratum.CodeJobNotFound, ReasonJobNotFound, "job %q not found", p.jobID), scratch
	}
	if p.bad != nil {
		return *p.bad, scratch
	}
	if len(p.en2) != f.en2Size {
		return rejectf(stratum.CodeOther, ReasonExtranonce2, "extranonce2 %s: want %d bytes", hex.EncodeToString(p.en2), f.en2Size), scratch
	}
	ntime, nonce, vbits := p.ntime, p.nonce, p.vbits
	if ntime < j.ep.ntime {
		return rejectf(stratum.CodeOther, ReasonNTime, "ntime %08x is before the job's %s", ntime, j.ep.ntimeHex), scratch
	}
	if limit := ntimeLimit(j, f); int64(ntime) > limit {
		return rejectf(stratum.CodeOther, ReasonNTime, "ntime %08x (%d) is past the latest valid time %d", ntime, ntime, limit), scratch
	}
	if p.hasVBits && vbits&^f.mask != 0 {
		return rejectf(stratum.CodeOther, ReasonVersion, "version bits %08x outside the mask %08x", vbits, f.mask), scratch
	}

	sj := j.cb.sj
	cb := sj.AppendCoinbase(scratch[:0], f.en1[:], p.en2)
	v := verdict{ntime: ntime, nonce: nonce, hashed: true}
	v.header = sj.HeaderWithRoot(sj.RootOf(cb), ntime, nonce, vbits, f.mask)
	v.version = v.header.Version
	v.raw = v.header.Bytes()
	v.hash = chainmath.DoubleSHA256(v.raw[:])
	if j.ep.target.Meets(&v.hash) {
		v.block = true
		v.cb = append([]byte(nil), cb...)
	}
	if j.cb.payTo != nil && !bytes.Equal(j.cb.payTo, f.payTo) {
		// Another worker's job: its coinbase pays that worker's
		// address. Not a share of this worker's; a block is still a
		// block, and pays whom its coinbase pays.
		v.err = &stratum.Error{Code: stratum.CodeOther, Message: fmt.Sprintf("job %q pays another address than worker %q: mine each worker's own jobs", p.jobID, p.worker)}
		v.reason = ReasonWrongPayout
		return v, cb
	}
	if f.stale {
		v.err = &stratum.Error{Code: stratum.CodeJobNotFound, Message: fmt.Sprintf("job %q is stale", p.jobID)}
		v.reason = ReasonStale
		return v, cb
	}
	if !v.block && !j.tgt.Meets(&v.hash) {
		v.err = &stratum.Error{Code: stratum.CodeLowDifficulty, Message: fmt.Sprintf("low difficulty share: %.6g, want %.6g", chainmath.HashDifficulty(v.hash), j.diff)}
		v.reason = ReasonLowDifficulty
	}
	return v, cb
}

// ntimeLimit is the latest ntime a share of j may carry at f.now: the
// coordinator's window past its clock, and no later than the template's
// own limit (the embedded chain's bound, or a node's consensus rule).
func ntimeLimit(j *job, f *shareFacts) int64 {
	limit := f.now.Add(f.ntimeFuture).Unix()
	if m := j.ep.tmpl.MaxTimeAt(f.now); m != 0 {
		limit = min(limit, int64(m))
	}
	return limit
}

// parseSubmit reads a V1 mining.submit's hex fields into sub, decoding
// extranonce2 into buf; a field it cannot read sets sub.bad.
func parseSubmit(p *stratum.Submit, en2Size int, sub *submission, buf *[16]byte) {
	*sub = submission{worker: p.Worker, jobID: p.JobID, en2Hex: p.Extranonce2}
	bad := func(v verdict) { sub.bad = &v }
	switch {
	case len(p.Extranonce2) != 2*en2Size || en2Size > len(buf):
		bad(rejectf(stratum.CodeOther, ReasonExtranonce2, "extranonce2 %q: want %d bytes", p.Extranonce2, en2Size))
		return
	default:
		if _, err := hex.Decode(buf[:en2Size], []byte(p.Extranonce2)); err != nil {
			bad(rejectf(stratum.CodeOther, ReasonExtranonce2, "extranonce2 %q: not hex", p.Extranonce2))
			return
		}
		sub.en2 = buf[:en2Size]
	}
	var err error
	if sub.ntime, err = stratum.ParseHex32("ntime", p.NTime); err != nil {
		bad(rejectf(stratum.CodeOther, ReasonNTime, "%v", err))
		return
	}
	if sub.nonce, err = stratum.ParseHex32("nonce", p.Nonce); err != nil {
		bad(rejectf(stratum.CodeOther, ReasonMalformed, "%v", err))
		return
	}
	if p.VersionBits != "" {
		if sub.vbits, err = stratum.ParseHex32("version bits", p.VersionBits); err != nil {
			bad(rejectf(stratum.CodeOther, ReasonVersion, "%v", err))
			return
		}
		sub.hasVBits = true
	}
}
