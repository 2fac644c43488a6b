package coordinator

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/btcsuite/btcd/wire/v2"
	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/stratum"
	"github.com/powcoord/powcoord/internal/work"
)

// epoch is one unit of work shared by every session: a template and the
// ntime it starts with. A clean epoch (new previous block) makes every
// job of older generations stale.
type epoch struct {
	gen   uint64 // increments with each new previous block
	clean bool
	tmpl  *work.Template
	ntime uint32

	prevHex    string
	branch     []chainmath.Hash
	branchHex  []string
	versionHex string
	nbitsHex   string
	ntimeHex   string
	target     chainmath.Target

	made time.Time // when the epoch was made: notify latency and job age

	en1Size, en2Size int
	tag              []byte
	pplns            *pplnsJob // nil: each session's own payout (solo)

	mu       sync.RWMutex
	byPayout map[payoutKey]*coinbaseParts
	lines    map[notifyKey][2][]byte // notify line around the job id
	jobs     map[jobKey]*job         // V1 jobs, shared by the sessions
}

// jobKey picks one shared job of an epoch.
type jobKey struct {
	cb   *coinbaseParts
	diff float64
}

// jobRef is a session's handle on a shared job: the id it was sent under.
type jobRef struct {
	seq uint64
	j   *job
}

// job returns the epoch's job for a coinbase and share difficulty, made
// once and shared by every session that gets it (tgt is diff's target).
func (ep *epoch) job(cb *coinbaseParts, diff float64, tgt chainmath.Target) *job {
	k := jobKey{cb, diff}
	// Read-locked first: a broadcast asks for the same few jobs from
	// every session at once.
	ep.mu.RLock()
	j := ep.jobs[k]
	ep.mu.RUnlock()
	if j != nil {
		return j
	}
	ep.mu.Lock()
	defer ep.mu.Unlock()
	if j := ep.jobs[k]; j != nil {
		return j
	}
	if ep.jobs == nil {
		ep.jobs = make(map[jobKey]*job)
	}
	j = &job{ep: ep, cb: cb, diff: diff, tgt: tgt}
	ep.jobs[k] = j
	return j
}

// notifyKey picks one cached mining.notify line of an epoch.
type notifyKey struct {
	cb    *coinbaseParts
	clean bool
}

// payoutKey picks one coinbase of an epoch: the output script it pays
// (empty under PPLNS) and the variant of the work (chainmath.CoinbaseParams).
type payoutKey struct {
	script  string
	variant uint8
}

// maxVariant is how many times one session's work for one epoch can be
// re-issued with a new difficulty; past it a difficulty change waits for
// the next epoch (at most the refresh interval), so a miner flooding
// suggestions cannot grow an epoch's coinbase table without bound.
const maxVariant = 255

// reissue picks the coinbase variant of the work a session or channel is
// sent: 0 for an epoch's first job, a new one for each re-issue of the
// same epoch (a difficulty change), so no two jobs of one session share a
// header however the miner picks extranonce2 and ntime.
type reissue struct {
	ep *epoch
	n  uint8
}

// variant returns the variant for the next job of ep; ok is false once
// ep's variants are used up (the change then waits for the next epoch).
func (r *reissue) variant(ep *epoch) (v uint8, ok bool) {
	if r.ep != ep {
		r.ep, r.n = ep, 0
		return 0, true
	}
	if r.n == maxVariant {
		return 0, false
	}
	r.n++
	return r.n, true
}

// coinbaseParts is a coinbase split around the extranonce, for one payout,
// and the Stratum job it makes (shared by every session with that payout):
// stratum.Job owns the header-rebuilding rule for everyone.
type coinbaseParts struct {
	// payTo is the output script this coinbase pays in full (solo): only
	// a worker paid to it may submit shares on its jobs. nil when the
	// coinbase pays the epoch's outputs (PPLNS), whoever mines it.
	payTo                []byte
	coinb1, coinb2       []byte
	coinb1Hex, coinb2Hex string
	sj                   *stratum.Job
}

// job is work sent to a session: an epoch, the coinbase for the
// session's payout and the share difficulty in force when it was sent. A
// V1 job is shared by every session with the same epoch, payout and
// difficulty (epoch.job) and has no id of its own: each session names it
// by its own sequence number (jobRef). A V2 channel's job is its own.
type job struct {
	id   string
	ep   *epoch
	cb   *coinbaseParts
	diff float64
	tgt  chainmath.Target
}

// jobBook holds the current epoch.
type jobBook struct {
	cfg *Config
	// pplns, when set (PPLNS mode), computes the payout of a new epoch
	// from the ledger.
	pplns func(*work.Template) (*pplnsJob, error)
	gen   atomic.Uint64
	cur   atomic.Pointer[epoch]
}

func newJobBook(cfg *Config) *jobBook { return &jobBook{cfg: cfg} }

func (b *jobBook) current() *epoch { return b.cur.Load() }

// update makes t the current work and reports whether it is a new block:
// a previous hash other than the current epoch's (or the first template).
// A new block starts a new generation, which makes every older job stale.
// The previous hash alone decides, whatever brought t (the refresh ticker,
// a new-block signal, a long-poll or our own found block): the caller
// cannot get it wrong by the path it took.
func (b *jobBook) update(t *work.Template) (clean bool, err error) {
	if t == nil {
		return false, fmt.Errorf("work source has no template")
	}
	target, err := t.Target()
	if err != nil {
		return false, fmt.Errorf("template at height %d: %w", t.Height, err)
	}
	cur := b.current()
	clean = cur == nil || cur.tmpl.PrevHash != t.PrevHash
	// The generation moves before anything below can fail: once the
	// chain has a new block, jobs on the old tip are stale even while no
	// new work can be made.
	gen := b.gen.Load()
	if clean {
		gen = b.gen.Add(1)
	}
	ntime := t.CurTime
	if now := uint32(b.cfg.Now().Unix()); now > ntime {
		ntime = now
	}
	if ntime < t.MinTime {
		ntime = t.MinTime
	}
	var pj *pplnsJob
	if b.pplns != nil {
		if pj, err = b.pplns(t); err != nil {
			return false, err
		}
	} else if len(t.CoinbaseOutputs) > 0 {
		// Outputs fixed by the source (a cluster leader's PPLNS split):
		// every session's coinbase pays exactly these. The leader
		// records the payout; this coordinator does not.
		pj = &pplnsJob{outputs: t.CoinbaseOutputs, fixed: true}
	}
	branch := chainmath.MerkleBranch(t.TxIDs())
	ep := &epoch{
		gen:        gen,
		clean:      clean,
		tmpl:       t,
		ntime:      ntime,
		made:       time.Now(),
		prevHex:    chainmath.StratumPrevHash(t.PrevHash),
		branch:     branch,
		branchHex:  make([]string, len(branch)),
		versionHex: stratum.Hex32(t.Version),
		nbitsHex:   stratum.Hex32(t.Bits),
		ntimeHex:   stratum.Hex32(ntime),
		target:     target,
		en1Size:    4,
		en2Size:    b.cfg.Extranonce2Size,
		tag:        []byte(b.cfg.CoinbaseTag),
		pplns:      pj,
		byPayout:   make(map[payoutKey]*coinbaseParts),
		lines:      make(map[notifyKey][2][]byte),
	}
	for i, h := range branch {
		ep.branchHex[i] = hex.EncodeToString(h[:])
	}
	b.cur.Store(ep)
	return clean, nil
}

// stale reports whether a job of epoch ep no longer builds on the tip.
func (b *jobBook) stale(ep *epoch) bool { return ep.gen != b.gen.Load() }

// coinbase returns the coinbase paying script, built once per epoch and
// variant; under PPLNS every session gets the epoch's one PPLNS coinbase
// of that variant. Variant 0 is the work first sent; a re-issue for a new
// difficulty takes the next one, so it never repeats a header.
func (ep *epoch) coinbase(script []byte, variant uint8) (*coinbaseParts, error) {
	if ep.pplns != nil {
		script = nil
	}
	key := payoutKey{string(script), variant}
	ep.mu.RLock()
	cb, ok := ep.byPayout[key]
	ep.mu.RUnlock()
	if ok {
		return cb, nil
	}
	outs := []*wire.TxOut{wire.NewTxOut(ep.tmpl.CoinbaseValue, script)}
	if ep.pplns != nil {
		outs = ep.pplns.outputs
	}
	ep.mu.Lock()
	defer ep.mu.Unlock()
	if cb, ok := ep.byPayout[key]; ok {
		return cb, nil
	}
	c1, c2, err := chainmath.BuildCoinbase(chainmath.CoinbaseParams{
		Height:            ep.tmpl.Height,
		ExtranonceSize:    ep.en1Size + ep.en2Size,
		Tag:               ep.tag,
		Variant:           variant,
		Outputs:           outs,
		WitnessCommitment: ep.tmpl.WitnessCommitment,
	})
	if err != nil {
		return nil, fmt.Errorf("coinbase for height %d: %w", ep.tmpl.Height, err)
	}
	cb = &coinbaseParts{payTo: script, coinb1: c1, coinb2: c2, coinb1Hex: hex.EncodeToString(c1), coinb2Hex: hex.EncodeToString(c2),
		sj: &stratum.Job{PrevHash: ep.tmpl.PrevHash, Coinb1: c1, Coinb2: c2, Branch: ep.branch, Version: ep.tmpl.Version, Bits: ep.tmpl.Bits, NTime: ep.ntime}}
	ep.byPayout[key] = cb
	return cb, nil
}

// notify returns the mining.notify params for j.
func (j *job) notify(clean bool) *stratum.Notify {
	return &stratum.Notify{
		JobID:    j.id,
		PrevHash: j.ep.prevHex,
		Coinb1:   j.cb.coinb1Hex,
		Coinb2:   j.cb.coinb2Hex,
		Branch:   j.ep.branchHex,
		Version:  j.ep.versionHex,
		NBits:    j.ep.nbitsHex,
		NTime:    j.ep.ntimeHex,
		Clean:    clean,
	}
}

// appendNotify appends j's mining.notify line. The line is the same for
// every session with the same payout but for the job id, so it is encoded
// once per epoch, payout and clean flag and the id spliced in: a broadcast
// to many sessions then costs a copy per session, not a JSON encoding.
func (ep *epoch) appendNotify(buf []byte, j *job, clean bool) []byte {
	return ep.appendNotifyID(buf, j, []byte(j.id), clean)
}

// appendNotifyID is appendNotify with the job id given (hex).
func (ep *epoch) appendNotifyID(buf []byte, j *job, id []byte, clean bool) []byte {
	k := notifyKey{j.cb, clean}
	ep.mu.RLock()
	parts, ok := ep.lines[k]
	ep.mu.RUnlock()
	if !ok {
		parts = ep.notifyParts(j, k, clean)
	}
	if parts[0] == nil {
		n := j.notify(clean)
		n.JobID = string(id)
		line, _ := stratum.AppendRequest(buf, nil, "mining.notify", n)
		return line
	}
	buf = append(buf, parts[0]...)
	buf = append(buf, id...) // hex: nothing to escape
	return append(buf, parts[1]...)
}

// notifyParts encodes and caches the notify line of k around its job id;
// nil parts when the line cannot be split (then every session's line is
// encoded whole).
func (ep *epoch) notifyParts(j *job, k notifyKey, clean bool) [2][]byte {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	if parts, ok := ep.lines[k]; ok {
		return parts
	}
	{
		n := j.notify(clean)
		n.JobID = ""
		line, err := stratum.AppendRequest(nil, nil, "mining.notify", n)
		i := bytes.Index(line, []byte(`"params":[""`))
		if err != nil || i < 0 {
			return [2][]byte{}
		}
		i += len(`"params":["`)
		parts := [2][]byte{line[:i:i], line[i:]}
		ep.lines[k] = parts
		return parts
	}
}
