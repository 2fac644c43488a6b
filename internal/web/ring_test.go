package web

import "testing"

func TestHistoryRingKeepsNewestInOrder(t *testing.T) {
	var l live
	const extra = 25
	for i := range historyLen + extra {
		l.add(Sample{Time: int64(i)})
	}
	h := l.history()
	if len(h.Samples) != historyLen {
		t.Fatalf("%d samples, want %d", len(h.Samples), historyLen)
	}
	for i, s := range h.Samples {
		if s.Time != int64(i+extra) {
			t.Fatalf("sample %d has time %d, want %d", i, s.Time, i+extra)
		}
	}
}
