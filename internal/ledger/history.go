package ledger

// Worker history: per-minute rollups of each worker's shares, written by
// every ledger driver in the transaction of the shares they count
// (docs/ledger.md), and what is derived from them (averages over spans).

import (
	"math"
	"slices"
	"strings"
	"time"
)

// DefaultHistoryRetention is how long the drivers keep per-minute
// rollups unless told otherwise: eight days, so the 7 d average always
// has whole days behind it, and a week's chart plus a day of slack.
const DefaultHistoryRetention = 8 * 24 * time.Hour

// MinHistoryRetention is the shortest retention a driver accepts: a
// day, the longest span GET /api/workers reads from the rollups.
const MinHistoryRetention = 24 * time.Hour

// WorkerMinute is one minute of one worker's shares (or, summed, of
// an account's workers).
type WorkerMinute struct {
	Worker   string    // the worker name, or the account for a summed row
	Minute   time.Time // the start of the minute, UTC
	Accepted int64     // accepted shares stored with a time in the minute
	Rejected int64     // shares refused in the minute
	Work     float64   // the sum of the accepted shares' difficulties
	Last     time.Time // the newest accepted share's time (zero: none)
}

// Minute returns the start of the minute holding t, in UTC.
func Minute(t time.Time) time.Time { return t.UTC().Truncate(time.Minute) }

// Hashrate returns the hashes per second that work (in difficulty-1
// shares, 2^32 hashes each) proves over d.
func Hashrate(work float64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return work * math.Exp2(32) / d.Seconds()
}

// Rollup gathers the per-minute rows of a batch of shares and rejects
// before a driver adds them to its table. The zero value is ready.
type Rollup struct {
	rows map[rollupKey]*WorkerMinute
}

type rollupKey struct {
	worker string
	minute int64
}

func (r *Rollup) row(worker string, at time.Time) *WorkerMinute {
	if r.rows == nil {
		r.rows = map[rollupKey]*WorkerMinute{}
	}
	m := Minute(at)
	k := rollupKey{worker, m.Unix()}
	w := r.rows[k]
	if w == nil {
		w = &WorkerMinute{Worker: worker, Minute: m}
		r.rows[k] = w
	}
	return w
}

// Share counts one accepted share.
func (r *Rollup) Share(sh *Share) {
	w := r.row(sh.Worker, sh.Time)
	w.Accepted++
	w.Work += sh.Difficulty
	if sh.Time.After(w.Last) {
		w.Last = sh.Time
	}
}

// Reject counts n refused shares of worker in the minute of at.
func (r *Rollup) Reject(worker string, at time.Time, n int64) {
	r.row(worker, at).Rejected += n
}

// Len returns how many rows the rollup holds.
func (r *Rollup) Len() int { return len(r.rows) }

// Rows returns the rows, by minute then worker.
func (r *Rollup) Rows() []WorkerMinute {
	out := make([]WorkerMinute, 0, len(r.rows))
	for _, w := range r.rows {
		out = append(out, *w)
	}
	slices.SortFunc(out, func(a, b WorkerMinute) int {
		if c := a.Minute.Compare(b.Minute); c != 0 {
			return c
		}
		return strings.Compare(a.Worker, b.Worker)
	})
	return out
}

// Reset empties the rollup, keeping its storage.
func (r *Rollup) Reset() { clear(r.rows) }

// AverageSpans are the spans of a worker's hashrate averages
// (Averages), shortest first, as GET /api/workers/{name} names them.
var AverageSpans = []struct {
	Name    string
	Minutes int
}{{"1m", 1}, {"5m", 5}, {"1h", 60}, {"1d", 24 * 60}, {"7d", 7 * 24 * 60}}

// Average is a worker's hashrate over one span.
type Average struct {
	Span     string  `json:"span"` // AverageSpans' name: "1m", "5m", "1h", "1d", "7d"
	Accepted int64   `json:"accepted"`
	Rejected int64   `json:"rejected"`
	Work     float64 `json:"work"`
	Hashrate float64 `json:"hashrate"` // hashes/s: Work × 2^32 over the span
}

// SpanSum sums the rows of minutes (one worker's or one account's)
// over the n complete minutes before now's minute: the minute of now is
// still filling, so it counts in none.
func SpanSum(minutes []WorkerMinute, now time.Time, n int) Average {
	end := Minute(now)
	start := end.Add(-time.Duration(n) * time.Minute)
	var a Average
	for i := range minutes {
		m := minutes[i].Minute
		if m.Before(start) || !m.Before(end) {
			continue
		}
		a.Accepted += minutes[i].Accepted
		a.Rejected += minutes[i].Rejected
		a.Work += minutes[i].Work
	}
	a.Hashrate = Hashrate(a.Work, time.Duration(n)*time.Minute)
	return a
}

// Averages returns the averages over every AverageSpans span (SpanSum),
// shortest first.
func Averages(minutes []WorkerMinute, now time.Time) []Average {
	out := make([]Average, 0, len(AverageSpans))
	for _, s := range AverageSpans {
		a := SpanSum(minutes, now, s.Minutes)
		a.Span = s.Name
		out = append(out, a)
	}
	return out
}
