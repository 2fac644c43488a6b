package pgledger

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"testing"

	"github.com/powcoord/powcoord/internal/chainmath"
)

func TestRecordPayoutsOnceAndReadBack(t *testing.T) {
	l, _ := open(t)
	rec := PayoutRecord{Hash: chainmath.Hash{1, 2, 3}, Height: 7, Mode: "pplns", Cutoff: 42, Window: "36893488147419103232", Value: 5000000000,
		Outputs: []PayoutOutput{
			{Script: []byte{0x51}, Amount: 4950000000 - 1234, Work: "1000", Label: "alice"},
			{Script: []byte{0x52}, Amount: 1234, Work: "1", Label: "bob"},
			{Script: []byte{0x6a, 0x01, 0x02}, Amount: 50000000, Fee: true},
		}}
	if err := l.RecordPayouts(ctx(t), rec); err != nil {
		t.Fatal(err)
	}
	// Again, changed: the first record stays.
	again := rec
	again.Cutoff, again.Outputs = 99, rec.Outputs[:1]
	if err := l.RecordPayouts(ctx(t), again); err != nil {
		t.Fatal(err)
	}
	got, ok, err := l.BlockPayouts(ctx(t), rec.Hash)
	if err != nil || !ok {
		t.Fatalf("BlockPayouts: %v %v", ok, err)
	}
	if !reflect.DeepEqual(got, rec) {
		t.Fatalf("BlockPayouts =\n%+v\nwant\n%+v", got, rec)
	}
	if _, ok, err := l.BlockPayouts(ctx(t), chainmath.Hash{9}); ok || err != nil {
		t.Fatalf("BlockPayouts of an unknown block: %v %v", ok, err)
	}
	if hs, err := l.PayoutBlocks(ctx(t)); err != nil || len(hs) != 1 || hs[0] != rec.Hash {
		t.Fatalf("PayoutBlocks = %v, %v", hs, err)
	}
	if err := l.RecordPayouts(ctx(t), PayoutRecord{Mode: "solo"}); err == nil {
		t.Fatal("a record without a block hash was stored")
	}
	if err := l.RecordPayouts(ctx(t), PayoutRecord{Hash: chainmath.Hash{4}, Mode: "solo", Outputs: []PayoutOutput{{Script: []byte{1}, Amount: 1, Label: "a\x00b"}}}); err == nil {
		t.Fatal("a label with a NUL byte was stored")
	}
}

// A PPLNS cutoff is exact: once ScanRecentShares names the newest id c,
// the set of shares with id up to c never changes, however many writers
// commit at once (Record's advisory lock assigns ids in commit order).
func TestCutoffIsStableUnderConcurrentWriters(t *testing.T) {
	l, _ := open(t)
	const writers, batches, size = 4, 40, 25
	type snap struct{ cutoff, n int64 }
	var (
		wg    sync.WaitGroup
		snaps []snap
		errs  = make(chan error, writers+1)
		done  = make(chan struct{})
	)
	countTo := func(c int64) (int64, error) {
		var n int64
		err := l.pool.QueryRow(context.Background(), `SELECT count(*) FROM shares WHERE id <= $1`, c).Scan(&n)
		return n, err
	}
	for w := range writers {
		wg.Go(func() {
			for b := range batches {
				batch := make([]Share, size)
				for i := range batch {
					batch[i] = share(((w*batches)+b)*size+i, fmt.Sprintf("w%d", w))
				}
				if _, err := l.Record(context.Background(), batch); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	rdone := make(chan struct{})
	go func() {
		defer close(rdone)
		for {
			select {
			case <-done:
				return
			default:
			}
			c, err := l.ScanRecentShares(context.Background(), func(string, float64) bool { return false })
			if err != nil {
				errs <- err
				return
			}
			n, err := countTo(c)
			if err != nil {
				errs <- err
				return
			}
			snaps = append(snaps, snap{c, n})
		}
	}()
	wg.Wait()
	close(done)
	<-rdone
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, s := range snaps {
		n, err := countTo(s.cutoff)
		if err != nil {
			t.Fatal(err)
		}
		if n != s.n {
			t.Fatalf("cutoff %d: %d shares up to it when it was read, %d later", s.cutoff, s.n, n)
		}
	}
	if n := count(t, l); n != writers*batches*size {
		t.Fatalf("ShareCount = %d, want %d", n, writers*batches*size)
	}
	t.Logf("%d cutoffs checked", len(snaps))
}
