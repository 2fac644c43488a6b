package agent

import (
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

func TestPacerHoldsTheRate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPacer(100_000)
		if p.maxChunk != 200 {
			t.Fatalf("maxChunk = %d, want 200 (2 ms at 100 kH/s)", p.maxChunk)
		}
		start := time.Now()
		for range 5000 { // 1,000,000 hashes in chunks of 200, hashed instantly
			p.wait(200, time.Now())
		}
		if got := time.Since(start); got != 10*time.Second {
			t.Errorf("1e6 hashes at 100 kH/s took %v, want exactly 10s", got)
		}
		// After a long idle spell the schedule restarts: no burst.
		time.Sleep(time.Minute)
		t0 := time.Now()
		p.wait(200, t0)
		p.wait(200, time.Now())
		if got := time.Since(t0); got != 4*time.Millisecond {
			t.Errorf("after idling, two chunks took %v, want 4ms (2 ms a chunk, no catching up)", got)
		}
	})
}

func TestPacerUnlimited(t *testing.T) {
	if p := newPacer(0); p.rate != 0 || p.maxChunk < chunkMax {
		t.Errorf("newPacer(0) = %+v, want no limit", p)
	}
	_, _, err := Config{URLs: []string{"127.0.0.1:1"}, HashLimit: -5}.withDefaults()
	if err == nil || !strings.Contains(err.Error(), "-5") {
		t.Errorf("HashLimit -5: err = %v, want it named", err)
	}
}
