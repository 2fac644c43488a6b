// Package web serves the coordinator's HTTP side: the JSON API
// (/api/status, /api/blocks, /api/history, /api/simulation,
// /api/miners, /api/best, /api/workers, /api/workers/{name}, /api/bans), the live
// event stream (/api/events) and the dashboard at /, whose static files
// are embedded in the binary.
package web

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/coordinator"
	"github.com/powcoord/powcoord/internal/ledger"
	"github.com/powcoord/powcoord/internal/store"
)

// Server is the HTTP handler of a coordinator.
type Server struct {
	coord *coordinator.Coordinator
	store *store.Store
	log   *slog.Logger
	mux   *http.ServeMux
	live  live
}

// New returns the HTTP handler for coord, reading blocks from st. Run
// feeds its live charts and event stream.
func New(coord *coordinator.Coordinator, st *store.Store, logger *slog.Logger) *Server {
	if logger == nil {
		logger = slog.Default()
	}
	s := &Server{coord: coord, store: st, log: logger, mux: http.NewServeMux()}
	s.live = live{interval: time.Second, blockTime: 10 * time.Minute, subs: map[chan []byte]struct{}{}, lastHeight: -1}
	api := API{Status: coordStatus{coord}, Blocks: st, Workers: st, History: st, Best: coordBest{coord}, Miners: coord,
		NoLedger: "this coordinator's store keeps no payout records"}
	if plan := coord.Plan(); plan != nil {
		api.Window = &WindowSource{Ledger: st, ScriptOf: plan.ScriptOf}
	}
	api.Register(s.mux, logger)
	s.mux.HandleFunc("GET /api/history", s.handleHistory)
	s.mux.HandleFunc("GET /api/events", s.handleEvents)
	s.mux.HandleFunc("GET /api/simulation", s.handleSimulation)
	s.mux.Handle("GET /", dashboardHandler())
	return s
}

// HandleBans registers the ban routes (BanRoutes) for the coordinator,
// lifting bans as access allows. Call it before serving.
func (s *Server) HandleBans(access BanAccess) {
	BanRoutes(s.mux, func() BanList { return s.coord }, access, s.log)
}

// Handle registers an extra handler (dashboard, metrics) on the server.
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Block is one block in GET /api/blocks.
type Block struct {
	Height     int64     `json:"height"`
	Hash       string    `json:"hash"`   // display hex
	Header     string    `json:"header"` // 80-byte raw header, hex
	PrevHash   string    `json:"prev_hash"`
	Bits       string    `json:"bits"`
	Difficulty float64   `json:"difficulty"`
	Finder     string    `json:"finder"`
	Time       time.Time `json:"time"`             // header time
	FoundAt    time.Time `json:"found_at"`         // when it was stored
	Interval   *float64  `json:"interval_seconds"` // header time since the previous block listed
}

// BlockJSON converts stored blocks (oldest first) to their API form.
func BlockJSON(blocks []ledger.Block) []Block {
	out := make([]Block, 0, len(blocks))
	for i, b := range blocks {
		h, _ := chainmath.ParseHeader(b.Header[:])
		d, _ := chainmath.CompactToDifficulty(h.Bits)
		jb := Block{
			Height:     b.Height,
			Hash:       b.Hash.String(),
			Header:     hex.EncodeToString(b.Header[:]),
			PrevHash:   h.PrevBlock.String(),
			Bits:       fmt.Sprintf("%08x", h.Bits),
			Difficulty: d,
			Finder:     b.Finder,
			Time:       time.Unix(int64(b.Time), 0).UTC(),
			FoundAt:    b.FoundAt.UTC(),
		}
		if i > 0 {
			iv := float64(int64(b.Time) - int64(blocks[i-1].Time))
			jb.Interval = &iv
		}
		out = append(out, jb)
	}
	return out
}

// BlockReader is where GET /api/blocks reads blocks: the coordinator's
// SQLite store, or a cluster's chain (chainstore.View).
type BlockReader interface {
	// Blocks returns the blocks with height >= fromHeight, oldest first,
	// at most limit (<= 0: all).
	Blocks(ctx context.Context, fromHeight int64, limit int) ([]ledger.Block, error)
	// LastBlocks returns the newest n blocks, oldest first.
	LastBlocks(ctx context.Context, n int) ([]ledger.Block, error)
}

// BlocksHandler serves GET /api/blocks from br: blocks oldest first
// (BlockJSON). ?from=H starts at height H; ?last=N returns only the
// newest N; ?limit=N caps the count. A parameter that is not a
// non-negative integer is a 400 naming it; a failed read a 500 (logged
// to log).
func BlocksHandler(br BlockReader, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		from, err := intParam(q.Get("from"), 0)
		if err != nil {
			http.Error(w, "from: "+err.Error(), http.StatusBadRequest)
			return
		}
		limit, err := intParam(q.Get("limit"), 0)
		if err != nil {
			http.Error(w, "limit: "+err.Error(), http.StatusBadRequest)
			return
		}
		last, err := intParam(q.Get("last"), 0)
		if err != nil {
			http.Error(w, "last: "+err.Error(), http.StatusBadRequest)
			return
		}
		var blocks []ledger.Block
		if last > 0 {
			blocks, err = br.LastBlocks(r.Context(), int(last))
		} else {
			blocks, err = br.Blocks(r.Context(), from, int(limit))
		}
		if err != nil {
			log.Error("reading blocks", "err", err)
			http.Error(w, "reading blocks failed", http.StatusInternalServerError)
			return
		}
		writeJSON(w, BlockJSON(blocks))
	})
}

func intParam(s string, def int64) (int64, error) {
	if s == "" {
		return def, nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("%q is not a non-negative integer", s)
	}
	return v, nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
