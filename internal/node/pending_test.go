package node_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/btcsuite/btcd/address/v2"
	"github.com/btcsuite/btcd/chaincfg/v2"
	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/coordinator"
	"github.com/powcoord/powcoord/internal/node"
	"github.com/powcoord/powcoord/internal/node/nodetest"
	"github.com/powcoord/powcoord/internal/store"
	"github.com/powcoord/powcoord/internal/stratum"
)

// TestCoordinatorBlockPendingAcrossNodeRestart is issue 9's defect 3 end
// to end: a miner finds a block through the coordinator while the only
// btcd is down. The coordinator records it, tells the miner true, keeps
// it pending and retries; once btcd is back (simnet keeps its chain over
// a clean stop) the block is submitted and becomes btcd's tip.
func TestCoordinatorBlockPendingAcrossNodeRestart(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	b := nodetest.StartBtcd(t, "simnet")
	key := newKey(t, 11)
	a, err := address.NewAddressWitnessPubKeyHash(address.Hash160(key.priv.PubKey().SerializeCompressed()), &chaincfg.SimNetParams)
	if err != nil {
		t.Fatal(err)
	}
	user := a.EncodeAddress() // a simnet address: the payout of the block
	src := newSource(t, ctx, b, "", func(c *node.Config) { c.PollInterval = 50 * time.Millisecond })
	st, err := store.Open(filepath.Join(t.TempDir(), "pool.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	coord, err := coordinator.New(coordinator.Config{
		Source: src, Store: st, ShareDifficulty: 1e-9, SharesPerMinute: -1, Logger: testLogger(t),
		BlockRetryMin: 20 * time.Millisecond, BlockRetryMax: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- coord.Run(ctx, ln) }()
	defer func() { cancel(); <-done }()

	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(conn)
	fmt.Fprintf(conn, "{\"id\":1,\"method\":\"mining.subscribe\",\"params\":[]}\n{\"id\":2,\"method\":\"mining.authorize\",\"params\":[%q,\"x\"]}\n", user)
	var en1 []byte
	var en2Size int
	var job *stratum.Job
	for job == nil {
		line, err := r.ReadBytes('\n')
		if err != nil {
			t.Fatal(err)
		}
		m, err := stratum.Parse(line)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case string(m.ID) == "1":
			var res []json.RawMessage
			json.Unmarshal(m.Result, &res)
			var h string
			json.Unmarshal(res[1], &h)
			json.Unmarshal(res[2], &en2Size)
			en1, _ = hex.DecodeString(h)
		case m.Method == "mining.notify":
			if job, err = stratum.ParseJob(m.Params); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Solve a block on the job (simnet: about every other hash is one).
	tgt, err := job.BlockTarget()
	if err != nil {
		t.Fatal(err)
	}
	en2 := make([]byte, en2Size)
	binary.BigEndian.PutUint32(en2, 1)
	var nonce uint32
	var hash chainmath.Hash
	for nonce = 0; ; nonce++ {
		h := job.Header(en1, en2, job.NTime, nonce, 0, 0)
		hash = h.Hash()
		if tgt.Meets(&hash) {
			break
		}
	}
	height := src.Current().Height

	b.Stop()
	fmt.Fprintf(conn, "{\"id\":3,\"method\":\"mining.submit\",\"params\":[%q,%q,%q,%q,%q]}\n",
		user, job.ID, hex.EncodeToString(en2), stratum.Hex32(job.NTime), stratum.Hex32(nonce))
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			t.Fatal(err)
		}
		m, _ := stratum.Parse(line)
		if string(m.ID) == "3" {
			if string(m.Result) != "true" {
				t.Fatalf("block share while the node is down: %s %s, want true (the share is valid)", m.Result, m.Error)
			}
			break
		}
	}
	fb, ok, err := st.FoundBlock(ctx, hash)
	if err != nil || !ok || fb.State != store.FoundPending || fb.Height != height {
		t.Fatalf("found block while btcd is down: %+v ok=%v err=%v, want pending at height %d", fb, ok, err, height)
	}
	if coord.PendingBlocks() != 1 {
		t.Fatalf("pending blocks %d, want 1", coord.PendingBlocks())
	}

	b.Start()
	waitFor(t, 30*time.Second, "btcd's tip to be the pending block", func() bool {
		best, err := b.BestBlockHash(ctx)
		return err == nil && best == hash.String()
	})
	waitFor(t, 10*time.Second, "the found block to be settled accepted", func() bool {
		fb, ok, err := st.FoundBlock(ctx, hash)
		return err == nil && ok && fb.State == store.FoundAccepted
	})
	fb, _, _ = st.FoundBlock(ctx, hash)
	if fb.Attempts < 2 || coord.PendingBlocks() != 0 {
		t.Fatalf("found block accepted after %d attempts with %d still pending; want at least 2 attempts, none pending", fb.Attempts, coord.PendingBlocks())
	}
	blocks, err := st.Blocks(ctx, 0, 0)
	if err != nil || len(blocks) != 1 || blocks[0].Hash != hash {
		t.Fatalf("blocks list %d (%v), want the accepted block", len(blocks), err)
	}
	t.Logf("block %s at height %d accepted by the restarted btcd after %d attempts", hash, height, fb.Attempts)
}
