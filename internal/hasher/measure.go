package hasher

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// measureChunk is how many nonces one Scan call covers in Measure: about
// a millisecond of work, so stopping is prompt and call overhead nil.
const measureChunk = 1 << 15

// Measure runs kernel k on j with threads goroutines for about d and
// returns the combined rate in millions of nonces per second. Each
// goroutine scans its own nonce range, wrapping at 2^32. It returns early
// with ctx's error when ctx is cancelled.
func Measure(ctx context.Context, k Kernel, j *Job, threads int, d time.Duration) (float64, error) {
	if threads < 1 {
		return 0, fmt.Errorf("measure: %d threads: need at least 1", threads)
	}
	var stop atomic.Bool
	var total atomic.Uint64
	var wg sync.WaitGroup
	start := time.Now()
	for t := 0; t < threads; t++ {
		wg.Add(1)
		go func(t int) {
			defer wg.Done()
			out := make([]uint32, 64)
			nonce := uint32(t) << 28
			var n uint64
			for !stop.Load() {
				if uint64(nonce)+measureChunk > 1<<32 {
					nonce = 0
				}
				k.Scan(j, nonce, measureChunk, out)
				nonce += measureChunk
				n += measureChunk
			}
			total.Add(n)
		}(t)
	}
	timer := time.NewTimer(d)
	select {
	case <-timer.C:
	case <-ctx.Done():
	}
	timer.Stop()
	stop.Store(true)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("measure %s: %w", k.Name(), err)
	}
	return float64(total.Load()) / time.Since(start).Seconds() / 1e6, nil
}
