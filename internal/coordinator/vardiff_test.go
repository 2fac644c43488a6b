package coordinator_test

import (
	"sync"
	"testing"
	"time"

	"github.com/powcoord/powcoord/internal/coordinator"
)

// fakeClock is a clock the test moves by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// TestVardiff: a miner sending shares far faster than SharesPerMinute has
// its difficulty raised (at most 4× a step, with set_difficulty before a
// new job); one sending far too few has it lowered.
func TestVardiff(t *testing.T) {
	const start = 1e-7
	clock := &fakeClock{now: time.Now()}
	h := newHarness(t, harnessOpts{shareDiff: start, cfg: func(c *coordinator.Config) {
		c.SharesPerMinute = 6 // one share per 10 s
		c.VardiffInterval = time.Minute
		c.Now = clock.Now
	}})
	c := h.dial()
	n := c.ready("alice")
	if c.diff != start {
		t.Fatalf("first difficulty %v, want %v", c.diff, start)
	}
	// 30 shares in one minute: five times the target rate (vardiff steps
	// in as soon as it has seen four times too many).
	for i := range 30 {
		s := c.solve(n, uint32(i+1), start, false, 0)
		s.worker = "alice"
		if ok, code := c.submit(s); !ok {
			t.Fatalf("share %d rejected with %d", i, code)
		}
		clock.advance(2 * time.Second)
	}
	s := c.solve(n, 100, start, false, 0)
	s.worker = "alice"
	if ok, code := c.submit(s); !ok {
		t.Fatalf("share rejected with %d", code)
	}
	if m := c.next(); m.Method != "mining.set_difficulty" {
		t.Fatalf("after a fast minute got %s, want mining.set_difficulty", m.Method)
	}
	if c.diff != 4*start {
		t.Fatalf("difficulty %v after a 5× fast minute, want the 4× step %v", c.diff, 4*start)
	}
	n2 := c.waitNotify()
	if n2.JobID == n.JobID || n2.Clean {
		t.Fatalf("the new difficulty came with job %+v", n2)
	}
	// The new job is judged at the new difficulty, the old one at the old.
	// Then a quiet stretch: one share in three minutes lowers it again.
	clock.advance(3 * time.Minute)
	s = c.solve(n2, 200, 4*start, false, 0)
	s.worker = "alice"
	if ok, code := c.submit(s); !ok {
		t.Fatalf("share at the new difficulty rejected with %d", code)
	}
	if m := c.next(); m.Method != "mining.set_difficulty" || c.diff >= 4*start {
		t.Fatalf("after a slow stretch got %s with difficulty %v, want a lower one", m.Method, c.diff)
	}
	st := h.coord.Status()
	if len(st.Workers) != 1 || st.Workers[0].Difficulty != c.diff {
		t.Fatalf("status difficulty %+v, client has %v", st.Workers, c.diff)
	}
}
