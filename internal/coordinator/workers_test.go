package coordinator_test

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/powcoord/powcoord/internal/coordinator"
	"github.com/powcoord/powcoord/internal/stratum"
	"github.com/powcoord/powcoord/internal/sv2"
)

// testClock is an injected clock: the real time plus an offset the test
// moves forward.
type testClock struct{ off atomic.Int64 }

func (c *testClock) now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *testClock) advance(d time.Duration) { c.off.Add(int64(d)) }

// waitWorkers polls Status (bounded) until cond holds: a session's
// accounting ends after its connection is gone.
func waitWorkers(t *testing.T, c *coordinator.Coordinator, what string, cond func(coordinator.Status) bool) coordinator.Status {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := c.StatusPage(0, coordinator.MaxStatusWorkers)
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			names := []string{}
			for _, w := range st.Workers {
				names = append(names, fmt.Sprintf("%s(%d sessions)", w.Name, w.Sessions))
			}
			t.Fatalf("waiting for %s: %d workers %v", what, st.WorkersTotal, names)
		}
		time.Sleep(5 * time.Millisecond) // polling with a deadline
	}
}

// submitAs submits s for the worker name.
func (c *client) submitAs(name string, s share) (bool, int) {
	c.t.Helper()
	s.worker = name
	return c.submit(s)
}

// dialBare dials the V1 listener without a cleanup per connection (the
// soak's own heap must not grow with its connections); the caller
// closes it.
func (h *v2harness) dialBare() *client {
	h.t.Helper()
	if h.v1addr == "" {
		h.dialV1().conn.Close()
	}
	conn, err := net.Dial("tcp", h.v1addr)
	if err != nil {
		h.t.Fatal(err)
	}
	return &client{t: h.t, conn: conn, r: bufio.NewReader(conn), jobs: map[string]*stratum.Notify{}}
}

func workerNames(st coordinator.Status) string {
	var b []string
	for _, w := range st.Workers {
		b = append(b, w.Name)
	}
	return strings.Join(b, ",")
}

// TestWorkerAccountingForgetsIdleNames: a worker with no session and no
// share is forgotten when its last V1 session or V2 channel ends; one
// with a share is kept for the retention after that share and forgotten
// after it (injected clock); the table is capped, the sessionless
// workers least recently active going first.
func TestWorkerAccountingForgetsIdleNames(t *testing.T) {
	var clk testClock
	h := newV2Harness(t, harnessOpts{cfg: func(c *coordinator.Config) {
		c.Now, c.WorkerRetention, c.MaxWorkers = clk.now, time.Hour, 20
	}})

	// V1 without a share: gone with the session.
	c := h.dialV1()
	c.ready("noshare.v1")
	if st := h.coord.Status(); st.WorkersTotal != 1 || workerNames(st) != "noshare.v1" {
		t.Fatalf("while connected: %d workers %q", st.WorkersTotal, workerNames(st))
	}
	c.conn.Close()
	waitWorkers(t, h.coord, "noshare.v1 forgotten", func(st coordinator.Status) bool { return st.WorkersTotal == 0 })

	// V2 without a share: gone with the channel (CloseChannel), while
	// the connection stays.
	v := h.readyV2("noshare.v2", false)
	v.send(&sv2.CloseChannel{ChannelID: v.ch, ReasonCode: "bye"})
	waitWorkers(t, h.coord, "noshare.v2 forgotten", func(st coordinator.Status) bool { return st.WorkersTotal == 0 })

	// With a share: kept for the retention after it, V1 and V2.
	c = h.dialV1()
	n := c.ready("shares.v1")
	if ok, code := c.submitAs("shares.v1", c.solve(n, 1, 1e-7, false, 0)); !ok {
		t.Fatalf("share refused: %d", code)
	}
	c.conn.Close()
	v = h.readyV2("shares.v2", false)
	v.submit(v.goodShare())
	if r := v.result(); r != "" {
		t.Fatalf("V2 share refused: %q", r)
	}
	v.send(&sv2.CloseChannel{ChannelID: v.ch, ReasonCode: "bye"})
	waitWorkers(t, h.coord, "both sessionless, both kept", func(st coordinator.Status) bool {
		return workerNames(st) == "shares.v1,shares.v2" && st.Workers[0].Sessions == 0 && st.Workers[1].Sessions == 0 && st.Workers[0].Accepted == 1 && st.Workers[1].Accepted == 1
	})
	clk.advance(59 * time.Minute)
	if st := h.coord.Status(); st.WorkersTotal != 2 {
		t.Fatalf("59 minutes after their shares: %d workers %q, want both", st.WorkersTotal, workerNames(st))
	}
	clk.advance(2 * time.Minute)
	if st := h.coord.Status(); st.WorkersTotal != 0 {
		t.Fatalf("61 minutes after their shares: %d workers %q, want none", st.WorkersTotal, workerNames(st))
	}

	// The cap: 30 names, each with a share, one after another a second
	// apart. At 20 the 2 least recently active go (down to 18), so the
	// table ends holding exactly the newest 20.
	for i := range 30 {
		c := h.dialV1()
		name := fmt.Sprintf("cap%02d", i)
		n := c.ready(name)
		if ok, code := c.submitAs(name, c.solve(n, uint32(i), 1e-7, false, 0)); !ok {
			t.Fatalf("%s: share refused: %d", name, code)
		}
		c.conn.Close()
		waitWorkers(t, h.coord, name+" sessionless", func(st coordinator.Status) bool {
			for _, w := range st.Workers {
				if w.Name == name {
					return w.Sessions == 0
				}
			}
			return false
		})
		clk.advance(time.Second)
	}
	st := h.coord.StatusPage(0, coordinator.MaxStatusWorkers)
	var want []string
	for i := 10; i < 30; i++ {
		want = append(want, fmt.Sprintf("cap%02d", i))
	}
	if workerNames(st) != strings.Join(want, ",") || st.WorkersTotal != 20 {
		t.Fatalf("after 30 names with a cap of 20: %d workers %q, want %q", st.WorkersTotal, workerNames(st), strings.Join(want, ","))
	}
}

// TestStatusPagesWorkers: StatusPage lists the workers in name order
// from an offset, at most a limit; the total and the hashrate count all.
func TestStatusPagesWorkers(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	for i := range 5 {
		c := h.dial()
		name := fmt.Sprintf("page%d", 4-i)
		n := c.ready(name)
		if ok, code := c.submitAs(name, c.solve(n, 1, 1e-7, false, 0)); !ok {
			t.Fatalf("share refused: %d", code)
		}
	}
	all := h.coord.Status()
	if all.WorkersTotal != 5 || workerNames(all) != "page0,page1,page2,page3,page4" || !(all.Hashrate > 0) {
		t.Fatalf("default page: %d workers %q hashrate %v", all.WorkersTotal, workerNames(all), all.Hashrate)
	}
	p := h.coord.StatusPage(3, 1)
	if p.WorkersTotal != 5 || p.WorkersOffset != 3 || workerNames(p) != "page3" || p.Hashrate < 0.99*all.Hashrate {
		t.Fatalf("StatusPage(3, 1): %d workers from %d %q hashrate %v (all: %v)", p.WorkersTotal, p.WorkersOffset, workerNames(p), p.Hashrate, all.Hashrate)
	}
	if p := h.coord.StatusPage(7, 10); p.WorkersTotal != 5 || len(p.Workers) != 0 {
		t.Fatalf("StatusPage past the end: %d workers, page %q", p.WorkersTotal, workerNames(p))
	}
}

// TestWorkerChurnSoak: 20,000 V1 connect/subscribe/authorize/disconnect
// cycles and 20,000 V2 channel open/close cycles, each with a distinct
// name of the longest allowed length, leave the live heap within 10% of
// where it started. The accounting forgets each name as it goes; the
// epoch's coinbase cache (one coinbase per payout script the epoch has
// served, jobs.go) holds every name's coinbase until the next job
// replaces the epoch, so the jobs come every 100 ms here and the heap is
// read once they have. It takes a while: run it with POWCOORD_SOAK=1
// (never with -short).
func TestWorkerChurnSoak(t *testing.T) {
	if testing.Short() || os.Getenv("POWCOORD_SOAK") == "" {
		t.Skip("soak: set POWCOORD_SOAK=1 (and no -short) to run it")
	}
	const cycles = 20000
	h := newV2Harness(t, harnessOpts{cfg: func(c *coordinator.Config) { c.JobInterval = 100 * time.Millisecond }})
	name := func(proto string, i int) string {
		s := fmt.Sprintf("%s.%06d.", proto, i)
		return s + strings.Repeat("x", 128-len(s))
	}
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	// Warm up: pools, buffers and maps at their working size.
	for i := range 500 {
		c := h.dialBare()
		c.subscribe()
		c.authorize(name("warm", i))
		c.conn.Close()
	}
	waitWorkers(t, h.coord, "warm-up forgotten", func(st coordinator.Status) bool { return st.WorkersTotal == 0 })
	before := heap()
	start := time.Now()
	for i := range cycles {
		c := h.dialBare()
		c.subscribe()
		c.authorize(name("v1", i))
		c.conn.Close()
	}
	v1Took := time.Since(start)
	var max sv2.U256
	for i := range max {
		max[i] = 0xff
	}
	// One V2 connection opens and closes the channels (opened only now:
	// nobody reads its jobs while the V1 cycles run).
	v := h.readyV2(name("v2", -1), false)
	v.raw.SetDeadline(time.Now().Add(10 * time.Minute)) // dialV2 gave it 10 s
	start = time.Now()
	for i := range cycles {
		v.send(&sv2.OpenStandardMiningChannel{RequestID: uint32(i + 2), UserIdentity: name("v2", i), MaxTarget: max})
		m := expect[*sv2.OpenStandardMiningChannelSuccess](v)
		v.send(&sv2.CloseChannel{ChannelID: m.ChannelID, ReasonCode: "soak"})
	}
	v2Took := time.Since(start)
	st := waitWorkers(t, h.coord, "every churned name forgotten", func(st coordinator.Status) bool { return st.WorkersTotal == 1 })
	atEnd := heap()
	v.raw.Close()
	waitWorkers(t, h.coord, "the last V2 channel gone", func(st coordinator.Status) bool { return st.WorkersTotal == 0 })
	after := atEnd
	for deadline := time.Now().Add(5 * time.Second); after > before+before/10 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond) // polling with a deadline: the next jobs replace the epoch
		after = heap()
	}
	t.Logf("heap %d bytes before, %d after %d V1 cycles (%v) and %d V2 channel cycles (%v) (%+.1f%%), %d once the epoch was replaced (%+.1f%%); %d workers left",
		before, atEnd, cycles, v1Took.Round(time.Millisecond), cycles, v2Took.Round(time.Millisecond), 100*(float64(atEnd)/float64(before)-1),
		after, 100*(float64(after)/float64(before)-1), st.WorkersTotal-1)
	if float64(after) > 1.1*float64(before) {
		t.Fatalf("heap grew from %d to %d bytes (more than 10%%) over %d cycles of distinct names", before, after, 2*cycles)
	}
}
