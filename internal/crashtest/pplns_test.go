package crashtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/wire/v2"
	"github.com/powcoord/powcoord/internal/agent"
	"github.com/powcoord/powcoord/internal/payout/payouttest"
	"github.com/powcoord/powcoord/internal/simchain"
	"github.com/powcoord/powcoord/internal/store"
)

// startPPLNS starts the coordinator binary in PPLNS mode with a 1% fee on
// the embedded chain, with its HTTP API on httpAddr.
func startPPLNS(t *testing.T, bin, addr, httpAddr, dir string) *coordProc {
	t.Helper()
	p := &coordProc{}
	p.cmd = exec.Command(bin, "coordinator", "--stratum", addr, "--http", httpAddr, "--data", dir,
		"--share-difficulty", "2e-5", "--block-difficulty", "1e-4", "--block-time", "1s",
		"--shares-per-minute", "0", "--log-level", "warn",
		"--payout", "pplns", "--pplns-window", "4", "--pool-fee", "1%", "--pool-address", "pool")
	p.cmd.Stderr = &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return p
		}
		if time.Now().After(deadline) {
			p.cmd.Process.Kill()
			p.cmd.Wait()
			t.Fatalf("coordinator did not listen on %s: %v\n%s", addr, err, p.stderr.String())
		}
		time.Sleep(10 * time.Millisecond) // polling with a deadline
	}
}

// height asks the coordinator's API for the height being mined.
func height(t *testing.T, httpAddr string) int64 {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + "/api/status")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var st struct {
		Height int64 `json:"height"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return -1
	}
	return st.Height
}

func waitHeight(t *testing.T, p *coordProc, httpAddr string, h int64) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for height(t, httpAddr) < h {
		if time.Now().After(deadline) {
			t.Fatalf("height %d not reached within 60 s\n%s", h, p.stderr.String())
		}
		time.Sleep(20 * time.Millisecond) // polling with a deadline
	}
}

// TestPPLNSWindowSurvivesSIGKILL: three miners under PPLNS, the
// coordinator SIGKILLed and restarted: every PPLNS block before and after
// pays what the ledger says (an independent recomputation from its
// shares), so the restarted process took the window from the ledger.
func TestPPLNSWindowSurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the powcoord binary")
	}
	bin := buildPowcoord(t)
	dir := t.TempDir()
	addr, httpAddr := freePort(t), freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := startPPLNS(t, bin, addr, httpAddr, dir)
	var wg sync.WaitGroup
	for _, u := range []string{"alice.rig1", "bob.rig1", "carol.rig2"} {
		ag, err := agent.New(agent.Config{URLs: []string{"stratum+tcp://" + addr}, User: u, Threads: 1,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { ag.Run(ctx) })
	}
	waitHeight(t, p, httpAddr, 6)
	p.kill(t)
	restarted := time.Now()
	p = startPPLNS(t, bin, addr, httpAddr, dir)
	// The Stratum port may take connections before the HTTP API
	// answers: read the height once it does (height says -1 until then,
	// and h+3 would be reached at once).
	h := height(t, httpAddr)
	for deadline := time.Now().Add(20 * time.Second); h < 0 && time.Now().Before(deadline); h = height(t, httpAddr) {
		time.Sleep(20 * time.Millisecond) // polling with a deadline
	}
	if h < 0 {
		t.Fatalf("the restarted coordinator's API did not answer\n%s", p.stderr.String())
	}
	waitHeight(t, p, httpAddr, h+3)
	p.kill(t)
	cancel()
	wg.Wait()

	st, err := store.Open(filepath.Join(dir, "powcoord.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	bg := context.Background()
	shares, err := st.Shares(bg, "")
	if err != nil {
		t.Fatal(err)
	}
	found, err := st.FoundBlocks(bg, store.FoundAccepted)
	if err != nil {
		t.Fatal(err)
	}
	rules := payouttest.Rules{Window: 4, FeeBP: 100, Dust: 546, MaxOutputs: 39,
		ScriptOf: func(w string) []byte {
			l, _, _ := strings.Cut(w, ".")
			s, err := simchain.PayoutScript(l)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}}
	rules.FeeScript, _ = simchain.PayoutScript("pool")
	pplns, after := 0, 0
	var firstAfter *store.PayoutRecord
	for _, fb := range found {
		var blk wire.MsgBlock
		if err := blk.Deserialize(bytes.NewReader(fb.Raw)); err != nil {
			t.Fatal(err)
		}
		rec, ok, err := st.BlockPayouts(bg, fb.Hash)
		if err != nil || !ok {
			t.Fatalf("block %d %s: no payout record (%v)", fb.Height, fb.Hash, err)
		}
		var got []payouttest.Out
		for _, o := range blk.Transactions[0].TxOut {
			if o.Value > 0 {
				got = append(got, payouttest.Out{Script: o.PkScript, Value: o.Value})
			}
		}
		if rec.Mode != "pplns" {
			if fb.FoundAt.After(restarted) {
				t.Fatalf("block %d after the restart is a %q block: the window was not found in the ledger", fb.Height, rec.Mode)
			}
			continue
		}
		pplns++
		want, err := payouttest.Recompute(shares, rec.Cutoff, blk.Header.Bits, rec.Value, rules)
		if err != nil {
			t.Fatalf("block %d: %v", fb.Height, err)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("block %d (cutoff %d of %d shares): coinbase pays\n%v\nthe ledger says\n%v", fb.Height, rec.Cutoff, len(shares), got, want)
		}
		if fb.FoundAt.After(restarted) {
			after++
			if firstAfter == nil || rec.Height < firstAfter.Height {
				r := rec
				firstAfter = &r
			}
		}
	}
	if pplns < 4 || after < 2 || firstAfter == nil {
		t.Fatalf("%d PPLNS blocks, %d after the restart: too few to judge", pplns, after)
	}
	// The first block after the restart: its window reached back into
	// shares made before the SIGKILL.
	before := 0
	for _, sh := range shares[:firstAfter.Cutoff] {
		if sh.Time.Before(restarted) {
			before++
		}
	}
	if before == 0 {
		t.Fatalf("the first block after the restart (height %d) had no share from before it in its ledger snapshot", firstAfter.Height)
	}
	t.Logf("%d PPLNS blocks re-computed from %d ledger shares; %d after the restart; the first (height %d) pays %d outputs from a snapshot of %d shares",
		pplns, len(shares), after, firstAfter.Height, len(firstAfter.Outputs), firstAfter.Cutoff)
}
