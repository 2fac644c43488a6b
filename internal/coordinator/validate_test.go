package coordinator

import (
	"encoding/binary"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/stratum"
	"github.com/powcoord/powcoord/internal/work"
)

// TestValidateShareTable judges one submission per rule, each valid but
// for the rule under test, with validateShare alone: no session, no lock,
// no I/O.
func TestValidateShareTable(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	tmpl := &work.Template{Height: 5, Version: 0x20000000, Bits: 0x207fffff, CurTime: uint32(now.Unix()), MinTime: uint32(now.Unix()) - 100,
		CoinbaseValue: 50_0000_0000, Created: now, MaxTime: uint32(now.Unix()) + 60}
	cfg := &Config{Extranonce2Size: 4, CoinbaseTag: "/t/"}
	b := newJobBook(cfg)
	cfg.Now = func() time.Time { return now }
	if _, err := b.update(tmpl); err != nil {
		t.Fatal(err)
	}
	ep := b.current()
	cb, err := ep.coinbase([]byte{0x51}, 0)
	if err != nil {
		t.Fatal(err)
	}
	shareTgt, _ := chainmath.TargetForDifficulty(1e-9)
	j := &job{id: "1", ep: ep, cb: cb, diff: 1e-9, tgt: shareTgt}
	facts := func() shareFacts {
		return shareFacts{subscribed: true, authorized: true, payTo: []byte{0x51}, en1: [4]byte{1, 2, 3, 4}, en2Size: 4, mask: 0x1fffe000, now: now, ntimeFuture: 7000 * time.Second}
	}
	valid := func() stratum.Submit {
		return stratum.Submit{Worker: "w", JobID: "1", Extranonce2: "00000007", NTime: stratum.Hex32(tmpl.CurTime), Nonce: "00000000"}
	}
	// The reference header of the valid submission, built by hand.
	en1 := []byte{1, 2, 3, 4}
	en2, _ := hex.DecodeString("00000007")
	coinbase := append(append(append(append([]byte{}, cb.coinb1...), en1...), en2...), cb.coinb2...)
	ref := chainmath.Header{Version: 0x20000000, PrevBlock: tmpl.PrevHash, MerkleRoot: chainmath.DoubleSHA256(coinbase), Time: tmpl.CurTime, Bits: tmpl.Bits}
	refHash := ref.Hash()

	cases := []struct {
		name   string
		job    *job
		facts  func(*shareFacts)
		submit func(*stratum.Submit)
		reason string
		code   int
	}{
		{name: "valid", job: j},
		{name: "not subscribed", job: j, facts: func(f *shareFacts) { f.subscribed = false }, reason: ReasonNotSubscribed, code: stratum.CodeNotSubscribed},
		{name: "worker not authorized", job: j, facts: func(f *shareFacts) { f.authorized = false }, reason: ReasonUnauthorized, code: stratum.CodeUnauthorized},
		{name: "unknown job", job: nil, reason: ReasonJobNotFound, code: stratum.CodeJobNotFound},
		{name: "extranonce2 short", job: j, submit: func(s *stratum.Submit) { s.Extranonce2 = "000007" }, reason: ReasonExtranonce2, code: stratum.CodeOther},
		{name: "extranonce2 not hex", job: j, submit: func(s *stratum.Submit) { s.Extranonce2 = "0000000g" }, reason: ReasonExtranonce2, code: stratum.CodeOther},
		{name: "ntime not hex", job: j, submit: func(s *stratum.Submit) { s.NTime = "xyz" }, reason: ReasonNTime, code: stratum.CodeOther},
		{name: "ntime before the job", job: j, submit: func(s *stratum.Submit) { s.NTime = stratum.Hex32(tmpl.CurTime - 1) }, reason: ReasonNTime, code: stratum.CodeOther},
		{name: "ntime at the template limit", job: j, submit: func(s *stratum.Submit) { s.NTime = stratum.Hex32(tmpl.MaxTime) }},
		{name: "ntime past the template limit", job: j, submit: func(s *stratum.Submit) { s.NTime = stratum.Hex32(tmpl.MaxTime + 1) }, reason: ReasonNTime, code: stratum.CodeOther},
		{name: "ntime past the coordinator window", job: j, facts: func(f *shareFacts) { f.ntimeFuture = 10 * time.Second },
			submit: func(s *stratum.Submit) { s.NTime = stratum.Hex32(tmpl.CurTime + 11) }, reason: ReasonNTime, code: stratum.CodeOther},
		{name: "template limit moves with the clock", job: j, facts: func(f *shareFacts) { f.now = now.Add(30 * time.Second) },
			submit: func(s *stratum.Submit) { s.NTime = stratum.Hex32(tmpl.MaxTime + 30) }},
		{name: "nonce not hex", job: j, submit: func(s *stratum.Submit) { s.Nonce = "0x12" }, reason: ReasonMalformed, code: stratum.CodeOther},
		{name: "version bits outside the mask", job: j, submit: func(s *stratum.Submit) { s.VersionBits = "00001000" }, reason: ReasonVersion, code: stratum.CodeOther},
		{name: "version bits inside the mask", job: j, submit: func(s *stratum.Submit) { s.VersionBits = "00002000" }},
		{name: "another worker's job (its coinbase pays another address)", job: j, facts: func(f *shareFacts) { f.payTo = []byte{0x52} }, reason: ReasonWrongPayout, code: stratum.CodeOther},
		{name: "stale", job: j, facts: func(f *shareFacts) { f.stale = true }, reason: ReasonStale, code: stratum.CodeJobNotFound},
		{name: "low difficulty", job: hardJob(t, cfg, tmpl), reason: ReasonLowDifficulty, code: stratum.CodeLowDifficulty},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := facts()
			if tc.facts != nil {
				tc.facts(&f)
			}
			p := valid()
			if tc.submit != nil {
				tc.submit(&p)
			}
			v, _ := validateV1(tc.job, &f, &p)
			if tc.reason == "" {
				if v.err != nil {
					t.Fatalf("rejected: %v (%s)", v.err, v.reason)
				}
				return
			}
			if v.err == nil || v.reason != tc.reason || v.err.Code != tc.code {
				t.Fatalf("verdict %v reason %q, want %q with code %d", v.err, v.reason, tc.reason, tc.code)
			}
		})
	}
	// The valid share rebuilds exactly the reference header.
	f := facts()
	p := valid()
	v, _ := validateV1(j, &f, &p)
	if v.hash != refHash || v.raw != ref.Bytes() {
		t.Fatalf("header hash %s, want %s", v.hash, refHash)
	}
	// Regtest-easy bits: nearly every hash is a block, and a stale one
	// is still reported as a block.
	f.stale = true
	if v, _ := validateV1(j, &f, &p); !v.block || v.reason != ReasonStale || len(v.cb) != len(coinbase) {
		t.Fatalf("stale block share: block=%v reason=%q", v.block, v.reason)
	}
	// A block on another worker's job is still a block (it pays the
	// job's address).
	f = facts()
	f.payTo = []byte{0x52}
	if v, _ := validateV1(j, &f, &p); !v.block || v.reason != ReasonWrongPayout || len(v.cb) != len(coinbase) {
		t.Fatalf("block share on another worker's job: block=%v reason=%q", v.block, v.reason)
	}
	// Version rolling lands in the header.
	f = facts()
	p.VersionBits = "00006000"
	v, _ = validateV1(j, &f, &p)
	if v.version != 0x20006000 || binary.LittleEndian.Uint32(v.raw[:4]) != 0x20006000 {
		t.Fatalf("rolled version %08x", v.version)
	}
	if !strings.Contains(rejectf(1, "r", "x %d", 5).err.Message, "x 5") {
		t.Fatal("rejectf")
	}
}

// hardJob is a job on tmpl with mainnet-hard bits and a share difficulty
// no test share meets.
func hardJob(t *testing.T, cfg *Config, tmpl *work.Template) *job {
	hard := *tmpl
	hard.Bits = 0x1d00ffff
	b := newJobBook(cfg)
	if _, err := b.update(&hard); err != nil {
		t.Fatal(err)
	}
	cb, err := b.current().coinbase([]byte{0x51}, 0)
	if err != nil {
		t.Fatal(err)
	}
	return &job{id: "1", ep: b.current(), cb: cb, diff: 1e6, tgt: mustTarget(t, 1e6)}
}

func mustTarget(t *testing.T, d float64) chainmath.Target {
	tg, err := chainmath.TargetForDifficulty(d)
	if err != nil {
		t.Fatal(err)
	}
	return tg
}

// TestVardiffTable drives the vardiff type alone with a hand-moved clock.
func TestVardiffTable(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	cases := []struct {
		name    string
		shares  int           // shares counted, evenly over the window
		elapsed time.Duration // since the window started
		want    float64       // difficulty after, starting from 1
	}{
		{"on target", 20, time.Minute, 1},
		{"within the dead band", 24, time.Minute, 1},
		{"twice too fast", 40, time.Minute, 2},
		{"far too fast: capped at 4x", 400, time.Minute, 4},
		{"half the rate", 10, time.Minute, 0.5},
		{"silent: capped at a quarter", 0, time.Minute, 0.25},
		{"too early to judge", 10, 20 * time.Second, 1},
		{"fast early exit after an eighth", 81, 8 * time.Second, 4},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := vardiff{perMinute: 20, interval: time.Minute, min: 0.01, max: 1000, start: t0, shares: tc.shares}
			got, changed := v.retarget(t0.Add(tc.elapsed), 1, false)
			if got != tc.want || changed != (tc.want != 1) {
				t.Fatalf("difficulty %v (changed %v), want %v", got, changed, tc.want)
			}
		})
	}
	off := vardiff{perMinute: -1}
	if d, ch := off.retarget(t0, 3, true); d != 3 || ch {
		t.Fatal("vardiff off moved the difficulty")
	}
	clamp := vardiff{perMinute: 20, interval: time.Minute, min: 0.5, max: 1}
	clamp.retarget(t0, 1, false)
	if d, _ := clamp.retarget(t0.Add(time.Minute), 1, false); d != 0.5 {
		t.Fatalf("clamped to %v, want the minimum 0.5", d)
	}
}

// validateV1 parses a V1 submission and validates it, as handleSubmit does.
func validateV1(j *job, f *shareFacts, p *stratum.Submit) (verdict, []byte) {
	var sub submission
	var buf [16]byte
	parseSubmit(p, f.en2Size, &sub, &buf)
	return validateShare(j, f, &sub, nil)
}
