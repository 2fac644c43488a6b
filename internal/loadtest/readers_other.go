//go:build !linux

package loadtest

import (
	"context"
	"log/slog"
)

// startReaders starts reading every miner and returns how ("goroutines":
// off Linux there is no event loop, so "epoll" falls back to one
// goroutine per session). stop closes every session and waits for the
// readers.
func startReaders(ctx context.Context, miners []*Miner, mode string, log *slog.Logger) (stop func(), used string) {
	if mode == "epoll" {
		log.Warn("epoll readers are Linux only: one goroutine per session")
	}
	return startGoroutineReaders(ctx, miners), "goroutines"
}
