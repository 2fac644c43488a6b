package coordinator_test

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/powcoord/powcoord/internal/coordinator"
	"github.com/powcoord/powcoord/internal/sv2"
)

// TestNotifyLatencyV1V2 (NOTIFY_BENCH=1) measures the new-block notify
// latency to many sessions, V1 and V2 side by side on one coordinator:
// first NOTIFY_SESSIONS (default 9,000) V1 sessions, then as many V2
// standard channels, each over its own 127.0.0.1 TCP connection. A
// separate V1 miner then finds blocks; per block, a session's latency is
// from just before the block's mining.submit is written to the moment
// that session has the whole new-block announcement: for V1 the
// mining.notify with clean_jobs, for V2 the SetNewPrevHash after its
// future NewMiningJob (decrypting and decoding both is the client's cost,
// counted here). Logged per protocol: per block p50/p99/max over
// sessions, and the median over blocks of each.
//
// Clients and coordinator share this process, so one session costs two
// file descriptors; 10,000 sessions plus the listeners and the database
// would pass the 20,000 a process may hold here, hence 9,000.
func TestNotifyLatencyV1V2(t *testing.T) {
	if os.Getenv("NOTIFY_BENCH") == "" {
		t.Skip("set NOTIFY_BENCH=1")
	}
	n := 9000
	if s := os.Getenv("NOTIFY_SESSIONS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n < 1 {
			t.Fatalf("NOTIFY_SESSIONS %q: want a positive count", s)
		}
	}
	const blocks = 5
	h := newV2Harness(t, harnessOpts{blockDiff: 2e-6, shareDiff: 1e-7, cfg: func(c *coordinator.Config) { c.BanMinShares = -1 }})
	finder := h.dialV1()
	finder.ready("finder")

	// mine finds a block on the finder's job and returns when it was
	// submitted.
	mine := func() time.Time {
		t.Helper()
		job := finder.lastJob
		s := finder.solve(job, 1, 1e-7, true, 0)
		s.worker = "finder"
		t0 := time.Now()
		if ok, code := finder.submit(s); !ok {
			t.Fatalf("block refused: %d", code)
		}
		for finder.lastJob.PrevHash == job.PrevHash {
			finder.next()
		}
		finder.queue = nil
		return t0
	}

	// run triggers the blocks; got carries one session's arrival time
	// (session index, block index) as readers record them in at[b][i].
	type arrival struct{ b, i int }
	run := func(name string, at [][]time.Time, got chan arrival) [][]time.Duration {
		t.Helper()
		lat := make([][]time.Duration, blocks)
		for b := range blocks {
			t0 := mine()
			timeout := time.After(time.Minute)
			for k := 0; k < n; k++ {
				select {
				case a := <-got:
					if a.b != b {
						t.Fatalf("%s: session %d announced block %d during block %d", name, a.i, a.b, b)
					}
				case <-timeout:
					t.Fatalf("%s block %d: %d of %d sessions announced after a minute", name, b, k, n)
				}
			}
			lat[b] = make([]time.Duration, n)
			for i := range n {
				lat[b][i] = at[b][i].Sub(t0)
			}
		}
		return lat
	}
	newAt := func() [][]time.Time {
		at := make([][]time.Time, blocks)
		for b := range at {
			at[b] = make([]time.Time, n)
		}
		return at
	}

	// V1.
	setup := time.Now()
	at := newAt()
	got := make(chan arrival, n)
	v1 := make([]*client, n)
	for i := range v1 {
		c := h.dialV1()
		c.ready(fmt.Sprintf("n1-%d", i%100))
		c.conn.SetDeadline(time.Time{})
		v1[i] = c
	}
	for i, c := range v1 {
		go func() {
			b := 0
			for b < blocks {
				line, err := c.r.ReadSlice('\n')
				if err != nil {
					t.Errorf("V1 session %d: %v", i, err)
					return
				}
				if bytes.Contains(line, []byte(`"mining.notify"`)) && bytes.Contains(line, []byte(`,true]`)) {
					at[b][i] = time.Now()
					got <- arrival{b, i}
					b++
				}
			}
		}()
	}
	t.Logf("V1: %d sessions ready in %v", n, time.Since(setup).Round(time.Millisecond))
	v1lat := run("V1", at, got)
	for _, c := range v1 {
		c.conn.Close()
	}
	waitSessionsFor(t, h.harness, 1, time.Minute)

	// V2.
	setup = time.Now()
	at = newAt()
	got = make(chan arrival, n)
	v2 := make([]*v2client, n)
	for i := range v2 {
		c := h.readyV2(fmt.Sprintf("n2-%d", i%100), false)
		c.raw.SetDeadline(time.Time{})
		v2[i] = c
	}
	for i, c := range v2 {
		go func() {
			b := 0
			future := map[uint32]bool{}
			for b < blocks {
				_, m, err := c.conn.ReadMessage()
				if err != nil {
					t.Errorf("V2 session %d: %v", i, err)
					return
				}
				switch m := m.(type) {
				case *sv2.NewMiningJob:
					if !m.MinNTime.Valid {
						future[m.JobID] = true
					}
				case *sv2.SetNewPrevHash:
					if !future[m.JobID] {
						t.Errorf("V2 session %d: SetNewPrevHash for job %d, not a future job it got", i, m.JobID)
						return
					}
					clear(future)
					at[b][i] = time.Now()
					got <- arrival{b, i}
					b++
				}
			}
		}()
	}
	t.Logf("V2: %d sessions ready in %v", n, time.Since(setup).Round(time.Millisecond))
	v2lat := run("V2", at, got)
	for _, c := range v2 {
		c.raw.Close()
	}

	report := func(name string, lat [][]time.Duration) {
		var p50s, p99s, maxs []time.Duration
		for b, l := range lat {
			slices.Sort(l)
			p50, p99, max := l[len(l)/2], l[len(l)*99/100], l[len(l)-1]
			p50s, p99s, maxs = append(p50s, p50), append(p99s, p99), append(maxs, max)
			t.Logf("%s block %d: p50 %v p99 %v max %v", name, b+1, p50.Round(time.Microsecond), p99.Round(time.Microsecond), max.Round(time.Microsecond))
		}
		med := func(d []time.Duration) time.Duration { slices.Sort(d); return d[len(d)/2].Round(time.Microsecond) }
		t.Logf("%s, %d sessions, median over %d blocks: p50 %v p99 %v max %v", name, n, blocks, med(p50s), med(p99s), med(maxs))
	}
	report("V1", v1lat)
	report("V2", v2lat)
}

// waitSessionsFor polls until the coordinator has n sessions, for at most d.
func waitSessionsFor(t *testing.T, h *harness, n int, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for h.coord.SessionCount() != n {
		if time.Now().After(deadline) {
			t.Fatalf("sessions %d, want %d", h.coord.SessionCount(), n)
		}
		time.Sleep(time.Millisecond) // polling with a deadline
	}
}
