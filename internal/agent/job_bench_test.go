package agent

import (
	"testing"

	"github.com/powcoord/powcoord/internal/hasher"
)

// BenchmarkUnitHeader measures what a thread does when it takes a work
// unit: the unit's extranonce2, the header built for it (coinbase, merkle
// root) and the midstate of that header.
func BenchmarkUnitHeader(b *testing.B) {
	j, err := newJob(makeNotify(b, "bench", true, 8), []byte{1, 2, 3, 4}, 4, 1, 0)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	var u uint64
	for b.Loop() {
		en2, _, _ := j.unit(u)
		hdr := j.header(en2, 0)
		hasher.NewJob(&hdr, j.target)
		u++
	}
}
