package pgledger

import (
	"fmt"
	"testing"
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
