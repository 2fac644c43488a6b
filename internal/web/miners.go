package web

import (
	"net/http"
)

// handleMiner serves GET /api/miners/{address}: the payout address's work
// in the current window, its estimated part of the next block and its
// payouts so far (docs/payouts.md).
func (s *Server) handleMiner(w http.ResponseWriter, r *http.Request) {
	rep, err := s.coord.Miner(r.Context(), r.PathValue("address"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	writeJSON(w, rep)
}

// handleMiners serves GET /api/miners: every payout address in the
// current window, most work first.
func (s *Server) handleMiners(w http.ResponseWriter, r *http.Request) {
	list, err := s.coord.MinersWindow(r.Context())
	if err != nil {
		s.log.Error("reading the payout window", "err", err)
		http.Error(w, "reading the payout window failed", http.StatusInternalServerError)
		return
	}
	writeJSON(w, list)
}
