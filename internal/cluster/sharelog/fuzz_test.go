package sharelog

import (
	"bytes"
	"testing"
)

// FuzzDecodeShares: any bytes decode to shares or to an error, never a
// panic; what decodes re-encodes as a batch that decodes to the same
// shares. The seed corpus in testdata/fuzz is replayed by go test.
//
//	go test -run XX -fuzz FuzzDecodeShares -fuzztime 10m ./internal/cluster/sharelog
func FuzzDecodeShares(f *testing.F) {
	var recs [][]byte
	for i := range 3 {
		recs = append(recs, AppendShare(nil, testShare(i)))
	}
	f.Add(AppendBatch(nil, recs))
	f.Add(AppendBatch(nil, recs[:1]))
	f.Add(AppendShare(nil, testShare(7)))
	f.Add([]byte{batchV2, 0})
	f.Add([]byte{batchV2, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		shares, err := DecodeShares(b)
		if err != nil {
			return
		}
		if len(shares) == 0 {
			t.Fatal("no error and no shares")
		}
		recs := make([][]byte, len(shares))
		for i, sh := range shares {
			recs[i] = AppendShare(nil, sh)
		}
		again, err := DecodeShares(AppendBatch(nil, recs))
		if err != nil || len(again) != len(shares) {
			t.Fatalf("re-encoded batch decodes to %v, %v; want %v", again, err, shares)
		}
		// Compared as encodings: a NaN difficulty is not equal to itself.
		for i := range again {
			if !bytes.Equal(AppendShare(nil, again[i]), recs[i]) {
				t.Fatalf("share %d re-encodes to %x, want %x", i, AppendShare(nil, again[i]), recs[i])
			}
		}
	})
}
