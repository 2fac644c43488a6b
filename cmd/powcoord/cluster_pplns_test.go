package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/wire/v2"
	"github.com/jackc/pgx/v5"
	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/cluster/bus"
	"github.com/powcoord/powcoord/internal/cluster/chainstore"
	"github.com/powcoord/powcoord/internal/cluster/jobs"
	"github.com/powcoord/powcoord/internal/clustertest"
	"github.com/powcoord/powcoord/internal/ledger"
	"github.com/powcoord/powcoord/internal/ledger/pgledger"
	"github.com/powcoord/powcoord/internal/payout"
	"github.com/powcoord/powcoord/internal/payout/payouttest"
	"github.com/powcoord/powcoord/internal/simchain"
	"github.com/powcoord/powcoord/internal/stratum"
)

// TestClusterPPLNS runs a cluster coordinator with --payout pplns on a
// real NATS server and a real PostgreSQL ledger, a ledger writer, a
// front-end and two agents mining to two regtest addresses: every found
// block's coinbase (read from the CHAIN stream) pays exactly the outputs
// recorded for it in PostgreSQL, and those are what an independent
// recomputation (payouttest) from the PostgreSQL shares up to the
// recorded cutoff id gives, to the satoshi, the fee output included; and
// `powcoord payouts verify` recomputes the same outputs from each PPLNS
// block's window download (the coordinator's GET
// /api/blocks/{hash}/shares), and names the output a tampered download
// gets wrong.
func TestClusterPPLNS(t *testing.T) {
	c := clustertest.StartNATSCluster(t, 1)
	pg := clustertest.StartPostgres(t)
	dbURL := pg.CreateDatabase(t)
	urls := strings.Join(c.URLs(), ",")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	data := t.TempDir() // before commands: removed after the front-end stopped
	start := commands(t, ctx)

	// Refused without the shared ledger.
	err := run(ctx, []string{"coordinator", "--cluster", urls, "--payout", "pplns"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--payout pplns with --cluster needs --postgres URL") {
		t.Fatalf("--payout pplns --cluster without --postgres: %v", err)
	}
	err = run(ctx, []string{"coordinator", "--postgres", dbURL}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--postgres is only used with --cluster: a single coordinator's ledger is its SQLite file") {
		t.Fatalf("--postgres without --cluster: %v", err)
	}

	start(io.Discard, "ledger", "--cluster", urls, "--replicas", "1", "--postgres", dbURL)
	coordHTTP := freeAddr(t)
	start(io.Discard, "coordinator", "--cluster", urls, "--replicas", "1", "--http", coordHTTP, "--postgres", dbURL,
		"--payout", "pplns", "--pplns-window", "2", "--pool-fee", "1%", "--pool-address", "pool",
		"--block-difficulty", "5e-3", "--block-time", "2s")
	out := &lockedBuffer{}
	start(out, "frontend", "--cluster", urls, "--replicas", "1", "--id", "feP", "--stratum", "127.0.0.1:0",
		"--http", "", "--data", filepath.Join(data, "feP"), "--share-difficulty", "2e-5", "--shares-per-minute", "0", "--wait", "60s")
	re := regexp.MustCompile(`frontend feP: Stratum on (\S+),`)
	var addr string
	for addr == "" {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			addr = m[1]
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("front-end did not start; output:\n%s", out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	users := []string{"bcrt1qzyfpx9q4zct3sxg6rvwp68slyqsjygeyuwdjcu", "bcrt1qyg3jgffxyu5zj23t9skjutesxyerxdp4fhury6"}
	for i, u := range users {
		start(io.Discard, "agent", "--url", "stratum+tcp://"+addr, "--user", fmt.Sprintf("%s.rig%d", u, i), "--threads", "1", "--stats-interval", "1h")
	}

	led, err := pgledger.Open(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer led.Close()
	nc, err := bus.Connect(ctx, c.URLs(), "test-reader")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := bus.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	// Wait for two PPLNS blocks in the chain paying both addresses.
	var recs []ledger.PayoutRecord
	for {
		recs = recs[:0]
		hashes, err := led.PayoutBlocks(ctx)
		if err != nil {
			t.Fatal(err)
		}
		inChain := map[string]bool{}
		blocks, err := chainstore.Reader(js).Blocks(ctx, 0, 100000)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range blocks {
			inChain[b.Hash.String()] = true
		}
		both := 0
		for _, h := range hashes {
			rec, ok, err := led.BlockPayouts(ctx, h)
			if err != nil || !ok {
				t.Fatalf("payouts of %s: %v %v", h, ok, err)
			}
			recs = append(recs, rec)
			if rec.Mode == "pplns" && len(rec.Outputs) == 3 && inChain[h.String()] {
				both++
			}
		}
		if both >= 2 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("fewer than 2 PPLNS blocks in the chain paying both addresses: %d records: %+v", len(recs), recs)
		case <-time.After(100 * time.Millisecond):
		}
	}

	// The chain's blocks, from the CHAIN stream.
	// A payout is recorded once its block is submitted, but the records
	// were read before CHAIN; a block that lost its height to another
	// (both agents found one on the same tip) is recorded but not in it.
	byHash := map[string]ledger.Block{}
	byHeight := map[int64]bool{}
	for {
		blocks, err := chainstore.Reader(js).Blocks(ctx, 0, 100000)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range blocks {
			byHash[b.Hash.String()] = b
			byHeight[b.Height] = true
		}
		all := true
		for _, rec := range recs {
			all = all && byHeight[rec.Height]
		}
		if all {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("CHAIN never held a block at every recorded height")
		case <-time.After(50 * time.Millisecond):
		}
	}

	// Every share in PostgreSQL, by id.
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, `SELECT id, worker, difficulty FROM shares ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	var shares []ledger.Share
	for rows.Next() {
		var id int64
		var sh ledger.Share
		if err := rows.Scan(&id, &sh.Worker, &sh.Difficulty); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
		shares = append(shares, sh)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}

	rules := payouttest.Rules{Window: 2, FeeBP: 100, Dust: 546, MaxOutputs: 39,
		ScriptOf: func(w string) []byte {
			l, _, _ := strings.Cut(w, ".")
			s, err := simchain.PayoutScript(l)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}}
	rules.FeeScript, _ = simchain.PayoutScript("pool")
	pplns, stale, verified := 0, 0, 0
	for _, rec := range recs {
		b, ok := byHash[rec.Hash.String()]
		if !ok {
			stale++ // another block holds its height (waited for above)
			continue
		}
		var blk wire.MsgBlock
		if err := blk.Deserialize(bytes.NewReader(b.Raw)); err != nil {
			t.Fatal(err)
		}
		var got []payouttest.Out
		for _, o := range blk.Transactions[0].TxOut {
			if o.Value > 0 {
				got = append(got, payouttest.Out{Script: o.PkScript, Value: o.Value})
			}
		}
		var recorded []payouttest.Out
		var sum int64
		for _, o := range rec.Outputs {
			recorded = append(recorded, payouttest.Out{Script: o.Script, Value: o.Amount})
			sum += o.Amount
		}
		if fmt.Sprint(got) != fmt.Sprint(recorded) || sum != rec.Value || rec.Height != b.Height {
			t.Fatalf("block %d: coinbase pays\n%v\nrecorded (height %d, value %d, sum %d)\n%v", b.Height, got, rec.Height, rec.Value, sum, recorded)
		}
		if rec.Mode != "pplns" {
			if len(got) != 1 || rec.Cutoff != 0 {
				t.Fatalf("block %d: %s record, cutoff %d, %d outputs", b.Height, rec.Mode, rec.Cutoff, len(got))
			}
			continue
		}
		if len(got) == 3 {
			pplns++
		}
		n := 0 // shares with id up to the cutoff
		for n < len(ids) && ids[n] <= rec.Cutoff {
			n++
		}
		if n == 0 || ids[n-1] != rec.Cutoff {
			t.Fatalf("block %d: cutoff %d is no share id", b.Height, rec.Cutoff)
		}
		want, err := payouttest.Recompute(shares, int64(n), blk.Header.Bits, rec.Value, rules)
		if err != nil {
			t.Fatalf("block %d: %v", b.Height, err)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("block %d (cutoff id %d, %d of %d shares): coinbase pays\n%v\nthe ledger says\n%v", b.Height, rec.Cutoff, n, len(shares), got, want)
		}
		if len(got) == 3 && !bytes.Equal(got[2].Script, rules.FeeScript) {
			t.Fatalf("block %d: last output %x, want the fee to %x", b.Height, got[2].Script, rules.FeeScript)
		}
		verifyDownload(t, ctx, "http://"+coordHTTP, b.Hash.String(), got)
		verified++
	}
	if pplns < 2 {
		t.Fatalf("%d PPLNS blocks paying both addresses in the chain, want at least 2 (%d records, %d stale)", pplns, len(recs), stale)
	}
	t.Logf("%d blocks recorded (%d stale), %d in the chain paying both addresses and the fee, checked against %d PostgreSQL shares; payouts verify agreed with all %d PPLNS blocks in the chain", len(recs), stale, pplns, len(shares), verified)
}

// verifyDownload fetches the window download of the block hash from the
// coordinator API at base, runs `powcoord payouts verify` on it and
// checks that it recomputes exactly want (the block's coinbase outputs);
// then that a copy with the newest share's difficulty doubled fails
// verify naming what differs (an output's amount, or the shares the
// window no longer holds), and so does a copy without its newest share.
func verifyDownload(t *testing.T, ctx context.Context, base, hash string, want []payouttest.Out) {
	t.Helper()
	resp, err := http.Get(base + "/api/blocks/" + hash + "/shares")
	if err != nil {
		t.Fatal(err)
	}
	download, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/blocks/%s/shares: %d %q %v", hash, resp.StatusCode, download, err)
	}
	file := filepath.Join(t.TempDir(), hash+".jsonl")
	if err := os.WriteFile(file, download, 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout bytes.Buffer
	if err := run(ctx, []string{"payouts", "verify", file}, &stdout, io.Discard); err != nil {
		t.Fatalf("payouts verify of block %s: %v", hash, err)
	}
	var lines []string
	for _, o := range want {
		lines = append(lines, fmt.Sprintf("%d sat to %x", o.Value, o.Script))
	}
	for _, l := range lines {
		if !strings.Contains(stdout.String(), l) {
			t.Fatalf("payouts verify of block %s printed\n%s\nwithout the coinbase's output %q", hash, stdout.String(), l)
		}
	}
	if !strings.Contains(stdout.String(), fmt.Sprintf("%d outputs recomputed", len(want))) {
		t.Fatalf("payouts verify of block %s: %s; want %d outputs", hash, stdout.String(), len(want))
	}
	// Tampered: the newest share's difficulty doubled.
	rows := strings.SplitN(string(download), "\n", 3)
	var sh payout.WindowShare
	if err := json.Unmarshal([]byte(rows[1]), &sh); err != nil {
		t.Fatal(err)
	}
	sh.Difficulty *= 2
	b, _ := json.Marshal(sh)
	rows[1] = string(b)
	if err := os.WriteFile(file, []byte(strings.Join(rows, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	err = run(ctx, []string{"payouts", "verify", file}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "does not pay what its window gives") ||
		!strings.Contains(err.Error(), "the window's shares give") && !strings.Contains(err.Error(), "listed after the window was already full") {
		t.Fatalf("payouts verify of a download of block %s with a difficulty doubled: %v", hash, err)
	}
	// Tampered: the newest share removed.
	rows = strings.SplitN(string(download), "\n", 3)
	if err := os.WriteFile(file, []byte(rows[0]+"\n"+rows[2]), 0o644); err != nil {
		t.Fatal(err)
	}
	err = run(ctx, []string{"payouts", "verify", file}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "the end line counts") {
		t.Fatalf("payouts verify of a download of block %s without its newest share: %v", hash, err)
	}
}

// TestClusterPPLNSSubmitsBlockWhilePostgresDown (issue 20, defect 8): a
// block found while the PPLNS cluster's PostgreSQL is down reaches the
// chain, and its payout record follows once PostgreSQL is back, exactly
// once and equal to the block's coinbase to the satoshi. The leader used
// to record the payout before it submitted the block and not submit
// while that write failed, so every block found in an outage was
// withheld. The test mines itself over Stratum: shares that fill the
// PPLNS window, a block that makes the next job a PPLNS one, then, with
// PostgreSQL stopped (pg_ctl stop), a block on that job.
func TestClusterPPLNSSubmitsBlockWhilePostgresDown(t *testing.T) {
	c := clustertest.StartNATSCluster(t, 1)
	pg := clustertest.StartPostgres(t)
	dbURL := pg.CreateDatabase(t)
	urls := strings.Join(c.URLs(), ",")
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	data := t.TempDir() // before commands: removed after the front-end stopped
	start := commands(t, ctx)
	start(io.Discard, "ledger", "--cluster", urls, "--replicas", "1", "--postgres", dbURL)
	start(io.Discard, "coordinator", "--cluster", urls, "--replicas", "1", "--http", "", "--postgres", dbURL,
		"--payout", "pplns", "--pplns-window", "2", "--pool-fee", "1%", "--pool-address", "pool",
		"--block-difficulty", "1e-6", "--block-time", "1h")
	out := &lockedBuffer{}
	start(out, "frontend", "--cluster", urls, "--replicas", "1", "--id", "feD", "--stratum", "127.0.0.1:0",
		"--http", "", "--data", filepath.Join(data, "feD"), "--share-difficulty", "1e-7", "--shares-per-minute", "0", "--wait", "60s")
	re := regexp.MustCompile(`frontend feD: Stratum on (\S+),`)
	var addr string
	for addr == "" {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			addr = m[1]
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("front-end did not start; output:\n%s", out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	nc, err := bus.Connect(ctx, c.URLs(), "test-reader")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := bus.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	db, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}

	// A Stratum miner: the newest job from the notifies, and submits.
	conn, r, en1Hex, err := stratumSubscribe(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	en1, _ := hex.DecodeString(en1Hex)
	var job *stratum.Job
	read := func(wantID int) bool { // reads up to the answer to wantID (0: the next notify)
		t.Helper()
		conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		for {
			line, err := r.ReadBytes('\n')
			if err != nil {
				t.Fatalf("reading from the front-end: %v; output:\n%s", err, out.String())
			}
			var m struct {
				ID     *int            `json:"id"`
				Method string          `json:"method"`
				Params json.RawMessage `json:"params"`
				Result json.RawMessage `json:"result"`
			}
			if err := json.Unmarshal(line, &m); err != nil {
				t.Fatalf("line %q: %v", line, err)
			}
			if m.Method == "mining.notify" {
				if job, err = stratum.ParseJob(m.Params); err != nil {
					t.Fatal(err)
				}
				if wantID == 0 {
					return true
				}
			}
			if m.ID != nil && *m.ID == wantID {
				return string(m.Result) == "true"
			}
		}
	}
	fmt.Fprintf(conn, `{"id":2,"method":"mining.authorize","params":["alice.rig","x"]}`+"\n")
	if !read(2) {
		t.Fatal("mining.authorize of alice.rig refused")
	}
	for job == nil {
		read(0)
	}
	shareTarget, err := chainmath.DifficultyToTarget(1e-7)
	if err != nil {
		t.Fatal(err)
	}
	id, en2n := 10, uint32(0)
	// submit finds a share on the newest job (a block when block is
	// set, a share that is not one otherwise), sends it, and returns the
	// header's hash once the front-end has answered true.
	submit := func(block bool) chainmath.Hash {
		t.Helper()
		target, err := job.BlockTarget()
		if err != nil {
			t.Fatal(err)
		}
		en2n++
		en2 := binary.BigEndian.AppendUint32(nil, en2n)
		for nonce := uint32(0); ; nonce++ {
			h := job.Header(en1, en2, job.NTime, nonce, 0, 0)
			hash := h.Hash()
			isBlock := target.Meets(&hash)
			if isBlock != block || chainmath.HashToBig(hash).Cmp(shareTarget) > 0 {
				continue
			}
			id++
			fmt.Fprintf(conn, `{"id":%d,"method":"mining.submit","params":["alice.rig","%s","%x","%08x","%08x"]}`+"\n",
				id, job.ID, en2, job.NTime, nonce)
			if !read(id) {
				t.Fatalf("share %s (block: %v) answered false", hash, block)
			}
			return hash
		}
	}
	waitFor := func(what string, d time.Duration, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(d)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within %v; output:\n%s", what, d, out.String())
			}
			select {
			case <-ctx.Done():
				t.Fatalf("%s: %v", what, ctx.Err())
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	inChain := func(hash chainmath.Hash) *ledger.Block {
		blocks, err := chainstore.Reader(js).Blocks(ctx, 0, 100000)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range blocks {
			if b.Hash == hash {
				return &b
			}
		}
		return nil
	}

	// Shares in the ledger, then a block: the next job splits the window.
	for range 3 {
		submit(false)
	}
	waitFor("3 shares in PostgreSQL", 30*time.Second, func() bool {
		var n int64
		return db.QueryRow(ctx, `SELECT count(*) FROM shares`).Scan(&n) == nil && n >= 3
	})
	first := submit(true)
	for job.PrevHash != first { // a notify on the new tip
		read(0)
	}
	last, err := jobs.Last(ctx, js)
	if err != nil || last.PPLNS == nil || last.Template.PrevHash != first {
		t.Fatalf("job in force after the first block: %+v %v; want a PPLNS job on %s", last, err, first)
	}

	// PostgreSQL goes down; a block found now must reach the chain.
	db.Close(ctx)
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	second := submit(true)
	var got *ledger.Block
	waitFor("the block found while PostgreSQL is down in the chain", 30*time.Second, func() bool {
		got = inChain(second)
		return got != nil
	})
	t.Logf("block %s found with PostgreSQL down is in the chain at height %d, %v after the stop", second, got.Height, time.Since(stopped).Round(time.Millisecond))

	// PostgreSQL is back: the record follows, once, as the coinbase pays.
	if err := pg.Restart(); err != nil {
		t.Fatal(err)
	}
	db, err = pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(context.Background())
	waitFor("the payout record of the block found while PostgreSQL was down", 30*time.Second, func() bool {
		var n int64
		return db.QueryRow(ctx, `SELECT count(*) FROM payout_blocks WHERE hash = $1`, second[:]).Scan(&n) == nil && n > 0
	})
	var n int64
	var mode string
	var height, value int64
	if err := db.QueryRow(ctx, `SELECT count(*), min(mode), min(height), min(value) FROM payout_blocks WHERE hash = $1`, second[:]).Scan(&n, &mode, &height, &value); err != nil {
		t.Fatal(err)
	}
	var blk wire.MsgBlock
	if err := blk.Deserialize(bytes.NewReader(got.Raw)); err != nil {
		t.Fatal(err)
	}
	var paying []*wire.TxOut
	var sum int64
	for _, o := range blk.Transactions[0].TxOut {
		if o.Value > 0 {
			paying = append(paying, o)
			sum += o.Value
		}
	}
	if n != 1 || mode != "pplns" || height != got.Height || value != sum {
		t.Fatalf("payout_blocks of %s: %d rows, mode %q, height %d, value %d; want 1 row, pplns, height %d, value %d (the coinbase's)", second, n, mode, height, value, got.Height, sum)
	}
	rows, err := db.Query(ctx, `SELECT script, amount FROM payouts WHERE hash = $1 ORDER BY idx`, second[:])
	if err != nil {
		t.Fatal(err)
	}
	var recorded [][2]string
	for rows.Next() {
		var script []byte
		var amount int64
		if err := rows.Scan(&script, &amount); err != nil {
			t.Fatal(err)
		}
		recorded = append(recorded, [2]string{hex.EncodeToString(script), strconv.FormatInt(amount, 10)})
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	var want [][2]string
	for _, o := range paying {
		want = append(want, [2]string{hex.EncodeToString(o.PkScript), strconv.FormatInt(o.Value, 10)})
	}
	if len(want) != 2 || fmt.Sprint(recorded) != fmt.Sprint(want) {
		t.Fatalf("payouts of %s: %v; want the coinbase's 2 paying outputs (alice and the pool fee) %v", second, recorded, want)
	}
	t.Logf("payout of %s recorded once after PostgreSQL came back: %v", second, recorded)
}
