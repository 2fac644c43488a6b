// Command sharecount prints how many shares the cluster's SHARES stream
// holds: the messages are batches (internal/cluster/sharelog), so the
// stream's message count is not the share count. Used by
// scripts/netns-frontend.sh.
//
//	go run ./scripts/sharecount --cluster nats://127.0.0.1:4222
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/powcoord/powcoord/internal/cluster/bus"
	"github.com/powcoord/powcoord/internal/cluster/sharelog"
)

func main() {
	cluster := flag.String("cluster", "nats://127.0.0.1:4222", "comma-separated NATS server `URLs`")
	flag.Parse()
	if err := run(*cluster); err != nil {
		fmt.Fprintln(os.Stderr, "sharecount:", err)
		os.Exit(1)
	}
}

func run(cluster string) error {
	urls, err := bus.ParseURLs(cluster)
	if err != nil {
		return fmt.Errorf("--cluster %q: %w", cluster, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nc, err := bus.Connect(ctx, urls, "sharecount")
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := bus.New(nc)
	if err != nil {
		return err
	}
	st, err := js.Stream(ctx, bus.StreamShares)
	if err != nil {
		return fmt.Errorf("stream %s: %w", bus.StreamShares, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return fmt.Errorf("stream %s: %w", bus.StreamShares, err)
	}
	distinct := map[[32]byte]bool{}
	total := 0
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // consumed by a ledger writer
		}
		if err != nil {
			return fmt.Errorf("message %d of %s: %w", seq, bus.StreamShares, err)
		}
		shares, err := sharelog.DecodeShares(m.Data)
		if err != nil {
			return fmt.Errorf("message %d of %s: %w", seq, bus.StreamShares, err)
		}
		for _, sh := range shares {
			distinct[sh.Hash] = true
		}
		total += len(shares)
	}
	fmt.Printf("%d\n", len(distinct))
	fmt.Fprintf(os.Stderr, "sharecount: %d messages, %d shares, %d distinct\n", info.State.Msgs, total, len(distinct))
	return nil
}
