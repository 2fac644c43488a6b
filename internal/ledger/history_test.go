package ledger

import (
	"math"
	"testing"
	"time"
)

// TestAveragesWholeMinutes: each average sums exactly the n whole
// minutes before now's minute (the minute still filling counts in none,
// the minute n+1 back not in span n), and the rollup of a batch adds
// the shares and rejects of a worker and minute into one row.
func TestAveragesWholeMinutes(t *testing.T) {
	now := time.Date(2026, 12, 8, 12, 30, 40, 0, time.UTC)
	var r Rollup
	for _, back := range []time.Duration{0, time.Minute, 4 * time.Minute, 5 * time.Minute, 59 * time.Minute, 60 * time.Minute, 23 * time.Hour, 7*24*time.Hour - time.Minute, 7 * 24 * time.Hour, 7*24*time.Hour + time.Minute} {
		// A share of difficulty 1 at 10 s into the minute back minutes
		// before now's, and one of difficulty 2 at 50 s.
		m := Minute(now).Add(-back)
		r.Share(&Share{Time: m.Add(10 * time.Second), Worker: "w", Difficulty: 1})
		r.Share(&Share{Time: m.Add(50 * time.Second), Worker: "w", Difficulty: 2})
		r.Reject("w", m.Add(30*time.Second), 1)
	}
	rows := r.Rows()
	if len(rows) != 10 || rows[9].Accepted != 2 || rows[9].Rejected != 1 || rows[9].Work != 3 || !rows[9].Last.Equal(Minute(now).Add(50*time.Second)) {
		t.Fatalf("rollup rows %+v", rows)
	}
	// Span n covers the minutes 1 to n back: 1m {1}, 5m {1, 4, 5}, 1h
	// {.., 59, 60}, 1d {.., 23 h}, 7d {.., 7 d − 1 min, 7 d}; the minute
	// 0 back (now's) is in none.
	want := map[string]int64{"1m": 1, "5m": 3, "1h": 5, "1d": 6, "7d": 8}
	for _, a := range Averages(rows, now) {
		n := want[a.Span]
		var mins int
		for _, s := range AverageSpans {
			if s.Name == a.Span {
				mins = s.Minutes
			}
		}
		if a.Accepted != 2*n || a.Rejected != n || a.Work != 3*float64(n) || a.Hashrate != 3*float64(n)*math.Exp2(32)/float64(mins*60) {
			t.Errorf("average %+v: want %d minutes of 2 shares, 1 reject and work 3", a, n)
		}
	}
}
