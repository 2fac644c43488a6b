package web_test

import (
	"context"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/powcoord/powcoord/internal/ledger"
	"github.com/powcoord/powcoord/internal/store"
	"github.com/powcoord/powcoord/internal/web"
)

// TestWorkerHistoryAPI: GET /api/workers/{name} of a single coordinator
// over real HTTP and Stratum: the per-minute series of a worker equals,
// minute by minute, its share rows in the store (recorded ones from
// minutes, hours and days ago, and shares just submitted), with the
// duplicate share the coordinator refused counted as rejected in its
// minute; each average (1m, 5m, 1h, 1d, 7d) is the work of the share
// rows in that many whole minutes before now's × 2^32 over the span; an
// account (no '.') sums its workers; bad names, spans and scopes are a
// 400 naming the value, a name without shares a 404.
func TestWorkerHistoryAPI(t *testing.T) {
	p := startPool(t, 1e6, 1e-7, time.Hour)
	now := time.Now()
	old := []store.Share{}
	for i, ago := range []time.Duration{90 * time.Second, 3 * time.Minute, 30 * time.Minute, 2 * time.Hour, 30 * time.Hour, 3 * 24 * time.Hour, 8 * 24 * time.Hour} {
		old = append(old,
			store.Share{Time: now.Add(-ago), Worker: "alice.rig1", Difficulty: float64(int(1) << i), Achieved: 1, Nonce: uint32(i)},
			store.Share{Time: now.Add(-ago), Worker: "alice.rig2", Difficulty: 0.5, Achieved: 1, Nonce: uint32(100 + i)},
			store.Share{Time: now.Add(-ago), Worker: "bob", Difficulty: 1000, Achieved: 1, Nonce: uint32(200 + i)})
	}
	mustf(t, p.store.RecordShares(context.Background(), old), "recording old shares")
	m := dialMiner(t, p.stratum, "alice.rig1")
	sh := m.find(en2(m, 1), 0, true)
	for i, want := range []string{"true", ""} {
		res, e := m.callErr("mining.submit", m.params("alice.rig1", sh))
		if i == 0 && (e != nil || string(res) != want) {
			t.Fatalf("first share: %s %v", res, e)
		}
		if i == 1 && e == nil {
			t.Fatalf("the same share again: %s, want a duplicate refused", res)
		}
	}
	// A share after the duplicate: its answer comes after the reject was
	// counted, and its commit carries the count.
	if res, e := m.callErr("mining.submit", m.params("alice.rig1", m.find(en2(m, 2), 0, true))); e != nil || string(res) != "true" {
		t.Fatalf("second share: %s %v", res, e)
	}

	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(p.http.URL + path)
		mustf(t, err, "GET %s", path)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	history := func(path string) web.WorkerHistory {
		t.Helper()
		code, body := get(path)
		var h web.WorkerHistory
		if err := json.Unmarshal([]byte(body), &h); code != http.StatusOK || err != nil {
			t.Fatalf("GET %s: %d %s (%v)", path, code, body, err)
		}
		return h
	}
	all, err := p.store.Shares(context.Background(), "")
	mustf(t, err, "reading the share rows")
	check := func(path string, of func(string) bool, rejected int64) {
		t.Helper()
		h := history(path)
		from := ledger.Minute(h.Now).Add(-time.Duration(h.Minutes-1) * time.Minute)
		type minute struct {
			acc, rej int64
			work     float64
		}
		want := map[int64]*minute{}
		var last time.Time
		for _, s := range all {
			if !of(s.Worker) {
				continue
			}
			if s.Time.After(last) && s.Time.After(h.Now.Add(-7*24*time.Hour-time.Minute)) {
				last = s.Time
			}
			if ledger.Minute(s.Time).Before(from) {
				continue
			}
			k := ledger.Minute(s.Time).Unix()
			if want[k] == nil {
				want[k] = &minute{}
			}
			want[k].acc++
			want[k].work += s.Difficulty
		}
		var rej int64
		for _, m := range h.Series {
			w := want[m.Minute.Unix()]
			if w == nil || m.Accepted != w.acc || m.Work != w.work || m.Hashrate != m.Work*math.Exp2(32)/60 {
				t.Errorf("GET %s: minute %s: %+v, want from the share rows %+v", path, m.Minute, m, w)
			}
			delete(want, m.Minute.Unix())
			rej += m.Rejected
		}
		if len(want) != 0 || rej != rejected {
			t.Errorf("GET %s: %d minutes of share rows missing from the series; %d rejected, want %d", path, len(want), rej, rejected)
		}
		if !h.LastShare.Equal(last) {
			t.Errorf("GET %s: last share %s, want %s", path, h.LastShare, last)
		}
		if len(h.Averages) != 5 {
			t.Fatalf("GET %s: averages %+v, want 5", path, h.Averages)
		}
		for i, n := range []int{1, 5, 60, 1440, 10080} {
			end := ledger.Minute(h.Now)
			start := end.Add(-time.Duration(n) * time.Minute)
			var work float64
			var acc int64
			for _, s := range all {
				if of(s.Worker) && !ledger.Minute(s.Time).Before(start) && ledger.Minute(s.Time).Before(end) {
					work += s.Difficulty
					acc++
				}
			}
			a := h.Averages[i]
			if hr := work * math.Exp2(32) / float64(n*60); a.Span != ledger.AverageSpans[i].Name || a.Accepted != acc || a.Work != work || math.Abs(a.Hashrate-hr) > 1e-9*hr {
				t.Errorf("GET %s: average %+v, want %s: %d shares, work %g, %g H/s", path, a, ledger.AverageSpans[i].Name, acc, work, hr)
			}
		}
		if n := h.Averages[4].Accepted; n < 5 {
			t.Errorf("GET %s: %d shares in 7 days, want the old ones", path, n)
		}
	}
	check("/api/workers/alice.rig1?minutes=10080", func(w string) bool { return w == "alice.rig1" }, 1)
	check("/api/workers/alice.rig1?minutes=5", func(w string) bool { return w == "alice.rig1" }, 1)
	check("/api/workers/alice", func(w string) bool { return ledger.AccountOf(w) == "alice" }, 1)
	check("/api/workers/bob?scope=worker&minutes=10080", func(w string) bool { return w == "bob" }, 0)
	if h := history("/api/workers/alice"); h.Scope != web.ScopeAccount || h.Minutes != web.DefaultHistoryMinutes {
		t.Errorf("GET /api/workers/alice: scope %q over %d minutes, want account over %d", h.Scope, h.Minutes, web.DefaultHistoryMinutes)
	}

	for path, want := range map[string]string{
		"/api/workers/alice.rig1?minutes=0":      `minutes: "0" is not a whole number of minutes from 1 to 10080`,
		"/api/workers/alice.rig1?minutes=10081":  `minutes: "10081" is not a whole number of minutes from 1 to 10080`,
		"/api/workers/alice.rig1?scope=everyone": `scope: "everyone": want worker or account`,
		"/api/workers/alice.rig1?scope=account":  `scope: "alice.rig1" is a worker name, not an account`,
		"/api/workers/a%01b":                     `has control character U+0001`,
	} {
		if code, body := get(path); code != http.StatusBadRequest || !strings.Contains(body, want) {
			t.Errorf("GET %s: %d %q, want 400 %q", path, code, body, want)
		}
	}
	if code, body := get("/api/workers/carol.x"); code != http.StatusNotFound || !strings.Contains(body, `worker "carol.x" has no share in the last 7 days`) {
		t.Errorf("GET /api/workers/carol.x: %d %q, want 404 naming it", code, body)
	}
}
