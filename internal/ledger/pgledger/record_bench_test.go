package pgledger

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/clustertest"
)

// benchShares returns n shares as front-ends send them: random hashes,
// 2,000 workers with address-like names, hex extranonces and job ids,
// times a few microseconds apart, achieved difficulties spread like real
// ones (the share difficulty over a uniform variate).
func benchShares(n int) []Share {
	r := rand.New(rand.NewPCG(1, 2))
	workers := make([]string, 2000)
	for i := range workers {
		workers[i] = fmt.Sprintf("bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkf%05dwlh.rig%d", i, i%7)
	}
	start := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	out := make([]Share, n)
	for i := range out {
		var h chainmath.Hash
		for k := 0; k < len(h); k += 8 {
			binary.LittleEndian.PutUint64(h[k:], r.Uint64())
		}
		out[i] = Share{
			Time:        start.Add(time.Duration(i) * 20 * time.Microsecond),
			Worker:      workers[r.IntN(len(workers))],
			Extranonce1: fmt.Sprintf("%08x", r.Uint32()),
			JobID:       fmt.Sprintf("%x", 0x1a0+i/100000),
			Extranonce2: fmt.Sprintf("%016x", r.Uint64()),
			NTime:       0x65000000 + uint32(i/50000),
			Nonce:       r.Uint32(),
			Version:     0x20000000,
			Difficulty:  1e-3,
			Achieved:    1e-3 / (1 - r.Float64()),
			Hash:        h,
			Block:       i%100000 == 99999,
		}
		if math.IsInf(out[i].Achieved, 0) {
			out[i].Achieved = 1
		}
	}
	return out
}

// BenchmarkRecord stores b.N shares in batches of 300 or 5,000 from 4 writers at
// once (a ledger writer commits 2 batches at a time by default, and a
// cluster may run more than one writer) into the test PostgreSQL, and
// reports shares/s and the CPU PostgreSQL's processes and this process
// spent per stored share.
func BenchmarkRecord(b *testing.B) {
	// 300 shares is a front-end's batch or two; the ledger writer's
	// batches under load hold several thousand (up to 64 messages).
	for _, batch := range []int{300, 5000} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) { benchRecord(b, batch) })
	}
}

func benchRecord(b *testing.B, batch int) {
	const writers = 4
	pg := clustertest.StartPostgres(b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	l, err := Open(ctx, pg.CreateDatabase(b))
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	shares := benchShares(b.N)
	next := make(chan []Share, b.N/batch+1)
	for i := 0; i < len(shares); i += batch {
		next <- shares[i:min(i+batch, len(shares))]
	}
	close(next)
	pg0, err := pg.CPUTime()
	if err != nil {
		b.Fatal(err)
	}
	self0 := selfCPU()
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for s := range next {
				if _, err := l.Record(ctx, s); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	el := time.Since(start)
	b.StopTimer()
	pg1, err := pg.CPUTime()
	if err != nil {
		b.Fatal(err)
	}
	self1 := selfCPU()
	if n, err := l.ShareCount(ctx); err != nil || n != int64(b.N) {
		b.Fatalf("ledger holds %d shares (%v), want %d", n, err, b.N)
	}
	b.ReportMetric(float64(b.N)/el.Seconds(), "shares/s")
	b.ReportMetric(float64((pg1-pg0).Microseconds())/float64(b.N), "pg-µs/share")
	b.ReportMetric(float64((self1-self0).Microseconds())/float64(b.N), "client-µs/share")
}
