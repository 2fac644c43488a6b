package hasher

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/powcoord/powcoord/internal/chainmath"
)

// Rated is a kernel with its measured rate.
type Rated struct {
	Kernel Kernel
	MHs    float64 // median of the runs, millions of nonces per second
}

// Rank measures each kernel in ks on j for runs rounds of d on one
// thread, the kernels' runs interleaved so that background load falls on
// all of them alike, and returns them fastest first by median rate
// (Rate.Best: per CPU second where the OS says).
func Rank(ctx context.Context, ks []Kernel, j *Job, d time.Duration, runs int) ([]Rated, error) {
	if runs < 1 {
		return nil, fmt.Errorf("rank kernels: %d runs: need at least 1", runs)
	}
	samples := make([][]float64, len(ks))
	for range runs {
		for i, k := range ks {
			mhs, err := Measure(ctx, k, j, 1, d)
			if err != nil {
				return nil, fmt.Errorf("rank kernels: %w", err)
			}
			samples[i] = append(samples[i], mhs.Best())
		}
	}
	rs := make([]Rated, len(ks))
	for i, k := range ks {
		rs[i] = Rated{Kernel: k, MHs: Median(samples[i])}
	}
	slices.SortStableFunc(rs, func(a, b Rated) int {
		switch {
		case a.MHs > b.MHs:
			return -1
		case a.MHs < b.MHs:
			return 1
		}
		return 0
	})
	return rs, nil
}

// Median returns the median of v (the mean of the middle two when len(v)
// is even), or 0 for none.
func Median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// Why says, in one line, why the first of ranked (fastest first, as Rank
// returns them) is the one to use: its rate against the next fastest's
// (and stdlib's, if measured).
func Why(ranked []Rated) string {
	switch len(ranked) {
	case 0:
		return "no kernel measured"
	case 1:
		return fmt.Sprintf("the only kernel measured (%.2f MH/s)", ranked[0].MHs)
	}
	best, next := ranked[0], ranked[1]
	why := fmt.Sprintf("measured fastest: %.2f MH/s, %.2f× the next fastest, %s (%.2f MH/s)",
		best.MHs, best.MHs/next.MHs, next.Kernel.Name(), next.MHs)
	for _, r := range ranked[1:] {
		if r.Kernel.Name() == "stdlib" && r.MHs > 0 {
			why += fmt.Sprintf(", and %.2f× stdlib", best.MHs/r.MHs)
		}
	}
	return why
}

// Calibration job and time for Fastest: about 40 ms per kernel and run.
const (
	pickRun  = 40 * time.Millisecond
	pickRuns = 3
)

var fastest struct {
	once sync.Once
	k    Kernel
	why  string
}

// Fastest returns the kernel that hashes fastest on this machine and why,
// measured once per process (every available kernel, stdlib included: on
// arm64 crypto/sha256's SHA-2 instructions beat the portable kernel; a few
// runs of 40 ms each, about half a second) and remembered after. If
// measuring fails it returns Default and says so.
func Fastest() (Kernel, string) {
	fastest.once.Do(func() {
		ks := Available()
		var hdr [chainmath.HeaderSize]byte
		r := rand.New(rand.NewPCG(1, 2))
		for i := range hdr {
			hdr[i] = byte(r.Uint32())
		}
		j := NewJob(&hdr, chainmath.TargetFromBig(chainmath.Diff1Target()))
		ranked, err := Rank(context.Background(), ks, j, pickRun, pickRuns)
		if err != nil {
			fastest.k, fastest.why = Default(), fmt.Sprintf("%s by default: measuring failed: %v", Default().Name(), err)
			return
		}
		fastest.k, fastest.why = ranked[0].Kernel, Why(ranked)
	})
	return fastest.k, fastest.why
}
