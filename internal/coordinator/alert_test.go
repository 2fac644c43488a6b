package coordinator_test

import (
	"context"
	"net"
	"net/http"
	"testing"
	"testing/synctest"
	"time"

	"github.com/powcoord/powcoord/internal/alert"
	"github.com/powcoord/powcoord/internal/coordinator"
)

// TestDeadWebhookNeverSlowsShares (virtual time): every found block goes
// to a webhook whose endpoint never answers (its dial hangs); blocks and
// shares are answered with no virtual time passing, while the webhook's
// attempts time out in the background on their own schedule.
func TestDeadWebhookNeverSlowsShares(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		stop := make(chan struct{})
		hang := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			select { // never answers
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-stop:
				return nil, net.ErrClosed
			}
		}}
		n, err := alert.New(alert.Config{URLs: []string{"http://dead.example/hook"}, Client: &http.Client{Transport: hang},
			Timeout: 10 * time.Second, Attempts: 2, RetryMin: time.Second, QueueSize: 1})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { n.Run(ctx); close(done) }()
		var blocks int
		h := newHarness(t, harnessOpts{pipe: true, blockDiff: 2e-6, shareDiff: 1e-7, cfg: func(c *coordinator.Config) {
			c.OnBlock = func(ev coordinator.BlockEvent) {
				blocks++
				n.Notify(alert.Event{Kind: alert.KindBlock, Height: ev.Height, Hash: ev.Hash, Finder: ev.Finder, Time: ev.Time})
			}
		}})
		c := h.dial()
		c.ready("alice")
		start := time.Now()
		for i := range 3 {
			s := c.solve(c.lastJob, uint32(i), 1e-7, true, 0)
			s.worker = "alice"
			if ok, code := c.submit(s); !ok {
				t.Fatalf("block share %d refused (%d)", i, code)
			}
			c.waitNotify()
			s = c.solve(c.lastJob, uint32(100+i), 1e-7, false, 0)
			s.worker = "alice"
			if ok, code := c.submit(s); !ok {
				t.Fatalf("share %d refused (%d)", i, code)
			}
		}
		if d := time.Since(start); d != 0 {
			t.Fatalf("3 blocks and 3 shares took %v of virtual time with a dead webhook, want 0", d)
		}
		if blocks != 3 {
			t.Fatalf("%d block events, want 3", blocks)
		}
		h.stop()
		cancel()
		<-done
		close(stop)
		synctest.Wait()
	})
}
