package pgledger

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/clustertest"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// share i is a deterministic share of worker w: its hash is sha256 of i.
func share(i int, w string) Share {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(i))
	return Share{
		Time:        t0.Add(time.Duration(i) * time.Millisecond),
		Worker:      w,
		Extranonce1: "0000abcd",
		JobID:       fmt.Sprintf("%x", i),
		Extranonce2: fmt.Sprintf("%08x", i),
		NTime:       0x65000000 + uint32(i),
		Nonce:       0xfffffff0 + uint32(i%16),
		Version:     0x20000000,
		Difficulty:  float64(1 + i%4),
		Achieved:    float64(1+i%4) * 1.5,
		Hash:        chainmath.Hash(sha256.Sum256(b[:])),
		Block:       i%97 == 0,
	}
}

func open(t *testing.T) (*Ledger, string) {
	t.Helper()
	pg := clustertest.StartPostgres(t)
	url := pg.CreateDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	return l, url
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}

func count(t *testing.T, l *Ledger) int64 {
	t.Helper()
	n, err := l.ShareCount(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestRecordRedeliveredBatchStoredOnce(t *testing.T) {
	l, _ := open(t)
	c := ctx(t)
	batch := make([]Share, 100)
	for i := range batch {
		batch[i] = share(i, []string{"alice.1", "bob.rig"}[i%2])
	}
	if n, err := l.Record(c, batch); err != nil || n != 100 {
		t.Fatalf("first Record = %d, %v; want 100, nil", n, err)
	}
	if n, err := l.Record(c, batch); err != nil || n != 0 {
		t.Fatalf("redelivered Record = %d, %v; want 0, nil", n, err)
	}
	// Half old, half new, and one new share twice in the batch.
	mixed := append([]Share{}, batch[50:]...)
	for i := 100; i < 150; i++ {
		mixed = append(mixed, share(i, "carol"))
	}
	mixed = append(mixed, share(120, "carol"))
	if n, err := l.Record(c, mixed); err != nil || n != 50 {
		t.Fatalf("mixed Record = %d, %v; want 50, nil", n, err)
	}
	if n := count(t, l); n != 150 {
		t.Fatalf("ShareCount = %d, want 150", n)
	}

	got, err := l.Shares(c, "alice.1", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 50 {
		t.Fatalf("Shares(alice.1) has %d shares, want 50", len(got))
	}
	for _, sh := range got {
		var i int
		fmt.Sscanf(sh.JobID, "%x", &i)
		want := share(i, "alice.1")
		sh.Time = sh.Time.UTC()
		if sh != want {
			t.Fatalf("stored share %d:\n got %+v\nwant %+v", i, sh, want)
		}
	}
	if all, err := l.Shares(c, "", 7); err != nil || len(all) != 7 {
		t.Fatalf("Shares(\"\", 7) = %d shares, %v; want 7", len(all), err)
	}

	// Work since share 100's time: carol's shares 100..149, difficulty 1+i%4.
	work, err := l.WorkSince(c, t0.Add(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	want := 0.0
	for i := 100; i < 150; i++ {
		want += float64(1 + i%4)
	}
	if len(work) != 1 || work["carol"] != want {
		t.Fatalf("WorkSince = %v, want map[carol:%v]", work, want)
	}
	work, err = l.WorkSince(c, t0)
	if err != nil {
		t.Fatal(err)
	}
	if len(work) != 3 || work["alice.1"] != 100 || work["bob.rig"] != 150 || work["carol"] != want {
		// alice has the even i < 100 (difficulty 1 or 3: 25 of each), bob the odd (2 or 4).
		t.Fatalf("WorkSince(t0) = %v, want alice.1:100 bob.rig:150 carol:%v", work, want)
	}
}

func TestRecordConcurrentWritersOverlapping(t *testing.T) {
	l, _ := open(t)
	const total, writers, batchSize = 2000, 4, 100
	all := make([]Share, total)
	for i := range all {
		all[i] = share(i, fmt.Sprintf("w%d", i%7))
	}
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		stored int
		errs   []error
	)
	for w := range writers {
		wg.Go(func() {
			// Every writer records every share, in a different batch order
			// (forwards, backwards, shifted), as redeliveries would.
			for b := range total / batchSize {
				k := b
				if w%2 == 1 {
					k = total/batchSize - 1 - b
				}
				k = (k + w*3) % (total / batchSize)
				n, err := l.Record(context.Background(), all[k*batchSize:(k+1)*batchSize])
				mu.Lock()
				stored += n
				if err != nil {
					errs = append(errs, err)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d Record calls failed, first: %v", len(errs), errs[0])
	}
	if stored != total {
		t.Fatalf("Record calls reported %d new shares in all, want %d", stored, total)
	}
	if n := count(t, l); n != total {
		t.Fatalf("ShareCount = %d, want %d", n, total)
	}
}

func TestRecordRejectsBadShareAndStoresNothing(t *testing.T) {
	l, _ := open(t)
	c := ctx(t)
	for _, tc := range []struct {
		name   string
		mutate func(*Share)
		want   string
	}{
		{"zero hash", func(s *Share) { s.Hash = chainmath.Hash{} }, "hash is all zeros"},
		{"no time", func(s *Share) { s.Time = time.Time{} }, "time is not set"},
		{"no worker", func(s *Share) { s.Worker = "" }, "worker name is empty"},
		{"NUL", func(s *Share) { s.JobID = "a\x00b" }, `job id "a\x00b" contains a NUL byte`},
		{"bad utf8", func(s *Share) { s.Worker = "w\xff" }, `worker name "w\xff" is not valid UTF-8`},
		{"NUL worker", func(s *Share) { s.Worker = "evil\x00" }, `worker name "evil\x00" has control character U+0000`},
		{"difficulty", func(s *Share) { s.Difficulty = 0 }, "difficulty 0: want a finite number > 0"},
	} {
		batch := []Share{share(1, "a"), share(2, "a"), share(3, "a")}
		tc.mutate(&batch[2])
		n, err := l.Record(c, batch)
		if err == nil || n != 0 {
			t.Fatalf("%s: Record = %d, %v; want an error", tc.name, n, err)
		}
		if !strings.Contains(err.Error(), "share 2 of 3") || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("%s: error %q does not name share 2 of 3 and %q", tc.name, err, tc.want)
		}
	}
	if n := count(t, l); n != 0 {
		t.Fatalf("ShareCount after rejected batches = %d, want 0", n)
	}
}

func block(height int64, tag string) Block {
	raw := make([]byte, 120)
	copy(raw, tag)
	binary.LittleEndian.PutUint64(raw[80:], uint64(height))
	b := Block{Height: height, Hash: chainmath.DoubleSHA256(raw), Raw: raw, Finder: "alice." + tag,
		Time: 1700000000 + uint32(height), FoundAt: t0.Add(time.Duration(height) * time.Second)}
	copy(b.Header[:], raw[:80])
	return b
}

func TestBlocksOneHeightOneBlock(t *testing.T) {
	l, _ := open(t)
	c := ctx(t)
	for h := range int64(3) {
		if err := l.AddBlock(c, "sim", block(h, "a")); err != nil {
			t.Fatalf("AddBlock(%d): %v", h, err)
		}
	}
	// Another chain has its own heights.
	if err := l.AddBlock(c, "other", block(1, "x")); err != nil {
		t.Fatalf("AddBlock on another chain: %v", err)
	}
	rival := block(2, "b")
	err := l.AddBlock(c, "sim", rival)
	if !errors.Is(err, ErrHeightTaken) {
		t.Fatalf("second block at height 2: err = %v, want ErrHeightTaken", err)
	}
	if have := block(2, "a").Hash.String(); !strings.Contains(err.Error(), have) || !strings.Contains(err.Error(), rival.Hash.String()) {
		t.Fatalf("error %q does not name both blocks %s and %s", err, rival.Hash, have)
	}
	// The same block again at another height.
	dup := block(1, "a")
	dup.Height = 5
	if err := l.AddBlock(c, "sim", dup); !errors.Is(err, ErrHeightTaken) || !strings.Contains(err.Error(), "already stored at height 1") {
		t.Fatalf("same block at another height: err = %v", err)
	}

	// Two writers race for height 3: exactly one wins.
	var wg sync.WaitGroup
	results := make([]error, 8)
	for i := range results {
		wg.Go(func() { results[i] = l.AddBlock(context.Background(), "sim", block(3, fmt.Sprintf("r%d", i))) })
	}
	wg.Wait()
	wins := 0
	for i, err := range results {
		switch {
		case err == nil:
			wins++
		case !errors.Is(err, ErrHeightTaken):
			t.Fatalf("racer %d: %v", i, err)
		}
	}
	if wins != 1 {
		t.Fatalf("%d racers stored a block at height 3, want exactly 1", wins)
	}

	got, err := l.Blocks(c, "sim", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 {
		t.Fatalf("Blocks = %d blocks, want 4", len(got))
	}
	for h := range int64(3) {
		g := got[h]
		g.FoundAt = g.FoundAt.UTC()
		w := block(h, "a")
		if g.Height != w.Height || g.Hash != w.Hash || g.Header != w.Header || string(g.Raw) != string(w.Raw) ||
			g.Finder != w.Finder || g.Time != w.Time || !g.FoundAt.Equal(w.FoundAt) {
			t.Fatalf("block %d:\n got %+v\nwant %+v", h, g, w)
		}
	}
	tip, ok, err := l.Tip(c, "sim")
	if err != nil || !ok || tip.Height != 3 {
		t.Fatalf("Tip = height %d, %v, %v; want 3", tip.Height, ok, err)
	}
	if _, ok, err := l.Tip(c, "none"); ok || err != nil {
		t.Fatalf("Tip of an empty chain: ok=%v err=%v", ok, err)
	}
	if n, err := l.BlockCount(c, "sim"); err != nil || n != 4 {
		t.Fatalf("BlockCount = %d, %v; want 4", n, err)
	}
	if err := l.AddBlock(c, "sim", Block{Height: 9, Raw: []byte{1}}); err == nil || !strings.Contains(err.Error(), "raw block is 1 bytes") {
		t.Fatalf("short raw block: err = %v", err)
	}
}

func TestOpenMigratesIdempotentlyAndConcurrently(t *testing.T) {
	pg := clustertest.StartPostgres(t)
	url := pg.CreateDatabase(t)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() {
			l, err := Open(context.Background(), url)
			if err == nil {
				l.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("concurrent Open %d: %v", i, err)
		}
	}
	l, err := Open(ctx(t), url)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if v, err := l.SchemaVersion(ctx(t)); err != nil || v != len(migrations) {
		t.Fatalf("SchemaVersion = %d, %v; want %d", v, err, len(migrations))
	}
}

func TestOpenBadURL(t *testing.T) {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Nothing listens on port 1.
	_, err := Open(c, "postgres://powcoord:s3cret-pw@127.0.0.1:1/ledger?sslmode=disable&connect_timeout=5")
	if err == nil {
		t.Fatal("Open of an unreachable server succeeded")
	}
	msg := err.Error()
	if !strings.Contains(msg, "connecting to postgres://powcoord:xxxxx@127.0.0.1:1/ledger") || strings.Contains(msg, "s3cret") {
		t.Fatalf("error %q: want it to name the URL without its password", msg)
	}
	_, err = Open(c, "postgres://powcoord:s3cret-pw@127.0.0.1:notaport/ledger")
	if err == nil || strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "database URL postgres://powcoord:xxxxx@127.0.0.1:notaport/ledger") {
		t.Fatalf("unparsable URL: err = %v", err)
	}
	_, err = Open(c, "host=127.0.0.1 port=1 user=powcoord password=s3cret-pw dbname=ledger connect_timeout=5")
	if err == nil || strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "password=xxxxx") {
		t.Fatalf("key=value string: err = %v", err)
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://u:pw@h:5432/db":               "postgres://u:xxxxx@h:5432/db",
		"postgres://u@h/db":                       "postgres://u@h/db",
		"postgres://h/db?password=pw&sslmode=off": "postgres://h/db?password=xxxxx&sslmode=off",
		"host=h password='p w' user=u":            "host=h password=xxxxx user=u",
		"postgres://u:pw@h:bad/db":                "postgres://u:xxxxx@h:bad/db",
	} {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}
