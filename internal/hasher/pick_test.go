package hasher

import (
	"context"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		v    []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{9, 1, 1, 1, 9}, 1},
	} {
		if got := Median(c.v); got != c.want {
			t.Errorf("Median(%v) = %v, want %v", c.v, got, c.want)
		}
	}
}

// TestWhySaysRatios pins the reason bench and agent --kernel auto give.
func TestWhySaysRatios(t *testing.T) {
	ranked := []Rated{
		{genericKernel{}, 30},
		{stdlibKernel{}, 6},
	}
	want := "measured fastest: 30.00 MH/s, 5.00× the next fastest, stdlib (6.00 MH/s), and 5.00× stdlib"
	if got := Why(ranked); got != want {
		t.Errorf("Why = %q\nwant  %q", got, want)
	}
	if got := Why(ranked[:1]); got != "the only kernel measured (30.00 MH/s)" {
		t.Errorf("Why(one) = %q", got)
	}
	if got := Why([]Rated{{stdlibKernel{}, 6}, {genericKernel{}, 2}}); got != "measured fastest: 6.00 MH/s, 3.00× the next fastest, generic (2.00 MH/s)" {
		t.Errorf("Why(stdlib first) = %q", got)
	}
	if got := Why(nil); got != "no kernel measured" {
		t.Errorf("Why(none) = %q", got)
	}
}

// TestRankOrdersByMedian ranks the reference against the pure-Go kernel
// and the fastest available: the result is every kernel once, fastest
// first, and the medians are real rates.
func TestRankOrdersByMedian(t *testing.T) {
	j := NewJob(randHeader(rand.New(rand.NewPCG(1, 1))), benchTarget)
	ks := Available()
	ranked, err := Rank(context.Background(), ks, j, 5*time.Millisecond, 3)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for i, r := range ranked {
		names = append(names, r.Kernel.Name())
		if r.MHs <= 0 {
			t.Errorf("%s: rate %v", r.Kernel.Name(), r.MHs)
		}
		if i > 0 && r.MHs > ranked[i-1].MHs {
			t.Errorf("%s (%.2f) ranked after %s (%.2f)", r.Kernel.Name(), r.MHs, ranked[i-1].Kernel.Name(), ranked[i-1].MHs)
		}
	}
	var want []string
	for _, k := range ks {
		want = append(want, k.Name())
	}
	slices.Sort(names)
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Errorf("ranked %v, want each of %v once", names, want)
	}
	if _, err := Rank(context.Background(), ks, j, time.Millisecond, 0); err == nil || !strings.Contains(err.Error(), "0 runs") {
		t.Errorf("Rank with 0 runs: error %v", err)
	}
}

// TestFastestIsAvailable: what agent --kernel auto gets is a kernel this
// CPU runs, the same on a second call, with a measurement as its reason.
func TestFastestIsAvailable(t *testing.T) {
	k, why := Fastest()
	if _, err := ByName(k.Name()); err != nil {
		t.Fatalf("Fastest = %s: %v", k.Name(), err)
	}
	if !strings.HasPrefix(why, "measured fastest: ") && !strings.HasPrefix(why, "the only kernel") {
		t.Errorf("Fastest %s, reason %q is not a measurement", k.Name(), why)
	}
	if k2, why2 := Fastest(); k2 != k || why2 != why {
		t.Errorf("second Fastest = %s %q, first %s %q", k2.Name(), why2, k.Name(), why)
	}
}
