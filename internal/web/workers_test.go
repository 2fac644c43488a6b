package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/powcoord/powcoord/internal/store"
	"github.com/powcoord/powcoord/internal/web"
)

// TestWorkersAPISingleCoordinator: a single coordinator serves GET
// /api/workers from its SQLite ledger, over real HTTP: after known
// shares (two hours old ones recorded in the store, then fresh ones
// submitted over Stratum) each worker's share count, work and hashrate
// over 60 minutes are exactly the fresh ones, over a day the old ones
// too; an answer is reused when asked again at once; a bad span is the
// cluster coordinator's 400 naming the value (TestClusterWorkersAPI).
func TestWorkersAPISingleCoordinator(t *testing.T) {
	p := startPool(t, 1e6, 1e-7, time.Hour)
	old := time.Now().Add(-2 * time.Hour)
	mustf(t, p.store.RecordShares(context.Background(), []store.Share{
		{Time: old, Worker: "carol", Difficulty: 0.5, Achieved: 1},
		{Time: old.Add(time.Second), Worker: "alice.rig1", Difficulty: 0.25, Achieved: 1},
	}), "recording two old shares")
	alice := dialMiner(t, p.stratum, "alice.rig1")
	bob := dialMiner(t, p.stratum, "bob")
	submit := func(m *rawMiner, user string, v byte) {
		t.Helper()
		sh := m.find(en2(m, v), 0, true)
		if res, e := m.callErr("mining.submit", m.params(user, sh)); e != nil || string(res) != "true" {
			t.Fatalf("share of %s: %s %v", user, res, e)
		}
	}
	for i := range 3 {
		submit(alice, "alice.rig1", byte(i+1))
	}
	for i := range 2 {
		submit(bob, "bob", byte(i+1))
	}
	d := alice.diff
	if d != 1e-7 || bob.diff != d {
		t.Fatalf("share difficulties %g and %g, want 1e-7", alice.diff, bob.diff)
	}

	get := func(q string) (int, string) {
		t.Helper()
		resp, err := http.Get(p.http.URL + "/api/workers" + q)
		mustf(t, err, "GET /api/workers%s", q)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	workers := func(q string) web.Workers {
		t.Helper()
		code, body := get(q)
		var ws web.Workers
		if err := json.Unmarshal([]byte(body), &ws); code != http.StatusOK || err != nil {
			t.Fatalf("GET /api/workers%s: %d %s (%v)", q, code, body, err)
		}
		return ws
	}
	type want struct {
		shares int64
		work   float64
	}
	check := func(q string, minutes int, wants map[string]want) web.Workers {
		t.Helper()
		ws := workers(q)
		if ws.Minutes != minutes || len(ws.Workers) != len(wants) {
			t.Fatalf("GET /api/workers%s: %+v, want %d workers over %d minutes", q, ws, len(wants), minutes)
		}
		// The span starts on a minute, up to a minute before now − span.
		if ws.Since.Second() != 0 || ws.Since.Nanosecond() != 0 || ws.Seconds < float64(minutes*60) || ws.Seconds >= float64(minutes*60+61) {
			t.Fatalf("GET /api/workers%s: since %s, %g s: want a minute boundary and %d s up to a minute more", q, ws.Since, ws.Seconds, minutes*60)
		}
		var names []string
		for _, w := range ws.Workers {
			names = append(names, w.Worker)
			x, ok := wants[w.Worker]
			if !ok || w.Shares != x.shares || math.Abs(w.Work-x.work) > 1e-12*x.work {
				t.Errorf("GET /api/workers%s: %s has %d shares, work %g; want %d, %g", q, w.Worker, w.Shares, w.Work, x.shares, x.work)
			}
			if hr := x.work * math.Exp2(32) / ws.Seconds; math.Abs(w.Hashrate-hr) > 1e-9*hr {
				t.Errorf("GET /api/workers%s: %s hashrate %g, want work × 2^32 / span = %g", q, w.Worker, w.Hashrate, hr)
			}
		}
		if got := strings.Join(names, ","); got != strings.Join(sortedKeys(wants), ",") {
			t.Errorf("GET /api/workers%s: workers %s, want sorted %v", q, got, sortedKeys(wants))
		}
		return ws
	}
	hour := check("?minutes=60", 60, map[string]want{"alice.rig1": {3, 3 * d}, "bob": {2, 2 * d}})
	for _, w := range hour.Workers {
		if age := time.Since(w.LastShare); age < 0 || age > time.Minute {
			t.Errorf("%s: last share %s, want the share just submitted", w.Worker, w.LastShare)
		}
	}
	// Asked again at once: the answer just computed (the same span
	// start, without bob's newer share), not a second read of the ledger.
	submit(bob, "bob", 9)
	if again := workers("?minutes=60"); !again.Since.Equal(hour.Since) || again.Workers[1].Shares != 2 {
		t.Errorf("GET /api/workers?minutes=60 asked again: since %s, bob %d shares; want the cached %s and 2", again.Since, again.Workers[1].Shares, hour.Since)
	}
	// Other spans are read afresh.
	check("", 10, map[string]want{"alice.rig1": {3, 3 * d}, "bob": {3, 3 * d}})
	check("?minutes=1440", 1440, map[string]want{"alice.rig1": {4, 0.25 + 3*d}, "bob": {3, 3 * d}, "carol": {1, 0.5}})

	for _, bad := range []string{"0", "1441", "ten", "-5"} {
		want := fmt.Sprintf("minutes: %q is not a whole number of minutes from 1 to 1440", bad)
		if code, body := get("?minutes=" + bad); code != http.StatusBadRequest || strings.TrimSpace(body) != want {
			t.Errorf("GET /api/workers?minutes=%s: %d %q, want 400 %q", bad, code, body, want)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
