package node

import (
	"encoding/hex"
	"encoding/json"
	"testing"
	"time"

	"github.com/powcoord/powcoord/internal/chainmath"
)

// A node template's latest valid ntime is the node's 2-hour rule minus the
// one-minute margin, counted from curtime, and moves on with the clock.
func TestParseTemplateMaxTime(t *testing.T) {
	tx := witnessTx()
	commit := chainmath.WitnessCommitment([]chainmath.Hash{chainmath.Hash(tx.WitnessHash())})
	raw := coreTemplate(t, tx, hex.EncodeToString(commit[:]))
	created := time.Unix(1700000601, 0)
	tmpl, _, err := parseTemplate(raw, created)
	if err != nil {
		t.Fatal(err)
	}
	const want = 1700000600 + 7200 - 60 // curtime + 2 h − 1 min
	if tmpl.CurTime != 1700000600 || tmpl.MaxTime != want {
		t.Fatalf("CurTime %d MaxTime %d, want 1700000600 and %d", tmpl.CurTime, tmpl.MaxTime, want)
	}
	for _, c := range []struct {
		after time.Duration
		want  uint32
	}{
		{0, want},
		{999 * time.Millisecond, want},
		{time.Second, want + 1},
		{10 * time.Minute, want + 600},
		{-time.Minute, want}, // a clock stepped back does not lower the limit
	} {
		if got := tmpl.MaxTimeAt(created.Add(c.after)); got != c.want {
			t.Errorf("MaxTimeAt(Created%+v) = %d, want %d", c.after, got, c.want)
		}
	}

	// Near the end of uint32 time the limit stops at the largest ntime.
	var g map[string]any
	if err := json.Unmarshal(raw, &g); err != nil {
		t.Fatal(err)
	}
	g["curtime"] = 0xffffffff - 100
	raw2, err := json.Marshal(g)
	if err != nil {
		t.Fatal(err)
	}
	tmpl, _, err = parseTemplate(raw2, created)
	if err != nil || tmpl.MaxTime != 0xffffffff {
		t.Fatalf("curtime 2^32-101: MaxTime %d (%v), want 4294967295", tmpl.MaxTime, err)
	}
}
