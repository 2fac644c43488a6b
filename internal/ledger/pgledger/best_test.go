package pgledger

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func bestLines(list []BestShare) string {
	var b strings.Builder
	for _, s := range list {
		fmt.Fprintf(&b, "%s %g %s %s\n", s.Worker, s.Difficulty, s.Hash.String()[:8], s.Time.UTC().Format("15:04:05"))
	}
	return b.String()
}

// TestBestShares: all time and since a block, from the shares table,
// per worker; ties go to the earliest; block shares count for all time
// only.
func TestBestShares(t *testing.T) {
	l, _ := open(t)
	mk := func(i int, w string, achieved float64, at time.Duration, block bool) Share {
		sh := share(i, w)
		sh.Achieved, sh.Time, sh.Block = achieved, t0.Add(at), block
		return sh
	}
	shares := []Share{
		mk(1, "alice.rig1", 5, 1*time.Second, false),
		mk(2, "alice.rig1", 9, 2*time.Second, false),
		mk(3, "alice.rig2", 7, 3*time.Second, false),
		mk(4, "bob", 100, 4*time.Second, true), // a block
		mk(5, "bob", 3, 5*time.Second, false),
		mk(6, "alice.rig1", 4, 6*time.Second, false),
		mk(7, "bob", 3, 7*time.Second, false), // a tie: the earlier one stays
	}
	if _, err := l.Record(ctx(t), shares); err != nil {
		t.Fatal(err)
	}
	h := func(i int) string { return share(i, "").Hash.String()[:8] }
	all, err := l.BestShares(ctx(t), time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("alice.rig1 9 %s 12:00:02\nalice.rig2 7 %s 12:00:03\nbob 100 %s 12:00:04\n", h(2), h(3), h(4))
	if got := bestLines(all); got != want {
		t.Fatalf("all time:\n%s\nwant:\n%s", got, want)
	}
	// Since the block at 12:00:04: bob's block share is left out.
	since, err := l.BestShares(ctx(t), t0.Add(4*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	want = fmt.Sprintf("alice.rig1 4 %s 12:00:06\nbob 3 %s 12:00:05\n", h(6), h(5))
	if got := bestLines(since); got != want {
		t.Fatalf("since the block:\n%s\nwant:\n%s", got, want)
	}
}
