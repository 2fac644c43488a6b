package pgledger

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestWorkerStats: per worker, the shares since a time, their work and
// the newest one's time; a batch recorded twice counts once.
func TestWorkerStats(t *testing.T) {
	l, _ := open(t)
	var shares []Share
	for i := 1; i <= 10; i++ {
		w := "bob"
		if i%2 == 1 {
			w = "alice.rig1"
		}
		shares = append(shares, share(i, w)) // difficulty 1 + i%4, time t0 + i ms
	}
	for range 2 { // a redelivered batch
		if _, err := l.Record(ctx(t), shares); err != nil {
			t.Fatal(err)
		}
	}
	lines := func(since time.Time) string {
		t.Helper()
		list, err := l.WorkerStats(ctx(t), since)
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		for _, w := range list {
			fmt.Fprintf(&b, "%s %d %g %s\n", w.Worker, w.Shares, w.Work, w.Last.UTC().Format("15:04:05.000"))
		}
		return b.String()
	}
	// alice.rig1: shares 1 3 5 7 9, difficulties 2 4 2 4 2; bob: 2 4 6 8 10, 3 1 3 1 3.
	if got, want := lines(time.Time{}), "alice.rig1 5 14 12:00:00.009\nbob 5 11 12:00:00.010\n"; got != want {
		t.Fatalf("all shares:\n%swant:\n%s", got, want)
	}
	if got, want := lines(t0.Add(5*time.Millisecond)), "alice.rig1 3 8 12:00:00.009\nbob 3 7 12:00:00.010\n"; got != want {
		t.Fatalf("since share 5:\n%swant:\n%s", got, want)
	}
	if got := lines(t0.Add(time.Second)); got != "" {
		t.Fatalf("since after the last share: %q, want none", got)
	}
}
