//go:build linux

package coordinator_test

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/powcoord/powcoord/internal/coordinator"
	"github.com/powcoord/powcoord/internal/ledger"
)

// gatedLedger holds every share until gate is closed.
type gatedLedger struct {
	coordinator.Ledger
	gate chan struct{}
}

func (g gatedLedger) RecordShare(ctx context.Context, sh ledger.Share) error {
	select {
	case <-g.gate:
	case <-ctx.Done():
		return ctx.Err()
	}
	return g.Ledger.RecordShare(ctx, sh)
}

// A ledger that stalls blocks the event loop's reader of every session
// that has more shares waiting than it may (here 140 sessions, more than
// the loop's 128 readers); the other sessions are still read and
// answered, and once the ledger moves every share is answered true.
func TestStalledLedgerKeepsOtherSessionsRead(t *testing.T) {
	gate := make(chan struct{})
	h := newHarness(t, harnessOpts{shareDiff: 1e-9, cfg: func(c *coordinator.Config) {
		c.Store = gatedLedger{Ledger: c.Store, gate: gate}
	}})
	opened := false
	defer func() {
		if !opened {
			close(gate)
		}
	}()
	const sessions, perSession = 140, 33 // one past the 32 a session may have unanswered
	var clients []*client
	for i := range sessions {
		c := h.dial()
		n := c.ready(fmt.Sprintf("w%d", i))
		var b strings.Builder
		for k := range perSession {
			s := c.solve(n, uint32(k), 1e-9, false, 0)
			fmt.Fprintf(&b, "{\"id\":%d,\"method\":\"mining.submit\",\"params\":[\"w%d\",%q,%q,%q,%q]}\n", 100+k, i, s.job, s.en2, s.ntime, s.nonce)
		}
		if _, err := io.WriteString(c.conn, b.String()); err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	time.Sleep(200 * time.Millisecond) // let the readers reach the full windows (not a correctness wait)
	// A new miner is served while the ledger is stalled.
	late := h.dial()
	late.conn.SetDeadline(time.Now().Add(5 * time.Second))
	late.subscribe()
	late.authorize("late")

	close(gate)
	opened = true
	for i, c := range clients {
		for k := range perSession {
			m, err := c.readMsg()
			for err == nil && m.Method != "" {
				m, err = c.readMsg() // notifications
			}
			if err != nil {
				t.Fatalf("session %d, share %d: %v", i, k, err)
			}
			if string(m.ID) != fmt.Sprint(100+k) || string(m.Result) != "true" {
				t.Fatalf("session %d: answer %s %s %v, want id %d true", i, m.ID, m.Result, m.Error, 100+k)
			}
		}
	}
}
