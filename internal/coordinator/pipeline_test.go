package coordinator_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/powcoord/powcoord/internal/coordinator"
	"github.com/powcoord/powcoord/internal/stratum"
)

// TestPipelinedSubmits: a miner that sends its shares without waiting for
// the answers (as miners do) gets them in request order, each true only
// once durable; the same work sent twice while the first copy is still
// with the ledger is a duplicate; a rejection and another method sent
// behind them are answered after them.
func TestPipelinedSubmits(t *testing.T) {
	h := newHarness(t, harnessOpts{shareDiff: 1e-7})
	c := h.dial()
	n := c.ready("alice")
	var lines []string
	var want []string // "true", or the error code
	var ids []string
	add := func(id int, s share, w string) {
		b, _ := stratum.AppendRequest(nil, id, "mining.submit", s.params())
		lines = append(lines, strings.TrimSuffix(string(b), "\n"))
		want = append(want, w)
		ids = append(ids, fmt.Sprint(id))
	}
	a := c.solve(n, 1, 1e-7, false, 0)
	a.worker = "alice"
	b := c.solve(n, 2, 1e-7, false, 0)
	b.worker = "alice"
	bad := c.solve(n, 3, 1e-7, false, 0)
	bad.worker = "alice"
	bad.ntime = "00000001"
	for k := range 40 { // more than a session pipelines at once
		s := c.solve(n, uint32(100+k), 1e-7, false, 0)
		s.worker = "alice"
		add(10+k, s, "true")
	}
	add(1, a, "true")
	add(2, a, fmt.Sprint(stratum.CodeDuplicate))
	add(3, b, "true")
	add(4, bad, fmt.Sprint(stratum.CodeOther))
	add(5, b, fmt.Sprint(stratum.CodeDuplicate))
	lines = append(lines, `{"id":6,"method":"mining.extranonce.subscribe","params":[]}`)
	want = append(want, "true")
	ids = append(ids, "6")
	c.send(strings.Join(lines, "\n"))
	for i, w := range want {
		m, err := c.readMsg()
		for err == nil && m.Method != "" {
			m, err = c.readMsg()
		}
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		got := string(m.Result)
		if e := m.ResponseError(); e != nil {
			got = fmt.Sprint(e.Code)
		}
		if string(m.ID) != ids[i] || got != w {
			t.Fatalf("answer %d: id %s result %s, want id %s result %s", i, m.ID, got, ids[i], w)
		}
	}
	if got := shareCount(t, h.store); got != 42 {
		t.Fatalf("ledger holds %d shares, want 42", got)
	}
	st := h.coord.Status()
	if len(st.Workers) != 1 || st.Workers[0].Accepted != 42 || st.Workers[0].Rejected[coordinator.ReasonDuplicate] != 2 || st.Workers[0].Rejected[coordinator.ReasonNTime] != 1 {
		t.Fatalf("worker stats %+v", st.Workers)
	}
}
