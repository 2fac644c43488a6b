package loadtest

import (
	"testing"
	"time"

	"github.com/powcoord/powcoord/internal/stratum"
)

// BenchmarkSolve measures one share found on the current job at a share
// target every hash meets: the coinbase and header built for a fresh
// extranonce2, one hash, and the share record.
func BenchmarkSolve(b *testing.B) {
	n := &stratum.Notify{JobID: "1f", PrevHash: "00000000440b921e1b77c6c0487ae5616de67f788f44ae2a5af6e2194d16b6f8",
		Coinb1:  "01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff20020862062f503253482f04b8864e5008",
		Coinb2:  "072f736c7573682f000000000100f2052a010000001976a914d23fcdf86f7e756a64a7a9688ef9903327048ed988ac00000000",
		Branch:  []string{"c40297f730dd7b5a99567eb8d27b78758f607507c52292d02d4031895b52f2ff", "c40297f730dd7b5a99567eb8d27b78758f607507c52292d02d4031895b52f2ff"},
		Version: "20000000", NBits: "1d00ffff", NTime: "504e86b9", Clean: true}
	line, err := stratum.AppendRequest(nil, nil, "mining.notify", n)
	if err != nil {
		b.Fatal(err)
	}
	m := &Miner{User: "bench", en1: []byte{1, 2, 3, 4}, en1Hex: "01020304", en2Size: 4, diff: 1e-12, workCh: make(chan struct{})}
	prev, clean, _ := scanNotify(line)
	m.noteWork(line, prev, clean, time.Now(), time.Now())
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := m.Solve(false, 1<<10); !ok {
			b.Fatal("no share")
		}
	}
}
