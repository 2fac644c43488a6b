package coordinator

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/btcsuite/btcd/wire/v2"
	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/jds"
	"github.com/powcoord/powcoord/internal/ledger"
	"github.com/powcoord/powcoord/internal/stratum"
	"github.com/powcoord/powcoord/internal/sv2"
)

// Custom jobs (Stratum V2 job declaration, mining side): a
// SetCustomMiningJob on an extended channel names a job declared to the
// Job Declarator Server (internal/jds). Once it matches the declaration
// it becomes one of the channel's jobs, under a job id of the channel's
// own sequence, so the share path (submit) finds it like any other job:
// the same validation, duplicates, ledger, accounting and found blocks.

// JobDeclarations is what the V2 front-end needs of a Job Declarator
// Server: *jds.Server implements it.
type JobDeclarations interface {
	// Claim returns the job declared under token, once.
	Claim(token []byte) (*jds.Job, error)
}

// DefaultExtranonce2Size is Config.Extranonce2Size's default; a V2
// extended channel's extranonce space is Extranonce1Size more (its
// extranonce prefix): what a declared coinbase leaves (jds.Config).
const (
	DefaultExtranonce2Size = 4
	Extranonce1Size        = 4
)

// SetCustomMiningJob.Error codes beside jds.ErrToken (the reference
// implementation's invalid-job-param-value-<field>).
const (
	SV2ErrCustomPrevHash = "invalid-job-param-value-prev-hash"
	SV2ErrCustomNBits    = "invalid-job-param-value-nbits"
	SV2ErrCustomVersion  = "invalid-job-param-value-version"
	SV2ErrCustomMinNTime = "invalid-job-param-value-min-ntime"
	SV2ErrCustomPath     = "invalid-job-param-value-merkle-path"
	SV2ErrCustomOutputs  = "invalid-job-param-value-coinbase-tx-outputs"
	SV2ErrCustomCoinbase = "invalid-job-param-value-coinbase-prefix"
)

// JDPayout returns the outputs a job declared by user must pay: the
// current epoch's PPLNS outputs, or in solo the user's payout script
// with the current template's coinbase value (jds.Config.Payout).
func (c *Coordinator) JDPayout(user string) (jds.Payout, error) {
	ep := c.jobs.current()
	if ep == nil {
		return jds.Payout{}, errors.New("coordinator: no work yet")
	}
	if ep.pplns != nil {
		return jds.Payout{Outputs: ep.pplns.outputs, Ref: ep.pplns}, nil
	}
	if err := ledger.CheckWorker(user); err != nil {
		return jds.Payout{}, err
	}
	script, err := c.scriptOf(user)
	if err != nil {
		return jds.Payout{}, err
	}
	return jds.Payout{Outputs: []*wire.TxOut{wire.NewTxOut(ep.tmpl.CoinbaseValue, script)}}, nil
}

// setCustomJob answers a SetCustomMiningJob.
func (v *v2conn) setCustomJob(m *sv2.SetCustomMiningJob) {
	fail := func(code, format string, args ...any) {
		v.c.log.Info("sv2 custom job refused", "remote", v.remote, "channel", m.ChannelID, "request", m.RequestID, "code", code, "reason", fmt.Sprintf(format, args...))
		v.write(&sv2.SetCustomMiningJobError{ChannelID: m.ChannelID, RequestID: m.RequestID, ErrorCode: code})
	}
	jd := v.c.cfg.JobDeclarations
	v.mu.Lock()
	ch := v.channels[m.ChannelID]
	selects := v.workSelect
	v.mu.Unlock()
	switch {
	case jd == nil || !selects:
		fail(SV2ErrCustomJobRefused, "the connection did not set up REQUIRES_WORK_SELECTION (or the pool serves no job declaration)")
		return
	case ch == nil || !ch.extended:
		fail(SV2ErrInvalidChannel, "channel %d is no extended channel of this connection", m.ChannelID)
		return
	}
	dj, err := jd.Claim(m.MiningJobToken)
	if err != nil {
		var r *jds.Refusal
		if errors.As(err, &r) {
			fail(r.Code, "%s", r.Detail)
		} else {
			fail(jds.ErrToken, "%v", err)
		}
		return
	}
	t := dj.Template
	cur := v.c.jobs.current()
	now := v.c.cfg.Now()
	enSize := len(ch.en1Bytes) + v.c.cfg.Extranonce2Size
	coinb1, coinb2, cbErr := jds.CustomCoinbase(m, enSize)
	path := make([]chainmath.Hash, len(m.MerklePath))
	for i, h := range m.MerklePath {
		path[i] = chainmath.Hash(h)
	}
	target, tErr := t.Target()
	switch {
	case chainmath.Hash(m.PrevHash) != t.PrevHash || cur == nil || cur.tmpl.PrevHash != t.PrevHash:
		fail(SV2ErrCustomPrevHash, "prev_hash %s: the declared job and the pool's tip build on %s", chainmath.Hash(m.PrevHash), t.PrevHash)
	case m.NBits != t.Bits || tErr != nil:
		fail(SV2ErrCustomNBits, "nbits %08x, the chain wants %08x", m.NBits, t.Bits)
	case m.Version != dj.Version:
		fail(SV2ErrCustomVersion, "version %08x, declared %08x", m.Version, dj.Version)
	case m.MinNTime < t.MinTime || int64(m.MinNTime) > now.Add(v.c.cfg.NTimeFuture).Unix():
		fail(SV2ErrCustomMinNTime, "min_ntime %d outside %d..%d", m.MinNTime, t.MinTime, now.Add(v.c.cfg.NTimeFuture).Unix())
	case !slices.Equal(path, dj.Branch):
		fail(SV2ErrCustomPath, "merkle_path of %d hashes is not the declared transactions' (%d)", len(path), len(dj.Branch))
	case cbErr != nil:
		fail(SV2ErrCustomOutputs, "%v", cbErr)
	case !bytes.Equal(m.CoinbaseTxOutputs, dj.Coinbase.Outputs):
		fail(SV2ErrCustomOutputs, "coinbase_tx_outputs %x are not the declared %x", m.CoinbaseTxOutputs, dj.Coinbase.Outputs)
	case !bytes.Equal(coinb1, dj.Coinbase.Coinb1) || !bytes.Equal(coinb2, dj.Coinbase.Coinb2):
		fail(SV2ErrCustomCoinbase, "coinbase (version, coinbase_prefix, nSequence, locktime, %d extranonce bytes) differs from the declared one", enSize)
	default:
		v.registerCustomJob(m, ch, dj, cur, coinb1, coinb2, target)
	}
}

// registerCustomJob makes the declared job one of ch's jobs, in the
// generation of the current epoch (so a new block makes it stale like
// any other), and answers SetCustomMiningJob.Success with its id.
func (v *v2conn) registerCustomJob(m *sv2.SetCustomMiningJob, ch *v2channel, dj *jds.Job, cur *epoch, coinb1, coinb2 []byte, target chainmath.Target) {
	t := dj.Template
	pj, _ := dj.Payout.Ref.(*pplnsJob)
	ep := &epoch{
		gen: cur.gen, tmpl: t, ntime: m.MinNTime, made: time.Now(),
		prevHex: chainmath.StratumPrevHash(t.PrevHash), branch: dj.Branch, versionHex: stratum.Hex32(m.Version),
		nbitsHex: stratum.Hex32(m.NBits), ntimeHex: stratum.Hex32(m.MinNTime), target: target,
		en1Size: len(ch.en1Bytes), en2Size: v.c.cfg.Extranonce2Size, pplns: pj,
	}
	cb := &coinbaseParts{coinb1: coinb1, coinb2: coinb2, coinb1Hex: hex.EncodeToString(coinb1), coinb2Hex: hex.EncodeToString(coinb2),
		sj: &stratum.Job{PrevHash: t.PrevHash, Coinb1: coinb1, Coinb2: coinb2, Branch: dj.Branch, Version: m.Version, Bits: m.NBits, NTime: m.MinNTime}}
	v.mu.Lock()
	if v.channels[ch.id] != ch {
		v.mu.Unlock()
		return // closed meanwhile
	}
	ch.addJob(ep, cb)
	id := ch.jobSeq
	v.writeLocked(&sv2.SetCustomMiningJobSuccess{ChannelID: ch.id, RequestID: m.RequestID, JobID: id})
	v.mu.Unlock()
	v.c.log.Info("sv2 custom job set", "remote", v.remote, "user", ch.user, "channel", ch.id, "job", id, "height", t.Height, "transactions", len(t.Txs), "coinbase_value", t.CoinbaseValue)
}
