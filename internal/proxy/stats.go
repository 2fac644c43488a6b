package proxy

import (
	"encoding/hex"
	"encoding/json"
	"net/http"
	"sort"
)

// totals are the proxy's counters, guarded by Proxy.mu.
type totals struct {
	accepted, rejected                        uint64
	forwarded, upAccepted, upRejected, upLost uint64
	blocks                                    uint64
	upCodes                                   map[string]uint64
}

// Stats is a snapshot of the proxy: its upstream, its miners and what
// became of their shares.
type Stats struct {
	Upstream   string  `json:"upstream"`   // URL of the open channel ("" while none)
	Difficulty float64 `json:"difficulty"` // the channel's share difficulty
	Failovers  uint64  `json:"failovers"`  // upstream connections lost
	// Accepted and Rejected are the miners' shares as the proxy answered
	// them.
	Accepted uint64 `json:"accepted"`
	Rejected uint64 `json:"rejected"`
	// Forwarded shares met the channel's target and went upstream; the
	// pool accepted UpstreamAccepted and rejected UpstreamRejected of
	// them; Unanswered were waiting for an answer when their connection
	// was lost.
	Forwarded        uint64 `json:"forwarded"`
	UpstreamAccepted uint64 `json:"upstream_accepted"`
	UpstreamRejected uint64 `json:"upstream_rejected"`
	Unanswered       uint64 `json:"unanswered"`
	// RejectedUpstream counts the upstream rejections by error code.
	RejectedUpstream map[string]uint64 `json:"rejected_upstream"`
	// Blocks is the forwarded shares that met the network target.
	Blocks    uint64          `json:"blocks"`
	Upstreams []UpstreamStats `json:"upstreams"`
	Miners    []MinerStats    `json:"miners"`
}

// UpstreamStats counts one upstream's shares over all its connections.
type UpstreamStats struct {
	URL        string `json:"url"`
	Forwarded  uint64 `json:"forwarded"`
	Accepted   uint64 `json:"accepted"`
	Rejected   uint64 `json:"rejected"`
	Unanswered uint64 `json:"unanswered"`
}

// MinerStats is one connected miner.
type MinerStats struct {
	Worker           string         `json:"worker"`
	Remote           string         `json:"remote"`
	Extranonce1      string         `json:"extranonce1"`
	Difficulty       float64        `json:"difficulty"`
	Accepted         uint64         `json:"accepted"`
	Rejected         map[int]uint64 `json:"rejected"` // by Stratum error code
	Forwarded        uint64         `json:"forwarded"`
	UpstreamAccepted uint64         `json:"upstream_accepted"`
	UpstreamRejected uint64         `json:"upstream_rejected"`
}

// Stats returns a snapshot.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	t := p.totals
	s := Stats{Failovers: p.failovers, Accepted: t.accepted, Rejected: t.rejected, Forwarded: t.forwarded,
		UpstreamAccepted: t.upAccepted, UpstreamRejected: t.upRejected, Unanswered: t.upLost, Blocks: t.blocks}
	s.RejectedUpstream = make(map[string]uint64, len(t.upCodes))
	for c, n := range t.upCodes {
		s.RejectedUpstream[c] = n
	}
	if p.up != nil {
		s.Upstream, s.Difficulty = p.up.url, difficultyOf(p.up.target)
	}
	for _, u := range p.ups {
		s.Upstreams = append(s.Upstreams, *p.perUp[u.url])
	}
	for _, m := range p.miners {
		rej := make(map[int]uint64, len(m.rejected))
		for c, n := range m.rejected {
			rej[c] = n
		}
		s.Miners = append(s.Miners, MinerStats{Worker: m.user, Remote: m.remote, Extranonce1: hex.EncodeToString(m.en1), Difficulty: m.diff,
			Accepted: m.accepted, Rejected: rej, Forwarded: m.forwarded, UpstreamAccepted: m.upAccepted, UpstreamRejected: m.upRejected})
	}
	sort.Slice(s.Miners, func(i, k int) bool { return s.Miners[i].Extranonce1 < s.Miners[k].Extranonce1 })
	return s
}

// Handler serves GET /api/status: Stats as JSON.
func (p *Proxy) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(p.Stats())
	})
	return mux
}
