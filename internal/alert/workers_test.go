package alert_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/powcoord/powcoord/internal/alert"
	"github.com/powcoord/powcoord/internal/store"
)

// TestWorkerAlertsOncePerTransition: on a synctest clock, with a real
// SQLite store's worker history as the source, a worker silent for
// --worker-offline-after is reported offline exactly once per silence
// (10 to 10.5 minutes after its last share, never again while silent),
// back online exactly once at its next share, and offline once more in
// a second silence; a worker whose hashrate falls to a quarter is
// reported once (its 5 m hashrate below half its 1 h average), not again
// while it stays low; neither a silence nor a return is a drop.
func TestWorkerAlertsOncePerTransition(t *testing.T) {
	dir := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		st, err := store.Open(filepath.Join(dir, "powcoord.db"))
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		var (
			mu     sync.Mutex
			events []alert.Event
		)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- alert.WatchWorkers(ctx, alert.WatchConfig{Source: st, OfflineAfter: 10 * time.Minute, DropBelow: 0.5,
				Notify: func(ev alert.Event) { mu.Lock(); events = append(events, ev); mu.Unlock() }})
		}()
		start := time.Now()
		// Every 15 s: alice.rig1 sends a share of difficulty 1 except in
		// minutes 70-99 and from 130 on; bob one of difficulty 1, a
		// quarter from minute 100 on.
		var nonce uint32
		for step := range 4 * 150 {
			now := time.Now()
			m := int(now.Sub(start) / time.Minute)
			var shares []store.Share
			if m < 70 || (m >= 100 && m < 130) {
				shares = append(shares, store.Share{Time: now, Worker: "alice.rig1", Difficulty: 1, Achieved: 1, Nonce: nonce})
			}
			d := 1.0
			if m >= 100 {
				d = 0.25
			}
			shares = append(shares, store.Share{Time: now, Worker: "bob", Difficulty: d, Achieved: 1, Nonce: nonce + 1})
			nonce += 2
			if err := st.RecordShares(context.Background(), shares); err != nil {
				t.Fatal(err)
			}
			if step == 4*70 {
				// alice's first minute of silence.
				mu.Lock()
				if len(events) != 0 {
					t.Errorf("events before any silence: %+v", events)
				}
				mu.Unlock()
			}
			time.Sleep(15 * time.Second)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		synctest.Wait()

		first := start.Add(69*time.Minute + 45*time.Second) // alice's last share before the first silence
		second := start.Add(129*time.Minute + 45*time.Second)
		mu.Lock()
		defer mu.Unlock()
		var got []string
		for _, ev := range events {
			got = append(got, ev.Kind+" "+ev.Worker)
		}
		want := []string{"worker_offline alice.rig1", "worker_online alice.rig1", "hashrate_drop bob", "worker_offline alice.rig1"}
		if strings.Join(got, ", ") != strings.Join(want, ", ") {
			t.Fatalf("events %v, want %v", got, want)
		}
		within := func(i int, from time.Time, d time.Duration) {
			t.Helper()
			if at := events[i].Time; at.Before(from) || at.After(from.Add(d)) {
				t.Errorf("%s at %s after the start, want %s to %s", got[i], at.Sub(start), from.Sub(start), from.Add(d).Sub(start))
			}
		}
		within(0, first.Add(10*time.Minute), 30*time.Second)
		if ev := events[0]; !ev.LastShare.Equal(first) || ev.SilentSeconds < 600 || ev.SilentSeconds > 630 {
			t.Errorf("offline event %+v: want the last share at %s, silent 600 to 630 s", ev, first)
		}
		within(1, start.Add(100*time.Minute), 30*time.Second)
		if ev := events[1]; ev.SilentSeconds < 30*60 || ev.SilentSeconds > 31*60 {
			t.Errorf("online event %+v: want a silence of 30 minutes", ev)
		}
		// bob's 5 m rate falls under half its 1 h average in the fourth or
		// fifth whole minute of the low rate.
		within(2, start.Add(103*time.Minute), 2*time.Minute+30*time.Second)
		if ev := events[2]; !(ev.Hashrate < 0.5*ev.Average) || ev.Average <= 0 {
			t.Errorf("drop event %+v: want a 5 m hashrate below half the 1 h average", ev)
		}
		// At 4 shares of difficulty 1 a minute: 4 × 2^32 / 60 H/s before.
		if full := 4 * math.Exp2(32) / 60; events[2].Average > full || events[2].Average < 0.9*full {
			t.Errorf("drop event: 1 h average %g, want up to %g", events[2].Average, full)
		}
		within(3, second.Add(10*time.Minute), 30*time.Second)

		// The webhook bodies name the worker and the numbers.
		for i, want := range []string{
			fmt.Sprintf(`{"event":"worker_offline","worker":"alice.rig1","last_share":"%s","silent_seconds":%v`, first.UTC().Format(time.RFC3339), events[0].SilentSeconds),
		} {
			b, _ := json.Marshal(events[i])
			if !strings.Contains(string(b), want) {
				t.Errorf("JSON body %s, want it to contain %s", b, want)
			}
		}
		if txt := events[2].Text(); !strings.Contains(txt, "Worker bob hashrate dropped to ") || !strings.Contains(txt, "of its 1 h average") {
			t.Errorf("drop text %q", txt)
		}
	})
}

// TestWorkerWatchConfigRefused: settings out of range are refused,
// naming the value.
func TestWorkerWatchConfigRefused(t *testing.T) {
	for _, c := range []struct {
		cfg  alert.WatchConfig
		want string
	}{
		{alert.WatchConfig{OfflineAfter: 30 * time.Second}, "worker offline after 30s: want at least 1m"},
		{alert.WatchConfig{DropBelow: 1}, "worker hashrate drop below 1: want a fraction above 0 and below 1"},
		{alert.WatchConfig{DropBelow: -0.5}, "worker hashrate drop below -0.5"},
		{alert.WatchConfig{DropBelow: math.NaN()}, "worker hashrate drop below NaN"},
	} {
		if err := c.cfg.Check(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.cfg, err, c.want)
		}
	}
}
