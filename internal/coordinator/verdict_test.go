package coordinator_test

import (
	"encoding/hex"
	"maps"
	"testing"
	"time"

	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/coordinator"
	"github.com/powcoord/powcoord/internal/stratum"
)

// TestSameVerdictV1AndV2 sends the same submission, rule by rule, over
// Stratum V1 and over a V2 extended channel of one coordinator (same
// extranonce2, same ntime and version relative to the job, each solved
// for its own connection's extranonce1) and asks for the same verdict:
// the same rejection reason counted for the worker, and for the valid
// share a ledger row of the same shape. It is the table the one share
// pipeline must keep true.
func TestSameVerdictV1AndV2(t *testing.T) {
	const diff = 1e-7
	h := newV2Harness(t, harnessOpts{shareDiff: diff, cfg: func(c *coordinator.Config) { c.BanMinShares = -1 }})
	v1 := h.dialV1()
	v1.call("mining.configure", []any{[]string{"version-rolling"}, map[string]any{"version-rolling.mask": "ffffffff"}})
	n := v1.ready("one")
	v2 := h.readyV2("two", true)
	j := v2.cur
	ntime1, _ := stratum.ParseHex32("ntime", n.NTime)
	far := uint32(time.Now().Add(3 * time.Hour).Unix())
	lowTarget, _ := chainmath.TargetForDifficulty(diff)

	type sub struct {
		en2                uint32
		dntime             int64 // ntime relative to the job's
		atNTime            uint32
		vbits              uint32 // rolled version bits
		low, badEn, badJob bool
		resend             bool // the previous share of this row again
	}
	cases := []struct {
		name string
		s    sub
		want string // reason, "" for accepted
	}{
		{"valid", sub{en2: 1}, ""},
		{"duplicate", sub{resend: true}, coordinator.ReasonDuplicate},
		{"valid with BIP 323 bit 5 rolled", sub{en2: 2, vbits: 0x20}, ""},
		{"unknown job", sub{en2: 3, badJob: true}, coordinator.ReasonJobNotFound},
		{"ntime before the job", sub{en2: 4, dntime: -1}, coordinator.ReasonNTime},
		{"ntime too far ahead", sub{en2: 5, atNTime: far}, coordinator.ReasonNTime},
		{"version bit outside the mask", sub{en2: 6, vbits: 0x10}, coordinator.ReasonVersion},
		{"low difficulty", sub{en2: 7, low: true}, coordinator.ReasonLowDifficulty},
		{"extranonce2 of the wrong size", sub{en2: 8, badEn: true}, coordinator.ReasonExtranonce2},
	}
	var last1 share
	var last2 v2share
	for _, tc := range cases {
		before1, before2 := rejectedOf(h, "one"), rejectedOf(h, "two")
		// V1.
		s1 := last1
		if !tc.s.resend {
			nt := uint32(int64(ntime1) + tc.s.dntime)
			if tc.s.atNTime != 0 {
				nt = tc.s.atNTime
			}
			d := diff
			if tc.s.low {
				s1 = v1.solveLow(n, tc.s.en2, diff, nt)
			} else {
				s1 = v1.solveNonces(n, tc.s.en2, d, false, tc.s.vbits, nt, 0)
			}
			s1.vbits = stratum.Hex32(tc.s.vbits)
			if tc.s.badJob {
				s1.job = "ffffff"
			}
			if tc.s.badEn {
				s1.en2 = s1.en2[2:]
			}
		}
		s1.worker = "one"
		ok1, _ := v1.submit(s1)
		// V2.
		s2 := last2
		if !tc.s.resend {
			nt := uint32(int64(j.activeFrom) + tc.s.dntime)
			if tc.s.atNTime != 0 {
				nt = tc.s.atNTime
			}
			en := []byte{0, 0, 0, byte(tc.s.en2)}
			s2 = v2.solve(j, nt, j.version|tc.s.vbits, en, v2.target, !tc.s.low, false)
			if tc.s.low && lowTarget.Meets(&s2.hash) {
				t.Fatalf("%s: the low share meets the target", tc.name)
			}
			if tc.s.badJob {
				s2.job = 999
			}
			if tc.s.badEn {
				s2.en = s2.en[1:]
			}
		}
		v2.submit(s2)
		code2 := v2.result()
		ok2 := code2 == ""
		if !tc.s.resend {
			last1, last2 = s1, s2
		}
		got1, got2 := diffCounts(before1, rejectedOf(h, "one")), diffCounts(before2, rejectedOf(h, "two"))
		if ok1 != (tc.want == "") || ok2 != (tc.want == "") || !maps.Equal(got1, got2) {
			t.Errorf("%s: V1 accepted=%v reasons %v, V2 accepted=%v (%s) reasons %v; want reason %q for both", tc.name, ok1, got1, ok2, code2, got2, tc.want)
			continue
		}
		if tc.want != "" && got1[tc.want] != 1 {
			t.Errorf("%s: reasons %v, want one %q", tc.name, got1, tc.want)
		}
	}
	// The accepted shares' ledger rows: the same fields, each protocol's
	// own connection values.
	rows1, err1 := h.store.Shares(t.Context(), "one")
	rows2, err2 := h.store.Shares(t.Context(), "two")
	if err1 != nil || err2 != nil || len(rows1) != 2 || len(rows2) != 2 {
		t.Fatalf("ledger rows: V1 %d (%v), V2 %d (%v); want 2 each", len(rows1), err1, len(rows2), err2)
	}
	for i := range 2 {
		r1, r2 := rows1[i], rows2[i]
		if r1.Extranonce2 != r2.Extranonce2 || r1.Difficulty != r2.Difficulty || r1.Block != r2.Block ||
			r1.NTime-ntime1 != r2.NTime-j.activeFrom || r1.Version^mustHex32(n.Version) != r2.Version^j.version {
			t.Errorf("row %d differs in shape: V1 %+v, V2 %+v", i, r1, r2)
		}
		if r1.Extranonce1 != hex.EncodeToString(v1.en1) || r2.Extranonce1 != hex.EncodeToString(v2.prefix) {
			t.Errorf("row %d extranonce1 %s / %s, want the connections' %x / %x", i, r1.Extranonce1, r2.Extranonce1, v1.en1, v2.prefix)
		}
		for _, r := range []struct {
			a float64
			h chainmath.Hash
		}{{r1.Achieved, r1.Hash}, {r2.Achieved, r2.Hash}} {
			if r.a != chainmath.HashDifficulty(r.h) {
				t.Errorf("row %d achieved %v, hash %s says %v", i, r.a, r.h, chainmath.HashDifficulty(r.h))
			}
		}
	}
}

func mustHex32(s string) uint32 { v, _ := stratum.ParseHex32("hex", s); return v }

// rejectedOf is the worker's rejections by reason, from Status.
func rejectedOf(h *v2harness, worker string) map[string]uint64 {
	for _, w := range h.coord.Status().Workers {
		if w.Name == worker {
			return maps.Clone(w.Rejected)
		}
	}
	return map[string]uint64{}
}

// diffCounts is after minus before, reasons with no change left out.
func diffCounts(before, after map[string]uint64) map[string]uint64 {
	out := map[string]uint64{}
	for k, v := range after {
		if d := v - before[k]; d > 0 {
			out[k] = d
		}
	}
	return out
}

// solveLow finds a V1 share that misses diff.
func (c *client) solveLow(n *stratum.Notify, en2v uint32, diff float64, ntime uint32) share {
	c.t.Helper()
	tgt, _ := chainmath.TargetForDifficulty(diff)
	for start := uint32(0); ; {
		// the first nonce from start that meets a much easier target
		s := c.solveNonces(n, en2v, diff/1e6, false, 0, ntime, start)
		if !tgt.Meets(&s.hash) {
			return s
		}
		start = mustHex32(s.nonce) + 1
	}
}
