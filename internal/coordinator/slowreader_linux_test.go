//go:build linux

package coordinator

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/powcoord/powcoord/internal/stratum"
)

// A miner that reads slowly gets every job whole and in order, though the
// direct write (writeNow) found its socket buffer full and left the rest
// to the ordinary write; a miner that stops reading is dropped after the
// write timeout, and neither holds up the others' work for longer.
func TestSlowAndStalledReaders(t *testing.T) {
	c := fuzzCoordinator(t)
	c.cfg.WriteTimeout = 500 * time.Millisecond
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Serve(ctx, ln) }()
	defer func() { cancel(); <-done }()

	dial := func(user string) (*net.TCPConn, *bufio.Reader) {
		conn, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		tc := conn.(*net.TCPConn)
		tc.SetReadBuffer(4096) // a small window: the coordinator's writes back up soon
		fmt.Fprintf(conn, "{\"id\":1,\"method\":\"mining.subscribe\",\"params\":[]}\n{\"id\":2,\"method\":\"mining.authorize\",\"params\":[%q,\"x\"]}\n", user)
		r := bufio.NewReader(conn)
		for range 4 { // two replies, set_difficulty, the first notify
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := r.ReadString('\n'); err != nil {
				t.Fatal(err)
			}
		}
		return tc, r
	}
	fast, fastR := dial("fast")
	slow, slowR := dial("slow")
	stalled, _ := dial("stalled")
	for c.SessionCount() != 3 || c.evCount() != 3 {
		time.Sleep(time.Millisecond) // the sessions move onto the event loop
	}
	// Small send buffers too, so that the writes back up within the run.
	c.mu.Lock()
	for _, s := range c.sessions {
		s.conn.(*net.TCPConn).SetWriteBuffer(4096)
	}
	c.mu.Unlock()

	// The slow miner reads a little at a time; the fast one drains.
	type result struct {
		ids []uint64
		err error
	}
	read := func(conn *net.TCPConn, r *bufio.Reader, n int, pause time.Duration) <-chan result {
		ch := make(chan result, 1)
		go func() {
			var res result
			for len(res.ids) < n {
				conn.SetReadDeadline(time.Now().Add(10 * time.Second))
				line, err := r.ReadString('\n')
				if err != nil {
					res.err = err
					break
				}
				m, err := stratum.Parse([]byte(line))
				if err != nil || m.Method != "mining.notify" {
					res.err = fmt.Errorf("line %d: %q is not a whole mining.notify (%v)", len(res.ids), line, err)
					break
				}
				n, err := stratum.ParseNotify(m.Params)
				if err != nil {
					res.err = err
					break
				}
				id, _ := strconv.ParseUint(n.JobID, 16, 64)
				res.ids = append(res.ids, id)
				if pause > 0 && len(res.ids)%16 == 0 {
					time.Sleep(pause)
				}
			}
			ch <- res
		}()
		return ch
	}
	const jobs = 600 // ≈ 210 kB a miner, far past a 4 kB window and the send buffer
	fastDone := read(fast, fastR, jobs, 0)
	slowDone := read(slow, slowR, jobs, 200*time.Microsecond)
	shortBefore := directWritesShort.Load()
	start := time.Now()
	for range jobs {
		if _, err := c.jobs.update(c.cfg.Source.Current()); err != nil {
			t.Fatal(err)
		}
		c.broadcast()
	}
	took := time.Since(start)
	for name, ch := range map[string]<-chan result{"fast": fastDone, "slow": slowDone} {
		res := <-ch
		if res.err != nil {
			t.Fatalf("%s miner: %v", name, res.err)
		}
		for i, id := range res.ids {
			if want := res.ids[0] + uint64(i); id != want {
				t.Fatalf("%s miner: job %d has id %x, want %x (a line lost or out of order)", name, i, id, want)
			}
		}
	}
	if directWritesShort.Load() == shortBefore {
		t.Errorf("no direct write was short: the test did not reach the ordinary write's path")
	}
	// The stalled miner, which never read, is gone after the write
	// timeout; the broadcasts waited for it at most that long.
	for deadline := time.Now().Add(5 * time.Second); c.SessionCount() != 2; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions, want 2: the stalled miner was not dropped", c.SessionCount())
		}
	}
	if limit := 20 * c.cfg.WriteTimeout; took > limit {
		t.Errorf("%d broadcasts took %v: the stalled miner held them up", jobs, took)
	}
	stalled.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, stalled); err != nil && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("stalled miner's connection: %v, want it closed", err)
	}
}

// evCount is how many sessions the event loop serves.
func (c *Coordinator) evCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, s := range c.sessions {
		if s.ev.Load() != nil {
			n++
		}
	}
	return n
}
