package hasher

import (
	"context"
	"errors"
	"math/rand/v2"
	"testing"
	"time"
)

func TestMeasure(t *testing.T) {
	j := NewJob(randHeader(rand.New(rand.NewPCG(1, 1))), benchTarget)
	for _, threads := range []int{1, 2} {
		r, err := Measure(context.Background(), Default(), j, threads, 20*time.Millisecond)
		if err != nil || r.Wall <= 0 {
			t.Fatalf("Measure(%d threads) = %v, %v", threads, r, err)
		}
		if _, ok := threadCPU(); ok && r.CPU <= 0 {
			t.Fatalf("Measure(%d threads) = %+v: no CPU-time rate where the OS reports thread CPU time", threads, r)
		}
	}
	if _, err := Measure(context.Background(), Default(), j, 0, time.Millisecond); err == nil {
		t.Fatal("0 threads accepted")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Measure(ctx, Default(), j, 1, time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Measure: err %v", err)
	}
}
