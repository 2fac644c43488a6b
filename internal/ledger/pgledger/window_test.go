package pgledger

import (
	"fmt"
	"testing"

	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/ledger"
)

// TestScanRecentShares: newest first across pages, stopping when told,
// with the newest share's id as the cutoff.
func TestScanRecentShares(t *testing.T) {
	l, _ := open(t)
	c := ctx(t)
	if cutoff, err := l.ScanRecentShares(c, func(string, float64) bool { t.Fatal("a share in an empty ledger"); return false }); err != nil || cutoff != 0 {
		t.Fatalf("empty ledger: cutoff %d, %v", cutoff, err)
	}
	const n = scanPage + 10
	var batch []Share
	for i := range n {
		batch = append(batch, share(i, fmt.Sprint("w", i%3)))
		if len(batch) == MaxBatch || i == n-1 {
			if _, err := l.Record(c, batch); err != nil {
				t.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	var seen []string
	var sum float64
	cutoff, err := l.ScanRecentShares(c, func(w string, d float64) bool {
		seen = append(seen, w)
		sum += d
		return true
	})
	if err != nil || len(seen) != n || cutoff != n {
		t.Fatalf("full walk: %d shares, cutoff %d, %v; want %d, %d", len(seen), cutoff, err, n, n)
	}
	// share i has difficulty 1 + i%4; workers cycle w0, w1, w2.
	want := 0.0
	for i := range n {
		want += float64(1 + i%4)
	}
	if sum != want {
		t.Fatalf("walk: difficulty sum %v, want %v", sum, want)
	}
	// Newest first: the reverse of the stored order.
	stored, err := l.Shares(c, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	for i, sh := range stored {
		if seen[n-1-i] != sh.Worker {
			t.Fatalf("walk position %d: %s, the stored order says %s", n-1-i, seen[n-1-i], sh.Worker)
		}
	}
	seen = seen[:0]
	if cutoff, err := l.ScanRecentShares(c, func(w string, d float64) bool { seen = append(seen, w); return len(seen) < 3 }); err != nil || cutoff != n || len(seen) != 3 {
		t.Fatalf("stopped walk: %d shares, cutoff %d, %v", len(seen), cutoff, err)
	}
}

// TestWindowSharesAndScriptPayouts: WindowShares walks the shares with id
// up to a cutoff, newest first across pages, each as stored (found by its
// hash); and
// ScriptPayouts lists a script's (or a label's) recorded payments oldest
// first without the fee, with no state (the ledger keeps none).
func TestWindowSharesAndScriptPayouts(t *testing.T) {
	l, _ := open(t)
	c := ctx(t)
	const n = scanPage + 10
	all := map[chainmath.Hash]Share{}
	var batch []Share
	for i := range n {
		sh := share(i, fmt.Sprint("w", i%3))
		all[sh.Hash] = sh
		batch = append(batch, sh)
		if len(batch) == MaxBatch || i == n-1 {
			if _, err := l.Record(c, batch); err != nil {
				t.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	cutoff := int64(n - 5)
	walked := 0
	next := cutoff
	var bad string
	err := l.WindowShares(c, cutoff, func(id int64, sh *ledger.Share) bool {
		want, ok := all[sh.Hash]
		if id != next || !ok || sh.Worker != want.Worker || sh.Difficulty != want.Difficulty || !sh.Time.Equal(want.Time) {
			bad = fmt.Sprintf("share id %d (want %d): %+v", id, next, sh)
			return false
		}
		next--
		walked++
		return true
	})
	if err != nil || bad != "" || walked != int(cutoff) {
		t.Fatalf("WindowShares(%d): walked %d, %v %s", cutoff, walked, err, bad)
	}

	for i, rec := range []PayoutRecord{
		{Hash: chainmath.Hash{1}, Height: 9, Mode: "pplns", Window: "1", Value: 300, Outputs: []PayoutOutput{{Script: []byte{0x51}, Amount: 200, Label: "alice"}, {Script: []byte{0x6a}, Amount: 100, Fee: true}}},
		{Hash: chainmath.Hash{2}, Height: 8, Mode: "solo", Value: 50, Outputs: []PayoutOutput{{Script: []byte{0x52}, Amount: 50, Label: "alice"}}},
		{Hash: chainmath.Hash{3}, Height: 10, Mode: "solo", Value: 70, Outputs: []PayoutOutput{{Script: []byte{0x53}, Amount: 70, Label: "bob"}}},
	} {
		if err := l.RecordPayouts(c, rec); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
	}
	pays, err := l.ScriptPayouts(c, []byte{0x51}, "alice")
	if err != nil || len(pays) != 2 || pays[0].Height != 8 || pays[0].Amount != 50 || pays[1].Height != 9 || pays[1].Amount != 200 || pays[1].Hash != (chainmath.Hash{1}) || pays[0].State != "" {
		t.Fatalf("ScriptPayouts(51, alice) = %+v, %v; want heights 8 (50 sat) and 9 (200 sat)", pays, err)
	}
	if pays, err := l.ScriptPayouts(c, []byte{0x6a}, "a\x00"); err != nil || len(pays) != 0 {
		t.Fatalf("ScriptPayouts of the fee script and an unstorable label = %+v, %v; want none", pays, err)
	}
}
