package agent

import (
	"math"
	"sync/atomic"
	"time"

	"github.com/powcoord/powcoord/internal/hasher"
)

// Chunk sizing: a thread hashes one chunk between two looks at the job
// generation, so the chunk bounds how long a cleaned job keeps running.
const (
	chunkTarget = 500 * time.Microsecond // aim for about 0.5 ms per chunk
	chunkMin    = 256
	chunkMax    = 1 << 24
	chunkStart  = 4096
)

// counter is a per-thread hash counter padded to its own cache line.
type counter struct {
	n atomic.Uint64
	_ [56]byte
}

// share is a nonce a thread found, on its way to the pool.
type share struct {
	job   *job
	en2   []byte
	nonce uint32
}

// worker is one hashing thread.
type worker struct {
	a      *Agent
	hashes *counter
	chunk  uint64
	out    [64]uint32
	pace   pacer
}

// run hashes whatever job is current until stop is closed.
func (w *worker) run(stop <-chan struct{}) {
	w.chunk = chunkStart
	w.pace = newPacer(w.a.cfg.HashLimit / float64(w.a.cfg.Threads))
	for {
		j, changed := w.a.currentWork()
		if j != nil && w.mine(j) {
			continue // the job changed: pick up the new one at once
		}
		// No work, or this job's units are all taken: wait for a new job.
		select {
		case <-changed:
		case <-stop:
			return
		}
	}
}

// mine takes work units of j until they run out (false) or the agent's
// job generation moves on (true).
func (w *worker) mine(j *job) bool {
	a := w.a
	k := a.cfg.Kernel
	for {
		if a.gen.Load() != j.gen {
			w.abandoned(j)
			return true
		}
		u := j.next.Add(1) - 1
		if u >= j.units {
			return false
		}
		en2, start, count := j.unit(u)
		hdr := j.header(en2, 0)
		hj := hasher.NewJob(&hdr, j.target)
		for count > 0 {
			if a.gen.Load() != j.gen {
				w.abandoned(j)
				return true
			}
			c := min(w.chunk, count, w.pace.maxChunk)
			t0 := time.Now()
			n := k.Scan(hj, start, c, w.out[:])
			el := time.Since(t0)
			w.hashes.n.Add(c)
			for _, nonce := range w.out[:n] {
				select {
				case a.shares <- share{job: j, en2: en2, nonce: nonce}:
				default:
					a.dropped.Add(1) // submitter far behind; never block hashing
				}
			}
			if c == w.chunk {
				w.adapt(el)
			}
			if w.pace.rate > 0 {
				w.pace.wait(c, t0.Add(el))
			}
			start += uint32(c)
			count -= c
		}
	}
}

// adapt resizes the chunk so that one takes about chunkTarget, changing it
// by at most a factor of two at a time.
func (w *worker) adapt(el time.Duration) {
	c := w.chunk
	switch {
	case el <= 0 || el < chunkTarget/2:
		c *= 2
	case el > chunkTarget*2:
		c /= 2
	default:
		c = uint64(float64(c) * float64(chunkTarget) / float64(el))
	}
	c = (c + 63) &^ 63
	w.chunk = max(chunkMin, min(chunkMax, c))
}

func (w *worker) abandoned(j *job) {
	if h := w.a.hookAbandon; h != nil {
		h(j.gen, time.Now())
	}
}

// pacer holds one thread to a hash rate (Config.HashLimit) by sleeping
// after a chunk that ran ahead of schedule. Chunks are capped at about
// 2 ms of paced work so a cleaned job is still noticed quickly.
type pacer struct {
	rate     float64 // hashes per second; 0: no limit
	maxChunk uint64
	start    time.Time
	hashes   uint64
}

func newPacer(rate float64) pacer {
	if !(rate > 0) {
		return pacer{maxChunk: math.MaxUint64}
	}
	return pacer{rate: rate, maxChunk: uint64(max(1, rate/500))}
}

// wait accounts for c hashes finished at now and sleeps until they are
// due. After a pause (no work for a while) the schedule restarts rather
// than letting the thread catch up in a burst.
func (p *pacer) wait(c uint64, now time.Time) {
	if p.start.IsZero() || now.Sub(p.start) > time.Duration(float64(p.hashes)/p.rate*float64(time.Second))+100*time.Millisecond {
		p.start, p.hashes = now, 0
	}
	p.hashes += c
	due := p.start.Add(time.Duration(float64(p.hashes) / p.rate * float64(time.Second)))
	if d := due.Sub(now); d > 0 {
		time.Sleep(d)
	}
}
