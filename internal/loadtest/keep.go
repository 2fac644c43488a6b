package loadtest

import (
	"context"
	"time"
)

// Keep keeps one miner connected to a pool at one of addrs, moving to the
// next address whenever its pool goes away, and submits valid shares at
// about rate a second until ctx ends. onAccepted is called for every share
// the pool accepted (from the miner's reader). Tests of crashes and
// failover use it to learn exactly which shares a miner was told true for.
func Keep(ctx context.Context, addrs []string, user string, rate int, onAccepted func(Share)) {
	tick := time.NewTicker(time.Second / time.Duration(max(rate, 1)))
	defer tick.Stop()
	for i := 0; ctx.Err() == nil; i++ {
		m, err := Dial(ctx, addrs[i%len(addrs)], "", user)
		if err != nil {
			select {
			case <-ctx.Done():
			case <-tick.C: // retry pacing
			}
			continue
		}
		m.OnAccepted = onAccepted
		runDone := make(chan struct{})
		go func() {
			defer close(runDone)
			m.Run(ctx)
		}()
		if m.WaitWork(ctx) == nil {
		loop:
			for {
				select {
				case <-ctx.Done():
					break loop
				case <-runDone:
					break loop
				case <-tick.C:
				}
				if sh, ok := m.Solve(false, 1<<22); ok && m.Submit(sh) != nil {
					break
				}
			}
		}
		m.Close()
		<-runDone
	}
}
