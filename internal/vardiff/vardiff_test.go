package vardiff

import (
	"testing"
	"time"
)

// TestRetarget: shares more than four times too fast raise the difficulty
// (at most 4×) once past an eighth of the interval; a rate within 0.8..1.25 of the aim keeps it;
// too slow lowers it, bounded by Min; PerMinute < 0 never moves it.
func TestRetarget(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	v := Controller{PerMinute: 20, Interval: time.Minute, Min: 0.5, Max: 100}
	v.Retarget(t0, 1, false)
	var d float64
	var changed bool
	n := 0
	for !changed && n < 1000 { // a share every 100 ms: 30× the aim
		n++
		d, changed = v.Retarget(t0.Add(time.Duration(n)*100*time.Millisecond), 1, true)
	}
	if n != 81 {
		t.Fatalf("retargeted after %d shares, want 81 (more than 4× the aim for the interval, past an eighth of it)", n)
	}
	if !changed || d != 4 {
		t.Fatalf("fast shares: difficulty %v (changed %v), want 4", d, changed)
	}
	v = Controller{PerMinute: 20, Interval: time.Minute, Min: 0.5, Max: 100, Start: t0, Shares: 19}
	if d, changed := v.Retarget(t0.Add(time.Minute), 2, true); changed || d != 2 {
		t.Fatalf("20 shares in a minute: %v %v, want 2 unchanged", d, changed)
	}
	v = Controller{PerMinute: 20, Interval: time.Minute, Min: 0.5, Max: 100, Start: t0}
	if d, changed := v.Retarget(t0.Add(time.Minute), 1, true); !changed || d != 0.5 {
		t.Fatalf("one share in a minute: %v %v, want the floor 0.5", d, changed)
	}
	off := Controller{PerMinute: -1}
	if d, changed := off.Retarget(t0, 3, true); changed || d != 3 {
		t.Fatalf("vardiff off: %v %v", d, changed)
	}
}
