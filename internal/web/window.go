package web

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/payout"
)

// WindowSource is where GET /api/blocks/{hash}/shares reads a block's
// PPLNS window: the ledger holding the shares and payout records (the
// SQLite store, or a cluster's PostgreSQL ledger) and the payout script
// of a payout label, as the payout plan maps it.
type WindowSource struct {
	Ledger   payout.WindowLedger
	ScriptOf func(label string) ([]byte, error)
}

// WindowHandler serves GET /api/blocks/{hash}/shares from src: the PPLNS
// window the found block paid, as JSON lines (payout.WriteWindow), for
// `powcoord payouts verify`. A hash that is not 64 hex digits is a 400
// naming it; a block without a payout record, or paid solo, a 404 saying
// so; a failed read before the first line a 503 (logged to log).
func WindowHandler(src WindowSource, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := r.PathValue("hash")
		hash, err := chainmath.HashFromDisplay(s)
		if err != nil {
			http.Error(w, fmt.Sprintf("hash: %q is not a block hash (64 hex digits)", s), http.StatusBadRequest)
			return
		}
		sw := &startWriter{w: w}
		err = payout.WriteWindow(r.Context(), sw, src.Ledger, hash, src.ScriptOf)
		switch {
		case err == nil:
		case sw.started:
			// Too late for a status: the download lacks its end line,
			// which payouts verify reports.
			log.Warn("GET /api/blocks/{hash}/shares cut short", "hash", s, "err", err)
		case errors.Is(err, payout.ErrNoRecord), errors.Is(err, payout.ErrNotPPLNS):
			http.Error(w, "GET /api/blocks/"+s+"/shares: "+err.Error(), http.StatusNotFound)
		default:
			log.Warn("GET /api/blocks/{hash}/shares", "hash", s, "err", err)
			http.Error(w, "GET /api/blocks/"+s+"/shares: "+err.Error(), http.StatusServiceUnavailable)
		}
	})
}

// startWriter sets the download's headers at its first byte, so that an
// error before it can still be answered with a status.
type startWriter struct {
	w       http.ResponseWriter
	started bool
}

func (s *startWriter) Write(p []byte) (int, error) {
	if !s.started {
		s.started = true
		s.w.Header().Set("Content-Type", "application/x-ndjson")
	}
	return s.w.Write(p)
}
