package web_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/coordinator"
	"github.com/powcoord/powcoord/internal/simchain"
	"github.com/powcoord/powcoord/internal/store"
	"github.com/powcoord/powcoord/internal/stratum"
	"github.com/powcoord/powcoord/internal/web"
)

func startPPLNSPool(t *testing.T) *pool {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	st, err := store.Open(filepath.Join(t.TempDir(), "powcoord.db"))
	if err != nil {
		t.Fatal(err)
	}
	chain, err := simchain.Open(ctx, simchain.Config{Store: st, BlockTime: 2 * time.Second, StartDifficulty: 1e-5, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	coord, err := coordinator.New(coordinator.Config{
		Source: chain, Store: st, ShareDifficulty: 1e-6, SharesPerMinute: -1,
		Payout: coordinator.PayoutPPLNS, Logger: quietLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() { defer close(served); coord.Serve(ctx, ln) }()
	ws := web.New(coord, st, quietLogger())
	hs := httptest.NewServer(ws)
	t.Cleanup(func() {
		cancel()
		hs.Close()
		<-served
		st.Close()
	})
	return &pool{coord: coord, store: st, web: ws, http: hs, stratum: ln.Addr().String()}
}

func getMiner(t *testing.T, p *pool, addr string) (coordinator.MinerReport, int) {
	t.Helper()
	resp, err := http.Get(p.http.URL + "/api/miners/" + addr)
	mustf(t, err, "GET /api/miners/%s", addr)
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var rep coordinator.MinerReport
	if resp.StatusCode == http.StatusOK {
		mustf(t, json.Unmarshal(body, &rep), "decoding %s", body)
	}
	return rep, resp.StatusCode
}

// TestMinerAPI: two payout addresses' shares under PPLNS; the account of
// each shows its window work, what the next block pays it to the
// satoshi, and, after a block, its payout.
func TestMinerAPI(t *testing.T) {
	p := startPPLNSPool(t)
	alice := dialMiner(t, p.stratum, "alice.rig1")
	bob := dialMiner(t, p.stratum, "bob")
	// A share that is not also a block (one in ten would be).
	notBlock := func(m *rawMiner, v byte) share {
		t.Helper()
		nbits, _ := stratum.ParseHex32("nbits", m.job.NBits)
		bt, _ := chainmath.CompactToBig(nbits)
		blockTgt := chainmath.TargetFromBig(bt)
		for n := uint32(0); ; {
			sh := m.find(en2(m, v), n, true)
			h := m.header(sh.en2, sh.nonce)
			if hash := h.Hash(); !blockTgt.Meets(&hash) {
				return sh
			}
			n = sh.nonce + 1
		}
	}
	submit := func(m *rawMiner, user string, v byte) {
		t.Helper()
		sh := notBlock(m, v)
		if res, e := m.callErr("mining.submit", m.params(user, sh)); e != nil || string(res) != "true" {
			t.Fatalf("share of %s: %s %v", user, res, e)
		}
	}
	for i := range 3 {
		submit(alice, "alice.rig1", byte(i+1))
	}
	submit(bob, "bob", 1)

	rep, code := getMiner(t, p, "alice")
	if code != http.StatusOK {
		t.Fatalf("GET /api/miners/alice: status %d", code)
	}
	if rep.Mode != "pplns" || rep.WindowHeight != 1 || rep.NextValue != 50e8 || rep.NextAmount != 3_750_000_000 || rep.NextFraction != 0.75 ||
		rep.WindowShare != 0.75 || len(rep.Payouts) != 0 || rep.PaidTotal != 0 {
		t.Fatalf("alice before a block: %+v", rep)
	}
	if d := rep.WindowWork - 3e-6; d > 1e-15 || d < -1e-15 {
		t.Errorf("alice's window work %v, want 3e-6", rep.WindowWork)
	}
	if rep, _ := getMiner(t, p, "bob"); rep.NextAmount != 1_250_000_000 {
		t.Errorf("bob before a block: next amount %d, want 1250000000", rep.NextAmount)
	}

	// Alice finds block 1. Its job was built before any share: a solo
	// block paying her in full.
	nbits, _ := stratum.ParseHex32("nbits", alice.job.NBits)
	bt, _ := chainmath.CompactToBig(nbits)
	tgt := chainmath.TargetFromBig(bt)
	var sh share
	for n := uint32(0); ; n++ {
		if n == 1<<26 {
			t.Fatal("no block in 2^26 nonces")
		}
		h := alice.header(en2(alice, 9), n)
		hash := h.Hash()
		if tgt.Meets(&hash) {
			sh = share{en2: en2(alice, 9), nonce: n}
			break
		}
	}
	if _, e := alice.callErr("mining.submit", alice.params("alice.rig1", sh)); e != nil {
		t.Fatalf("block share: %v", e)
	}
	rep, _ = getMiner(t, p, "alice")
	if len(rep.Payouts) != 1 || rep.Payouts[0].Height != 1 || rep.Payouts[0].Amount != 50e8 || rep.Payouts[0].State != store.FoundAccepted || rep.PaidTotal != 50e8 {
		t.Fatalf("alice's payouts after block 1: %+v", rep.Payouts)
	}
	// Block 2's window: alice 4 shares (the block's among them), bob 1.
	if rep.WindowHeight != 2 || rep.NextAmount != 4_000_000_000 {
		t.Errorf("alice for block 2: height %d next amount %d, want 2 and 4000000000", rep.WindowHeight, rep.NextAmount)
	}
	if rep, _ := getMiner(t, p, "bob"); rep.NextAmount != 1_000_000_000 || len(rep.Payouts) != 0 {
		t.Errorf("bob for block 2: %+v", rep)
	}
	resp, err := http.Get(p.http.URL + "/api/miners")
	mustf(t, err, "GET /api/miners")
	var list []coordinator.MinerReport
	mustf(t, json.NewDecoder(resp.Body).Decode(&list), "decoding /api/miners")
	resp.Body.Close()
	if len(list) != 2 || list[0].Address != "alice" || list[1].Address != "bob" || list[0].NextAmount+list[1].NextAmount != 50e8 ||
		list[0].PaidTotal != 50e8 || list[1].PaidTotal != 0 {
		t.Errorf("/api/miners: %+v", list)
	}
	if _, code := getMiner(t, p, "alice.rig1"); code != http.StatusBadRequest {
		t.Errorf("GET /api/miners/alice.rig1: status %d, want 400", code)
	}
}
