package coordinator_test

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/coordinator"
	"github.com/powcoord/powcoord/internal/store"
)

// bestLines renders BestShares as "kind name span difficulty" lines
// ("-" for an empty span).
func bestLines(b coordinator.BestShares) string {
	var sb strings.Builder
	f := func(r *coordinator.BestRecord) string {
		if r == nil {
			return "-"
		}
		return fmt.Sprintf("%.6g@%s", r.Difficulty, r.Hash[56:])
	}
	for _, o := range b.Workers {
		fmt.Fprintf(&sb, "worker %s %s %s %s\n", o.Name, f(o.Session), f(o.SinceBlock), f(o.AllTime))
	}
	for _, o := range b.Addresses {
		fmt.Fprintf(&sb, "address %s %s %s %s\n", o.Name, f(o.Session), f(o.SinceBlock), f(o.AllTime))
	}
	return sb.String()
}

func rec(h chainmath.Hash) string {
	return fmt.Sprintf("%.6g@%s", chainmath.HashDifficulty(h), h.String()[56:])
}

// bestOf returns the share of the highest difficulty among shares.
func bestOf(shares ...share) share {
	sort.Slice(shares, func(i, j int) bool {
		return chainmath.HashDifficulty(shares[i].hash) > chainmath.HashDifficulty(shares[j].hash)
	})
	return shares[0]
}

func TestBestShares(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "powcoord.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	reg := prometheus.NewRegistry()
	h := newHarness(t, harnessOpts{store: st, shareDiff: 1e-8, blockDiff: 1e-6, cfg: func(c *coordinator.Config) { c.Registerer = reg }})

	submit := func(c *client, worker string, en2 uint32, block bool) share {
		t.Helper()
		s := c.solve(c.lastJob, en2, 1e-8, block, 0)
		s.worker = worker
		if ok, code := c.submit(s); !ok {
			t.Fatalf("%s share refused (%d)", worker, code)
		}
		return s
	}
	a := h.dial()
	a.ready("alice.rig1")
	a.authorize("alice.rig2")
	b := h.dial()
	b.ready("bob")
	r1 := []share{submit(a, "alice.rig1", 1, false), submit(a, "alice.rig1", 2, false), submit(a, "alice.rig1", 3, false)}
	r2 := []share{submit(a, "alice.rig2", 4, false)}
	bs := []share{submit(b, "bob", 5, false), submit(b, "bob", 6, false)}

	// Accounting is by the session's first name (alice.rig1), the
	// durable records by the share's worker name.
	best1, best2, bestB := bestOf(r1...), bestOf(r2...), bestOf(bs...)
	bestA := bestOf(best1, best2)
	sess1 := bestOf(append(append([]share{}, r1...), r2...)...)
	want := fmt.Sprintf(`worker alice.rig1 %s %s %s
worker alice.rig2 - %s %s
worker bob %s %s %s
address alice %s %s %s
address bob %s %s %s
`, rec(sess1.hash), rec(best1.hash), rec(best1.hash),
		rec(best2.hash), rec(best2.hash),
		rec(bestB.hash), rec(bestB.hash), rec(bestB.hash),
		rec(sess1.hash), rec(bestA.hash), rec(bestA.hash),
		rec(bestB.hash), rec(bestB.hash), rec(bestB.hash))
	if got := bestLines(h.coord.BestShares()); got != want {
		t.Fatalf("best shares:\n%s\nwant:\n%s", got, want)
	}
	// /api/status carries them per worker and per address.
	stt := h.coord.Status()
	for _, w := range stt.Workers {
		if w.Name == "bob" && (w.BestSession != chainmath.HashDifficulty(bestB.hash) || w.BestAllTime != w.BestSession || w.BestSinceBlock != w.BestSession) {
			t.Errorf("status bob best %v/%v/%v, want %v", w.BestSession, w.BestSinceBlock, w.BestAllTime, chainmath.HashDifficulty(bestB.hash))
		}
	}
	if len(stt.BestByAddress) != 2 || stt.BestByAddress[1].AllTime.Difficulty != chainmath.HashDifficulty(bestB.hash) {
		t.Errorf("status best_by_address %+v", stt.BestByAddress)
	}
	// And /metrics.
	metric := gatherBest(t, reg)
	if got, want := metric[`worker bob all_time`], chainmath.HashDifficulty(bestB.hash); got != want {
		t.Errorf("powcoord_best_share_difficulty{worker bob all_time} = %v, want %v", got, want)
	}
	if got, want := metric[`address alice session`], chainmath.HashDifficulty(sess1.hash); got != want {
		t.Errorf("powcoord_best_share_difficulty{address alice session} = %v, want %v", got, want)
	}

	// Bob finds a block: since-block records start again; the block
	// share counts for all time only.
	blk := submit(b, "bob", 7, true)
	a.waitNotify()
	b.waitNotify()
	after := submit(a, "alice.rig1", 8, false)
	wantAll := bestOf(bestB, blk)
	want = fmt.Sprintf(`worker alice.rig1 %s %s %s
worker alice.rig2 - - %s
worker bob %s - %s
address alice %s %s %s
address bob %s - %s
`, rec(bestOf(sess1, after).hash), rec(after.hash), rec(bestOf(best1, after).hash),
		rec(best2.hash),
		rec(wantAll.hash), rec(wantAll.hash),
		rec(bestOf(sess1, after).hash), rec(after.hash), rec(bestOf(bestA, after).hash),
		rec(wantAll.hash), rec(wantAll.hash))
	if got := bestLines(h.coord.BestShares()); got != want {
		t.Fatalf("after bob's block:\n%s\nwant:\n%s", got, want)
	}

	// A restart keeps the durable spans; the session spans start empty.
	h.stop()
	h2 := newHarness(t, harnessOpts{store: st, shareDiff: 1e-8, blockDiff: 1e-6})
	want = fmt.Sprintf(`worker alice.rig1 - %s %s
worker alice.rig2 - - %s
worker bob - - %s
address alice - %s %s
address bob - - %s
`, rec(after.hash), rec(bestOf(best1, after).hash),
		rec(best2.hash),
		rec(wantAll.hash),
		rec(after.hash), rec(bestOf(bestA, after).hash),
		rec(wantAll.hash))
	if got := bestLines(h2.coord.BestShares()); got != want {
		t.Fatalf("after a restart:\n%s\nwant:\n%s", got, want)
	}
}

func gatherBest(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "powcoord_best_share_difficulty" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, p := range m.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			out[l["kind"]+" "+l["name"]+" "+l["span"]] = m.GetGauge().GetValue()
		}
	}
	return out
}
