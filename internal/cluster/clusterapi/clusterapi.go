// Package clusterapi reads what a cluster coordinator's HTTP API reports
// about the cluster itself: its role, the live members from their
// heartbeats, the tip and the next block's difficulty (GET /api/status,
// GET /api/cluster). internal/web serves it beside the readers every
// coordinator shares (blocks, workers, best, miners, payout windows).
package clusterapi

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/cluster/chainstore"
	"github.com/powcoord/powcoord/internal/cluster/jobs"
	"github.com/powcoord/powcoord/internal/cluster/leader"
	"github.com/powcoord/powcoord/internal/cluster/members"
	"github.com/powcoord/powcoord/internal/work"
)

// Reader reads a cluster coordinator's view of the cluster.
type Reader struct {
	Runner  *leader.Runner
	Members jetstream.KeyValue
	// Chain is the embedded chain in CHAIN (nil with --node); Node the
	// --node source, followed by every coordinator, active or standby
	// (nil on the embedded chain).
	Chain *chainstore.View
	Node  work.Source
	// LastJob reads the cluster's current job (jobs.Last), for a
	// standby's next-block difficulty; may be nil.
	LastJob func(context.Context) (*jobs.Job, error)
	Started time.Time
}

// Cluster is GET /api/cluster of a cluster coordinator.
type Cluster struct {
	Coordinator leader.State `json:"coordinator"`
	Source      *work.Status `json:"source,omitempty"` // while active
	// The live members of the cluster, from their heartbeats: every
	// coordinator (state active or standby), front-end and ledger writer.
	Coordinators []members.Member `json:"coordinators"`
	Frontends    []members.Member `json:"frontends"`
	Ledgers      []members.Member `json:"ledgers"`
	MembersError string           `json:"members_error,omitempty"`
}

// Status is GET /api/status of a cluster coordinator: the fields of a
// single coordinator's /api/status that describe the whole cluster,
// followed by the fields of /api/cluster (Cluster).
type Status struct {
	Time   time.Time `json:"time"`
	Uptime float64   `json:"uptime_seconds"` // of this coordinator
	Role   string    `json:"role"`           // this coordinator's: active or standby
	// Active is the heartbeat of the active coordinator (its id and
	// http address); null while none is listed.
	Active *members.Member `json:"active"`

	// The block being mined: Height is the tip's + 1, PrevHash the
	// tip's hash. TipFrom says where the tip was read: "source" (the
	// active coordinator's embedded chain or node), "node" (a standby's
	// --node) or "chain" (a standby's read of the CHAIN stream).
	Height    int64  `json:"height"`
	PrevHash  string `json:"prev_hash"`
	TipHeight int64  `json:"tip_height"` // -1 while the chain has no block
	TipHash   string `json:"tip_hash"`
	TipFrom   string `json:"tip_from"`
	// The next block's compact target and difficulty, from the source
	// this coordinator follows; null on a standby of the embedded chain
	// (ask the active one).
	Bits       *string  `json:"bits"`
	Difficulty *float64 `json:"difficulty"`
	ChainError string   `json:"chain_error,omitempty"`

	// Sums over the live front-ends' heartbeats.
	Sessions        int     `json:"sessions"`
	SharesPerSecond float64 `json:"shares_per_second"`
	Accepted        uint64  `json:"accepted"`
	// LedgerLag is the largest lag (shares not yet in the ledger) any
	// live ledger writer reports; null when none does.
	LedgerLag *uint64 `json:"ledger_lag_messages"`

	Cluster
}

// Cluster reads this coordinator's role, its source while active, and
// every live member from the heartbeats.
func (r *Reader) Cluster(ctx context.Context) Cluster {
	st := Cluster{Coordinator: r.Runner.State()}
	if src := r.Runner.Source(); src != nil {
		s := src.Status()
		st.Source = &s
	}
	lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	all, err := members.List(lctx, r.Members)
	cancel()
	if err != nil {
		st.MembersError = err.Error()
	}
	st.Coordinators, st.Frontends, st.Ledgers = []members.Member{}, []members.Member{}, []members.Member{}
	for _, m := range all {
		switch m.Role {
		case members.RoleFrontend:
			st.Frontends = append(st.Frontends, m)
		case members.RoleLedger:
			st.Ledgers = append(st.Ledgers, m)
		case members.RoleCoordinator:
			st.Coordinators = append(st.Coordinators, m)
		}
	}
	return st
}

// Status implements web.StatusReader: the cluster's state (Status); a
// cluster lists no workers of its own, so offset and limit select
// nothing (each front-end's /api/status lists its workers).
func (r *Reader) Status(ctx context.Context, offset, limit int) (any, error) {
	return r.status(ctx), nil
}

// RoundStart returns when the tip of the embedded chain in CHAIN was
// found (the start of the current round, for GET /api/best's
// since_block); ok false following a node, whose blocks the cluster does
// not time, or while the chain has no block.
func (r *Reader) RoundStart(ctx context.Context) (time.Time, bool, error) {
	if r.Chain == nil {
		return time.Time{}, false, nil
	}
	tip, ok, err := r.Chain.Tip(ctx)
	if err != nil || !ok {
		return time.Time{}, false, err
	}
	return tip.FoundAt, true, nil
}

// NextTemplate returns the template the cluster's next block is built
// on: the active source's, a --node's, or the newest job's in the JOBS
// stream (a standby of the embedded chain).
func (r *Reader) NextTemplate(ctx context.Context) (*work.Template, error) {
	if r.Runner != nil {
		if src := r.Runner.Source(); src != nil {
			return src.Current(), nil
		}
	}
	if r.Node != nil {
		return r.Node.Current(), nil
	}
	if r.LastJob == nil {
		return nil, errors.New("clusterapi: no source, node or job stream to read the next block's template from")
	}
	j, err := r.LastJob(ctx)
	if err != nil {
		return nil, fmt.Errorf("clusterapi: the newest job: %w", err)
	}
	return j.Template, nil
}

func (r *Reader) status(ctx context.Context) Status {
	now := time.Now().UTC()
	st := Status{Time: now, Uptime: now.Sub(r.Started).Seconds(), Cluster: r.Cluster(ctx), TipHeight: -1}
	st.Role = st.Coordinator.Role
	for i, m := range st.Coordinators {
		if m.State == "active" {
			st.Active = &st.Coordinators[i]
			break
		}
	}
	for _, f := range st.Frontends {
		st.Sessions += f.Sessions
		st.SharesPerSecond += f.SharesPerSecond
		st.Accepted += f.Accepted
	}
	for _, l := range st.Ledgers {
		if l.LagMessages != nil && (st.LedgerLag == nil || *l.LagMessages > *st.LedgerLag) {
			v := *l.LagMessages
			st.LedgerLag = &v
		}
	}
	src, from := r.Runner.Source(), "source"
	if src == nil && r.Node != nil {
		src, from = r.Node, "node"
	}
	if src != nil {
		t := src.Current()
		bits := fmt.Sprintf("%08x", t.Bits)
		d, _ := chainmath.CompactToDifficulty(t.Bits)
		st.Height, st.PrevHash, st.TipHeight, st.TipHash, st.TipFrom = t.Height, t.PrevHash.String(), t.Height-1, t.PrevHash.String(), from
		st.Bits, st.Difficulty = &bits, &d
		return st
	}
	st.TipFrom = "chain"
	if r.Chain == nil {
		return st
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	tip, ok, err := r.Chain.Tip(cctx)
	if err != nil {
		st.ChainError = err.Error()
	}
	if ok {
		st.TipHeight, st.TipHash = tip.Height, tip.Hash.String()
		st.Height, st.PrevHash = tip.Height+1, st.TipHash
		// The next block's bits: the active coordinator's newest job,
		// when it builds on the tip read here.
		if r.LastJob != nil {
			if j, err := r.LastJob(cctx); err == nil && j.Template.PrevHash == tip.Hash {
				bits := fmt.Sprintf("%08x", j.Template.Bits)
				d, _ := chainmath.CompactToDifficulty(j.Template.Bits)
				st.Bits, st.Difficulty = &bits, &d
			}
		}
	}
	return st
}
