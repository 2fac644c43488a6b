package hasher

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// measureChunk is how many nonces one Scan call covers in Measure: about
// a millisecond of work, so stopping is prompt and call overhead nil.
const measureChunk = 1 << 15

// Rate is a measured hashing rate, in millions of nonces per second.
type Rate struct {
	// Wall is all threads' nonces per second of wall-clock time.
	Wall float64
	// CPU is the sum over threads of each one's nonces per second of the
	// CPU time it got: the rate with a core to each thread, whatever else
	// the machine runs (on a shared machine Wall counts the time other
	// programs had the cores too). 0 where the OS's per-thread CPU time
	// is not read (see threadCPU).
	CPU float64
}

// Best is CPU if known, else Wall: the rate to compare kernels by.
func (r Rate) Best() float64 {
	if r.CPU > 0 {
		return r.CPU
	}
	return r.Wall
}

// Measure runs kernel k on j with threads goroutines, each on its own OS
// thread, for about d and returns the rate. Each goroutine scans its own
// nonce range, wrapping at 2^32. It returns early with ctx's error when
// ctx is cancelled.
func Measure(ctx context.Context, k Kernel, j *Job, threads int, d time.Duration) (Rate, error) {
	if threads < 1 {
		return Rate{}, fmt.Errorf("measure: %d threads: need at least 1", threads)
	}
	var stop atomic.Bool
	var total atomic.Uint64
	var mu sync.Mutex
	var cpuRate float64
	cpuOK := true
	var wg sync.WaitGroup
	start := time.Now()
	for t := 0; t < threads; t++ {
		wg.Add(1)
		go func(t int) {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			c0, ok0 := threadCPU()
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
			c1, ok1 := threadCPU()
			total.Add(n)
			mu.Lock()
			defer mu.Unlock()
			if ok0 && ok1 && c1 > c0 {
				cpuRate += float64(n) / (float64(c1-c0) / 1e9) / 1e6
			} else {
				cpuOK = false
			}
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
		return Rate{}, fmt.Errorf("measure %s: %w", k.Name(), err)
	}
	r := Rate{Wall: float64(total.Load()) / time.Since(start).Seconds() / 1e6}
	if cpuOK {
		r.CPU = cpuRate
	}
	return r, nil
}
