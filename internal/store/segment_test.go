package store

import (
	"context"
	"database/sql"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/powcoord/powcoord/internal/chainmath"
)

// A hand-assembled segment of two shares, annotated field by field: the
// second share reuses the first one's worker and job id through the
// string table.
func TestSegmentGoldenBytes(t *testing.T) {
	a := Share{
		Time: time.Unix(0, 1000), Worker: "w", Extranonce1: "e1", JobID: "j", Extranonce2: "00",
		NTime: 0x01020304, Nonce: 0xfffffffe, Version: 0x20000000, Difficulty: 1, Achieved: 2,
		Hash: chainmath.Hash{31: 0xab}, Block: true,
	}
	b := a
	b.Time = time.Unix(0, 900) // earlier: a negative delta
	b.Extranonce1, b.Extranonce2, b.Block = "e2", "00", false
	fixed := func(flags string) string {
		return "04030201" + "feffffff" + "00000020" + // ntime, nonce, version
			"000000000000f03f" + "0000000000000040" + // difficulty 1, achieved 2
			strings.Repeat("00", 31) + "ab" + flags // hash, flags
	}
	want := "01" + "02" + // format, count
		"d00f" + // varint 1000
		"00" + "01" + "77" + "00" + "02" + "6531" + "00" + "01" + "6a" + "00" + "02" + "3030" + // w, e1, j, "00" new
		fixed("01") +
		"c701" + // varint -100
		"01" + "00" + "02" + "6532" + "03" + "04" + // w ref 1, e2 new, j ref 3, "00" ref 4
		fixed("00")
	var enc segmentEncoder
	enc.reset()
	enc.add(&a)
	enc.add(&b)
	if got := hex.EncodeToString(enc.bytes()); got != want {
		t.Fatalf("segment\n got %s\nwant %s", got, want)
	}
	out, n, err := decodeSegment(nil, enc.bytes(), "")
	if err != nil || n != 2 || len(out) != 2 || !sameShare(out[0], a) || !sameShare(out[1], b) {
		t.Fatalf("decode: %d %v\n%+v", n, err, out)
	}
	// Filtering by worker still checks and counts every share.
	out, n, err = decodeSegment(nil, enc.bytes(), "nobody")
	if err != nil || n != 2 || len(out) != 0 {
		t.Fatalf("decode for nobody: %d shares of %d, %v", len(out), n, err)
	}
}

func TestSegmentRejectsCorruption(t *testing.T) {
	var enc segmentEncoder
	enc.reset()
	for i := range 5 {
		sh := testShare("w", i)
		enc.add(&sh)
	}
	good := enc.bytes()
	cases := map[string][]byte{
		"empty":         {},
		"format":        append([]byte{9}, good[1:]...),
		"truncated":     good[:len(good)-1],
		"trailing":      append(append([]byte(nil), good...), 0),
		"count too big": append([]byte{1, 0xff, 0xff, 0x03}, good[2:]...),
	}
	bad := append([]byte(nil), good...)
	bad[len(bad)-1] = 0x80 // unknown flag
	cases["flags"] = bad
	for name, data := range cases {
		if _, _, err := decodeSegment(nil, data, ""); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
}

func FuzzDecodeSegment(f *testing.F) {
	var enc segmentEncoder
	enc.reset()
	for i := range 3 {
		sh := testShare("fz", i)
		enc.add(&sh)
	}
	f.Add(enc.bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		out, n, err := decodeSegment(nil, data, "")
		if err == nil && len(out) != n {
			t.Fatalf("%d shares decoded, count %d", len(out), n)
		}
		if err != nil {
			return
		}
		var re segmentEncoder
		re.reset()
		for i := range out {
			re.add(&out[i])
		}
		back, m, err := decodeSegment(nil, re.bytes(), "")
		if err != nil || m != n {
			t.Fatalf("re-encoded segment: %d %v", m, err)
		}
		for i := range back {
			if !sameShare(back[i], out[i]) && !(out[i].Difficulty != out[i].Difficulty || out[i].Achieved != out[i].Achieved) {
				t.Fatalf("share %d changed in a round trip", i)
			}
		}
	})
}

// A ledger written one row per share (before segments) is still read,
// before the segments, and counted.
func TestLegacySharesRead(t *testing.T) {
	ctx := context.Background()
	s, path := openTemp(t)
	old := testShare("old", 1)
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO shares
		(time, worker, extranonce1, job_id, extranonce2, ntime, nonce, version, difficulty, achieved, hash, block)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		old.Time.UnixNano(), old.Worker, old.Extranonce1, old.JobID, old.Extranonce2,
		int64(old.NTime), int64(old.Nonce), int64(old.Version), old.Difficulty, old.Achieved, old.Hash[:], old.Block); err != nil {
		t.Fatal(err)
	}
	db.Close()
	nw := testShare("new", 2)
	if err := s.RecordShare(ctx, nw); err != nil {
		t.Fatal(err)
	}
	all, err := s.Shares(ctx, "")
	if err != nil || len(all) != 2 || !sameShare(all[0], old) || !sameShare(all[1], nw) {
		t.Fatalf("Shares: %v %+v", err, all)
	}
	if n, err := s.ShareCount(ctx); err != nil || n != 2 {
		t.Fatalf("ShareCount %d %v", n, err)
	}
	if got, err := s.Shares(ctx, "old"); err != nil || len(got) != 1 {
		t.Fatalf("Shares(old): %d %v", len(got), err)
	}
}
