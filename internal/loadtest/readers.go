package loadtest

import (
	"context"
	"sync"
)

// startGoroutineReaders reads every miner on a goroutine of its own
// (Miner.Run). stop closes every session and waits for the readers.
func startGoroutineReaders(ctx context.Context, miners []*Miner) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, m := range miners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.Run(ctx)
		}()
	}
	return func() {
		cancel()
		for _, m := range miners {
			m.Close()
		}
		wg.Wait()
	}
}
