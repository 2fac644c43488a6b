package alert

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/powcoord/powcoord/internal/ledger"
)

// Worker alerts: a goroutine (WatchWorkers) looks at the worker history
// every Interval, never on the share path, and posts one event per
// transition: a worker silent for OfflineAfter (KindWorkerOffline), the
// same worker's next share (KindWorkerOnline), and a worker whose 5 m
// hashrate fell below DropBelow times its 1 h average
// (KindHashrateDrop; armed again once the 5 m hashrate is back at or
// above that line).

// Kinds of worker event.
const (
	KindWorkerOffline = "worker_offline"
	KindWorkerOnline  = "worker_online"
	KindHashrateDrop  = "hashrate_drop"
)

// Defaults of WatchConfig.
const (
	DefaultOfflineAfter = 10 * time.Minute
	DefaultDropBelow    = 0.5
	DefaultWatchEvery   = 30 * time.Second
)

// WorkerActivity is where WatchWorkers reads the worker history: the
// coordinator's SQLite store, or a PostgreSQL ledger.
type WorkerActivity interface {
	// WorkerMinutes returns the rollups of worker ("" for every worker)
	// from the minute holding since on, by minute then worker.
	WorkerMinutes(ctx context.Context, worker string, since time.Time) ([]ledger.WorkerMinute, error)
}

// WatchConfig configures WatchWorkers.
type WatchConfig struct {
	Source WorkerActivity
	// Notify receives each event (a Notifier's Notify); it must not block.
	Notify func(Event)
	// OfflineAfter is the silence (no accepted share) that makes a worker
	// offline; 0 switches the offline alerts off, otherwise at least a
	// minute.
	OfflineAfter time.Duration
	// DropBelow is the fraction of its 1 h average a worker's 5 m
	// hashrate must fall below for a drop alert, in (0, 1); 0 switches
	// the drop alerts off.
	DropBelow float64
	// Interval is how often the history is read (DefaultWatchEvery).
	Interval time.Duration
	// Logger receives read failures (slog.Default()).
	Logger *slog.Logger
}

// Check validates c, naming the setting at fault and its value.
func (c *WatchConfig) Check() error {
	if c.OfflineAfter != 0 && c.OfflineAfter < time.Minute {
		return fmt.Errorf("worker offline after %v: want at least 1m, or 0 for no offline alerts", c.OfflineAfter)
	}
	if c.DropBelow != 0 && !(c.DropBelow > 0 && c.DropBelow < 1) {
		return fmt.Errorf("worker hashrate drop below %v: want a fraction above 0 and below 1, or 0 for no drop alerts", c.DropBelow)
	}
	if c.Interval < 0 {
		return fmt.Errorf("worker watch interval %v: must be positive", c.Interval)
	}
	return nil
}

type watched struct {
	last    time.Time // the newest accepted share seen
	offline bool
	since   time.Time // offline: the last share before the silence
	dropped bool
}

// watchWindow is how far back each look reads: the 1 h average's 60
// whole minutes and the minute filling now.
const watchWindow = 61 * time.Minute

// forgetAfter is how long an offline worker is remembered (for its
// return alert).
const forgetAfter = 7 * 24 * time.Hour

// WatchWorkers reads the worker history every cfg.Interval until ctx
// ends and posts an event per worker transition (see the kinds above).
// At its first look a worker already silent for OfflineAfter is taken
// as offline without an alert (its silence began before the watch), so
// a restart does not repeat one. A failed read is logged and tried at
// the next tick.
func WatchWorkers(ctx context.Context, cfg WatchConfig) error {
	if err := cfg.Check(); err != nil {
		return err
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultWatchEvery
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.OfflineAfter == 0 && cfg.DropBelow == 0 {
		return nil
	}
	w := &watcher{cfg: cfg, state: map[string]*watched{}}
	t := time.NewTicker(cfg.Interval)
	defer t.Stop()
	for {
		if err := w.look(ctx, time.Now()); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			cfg.Logger.Warn("worker alerts: reading the worker history", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

type watcher struct {
	cfg    WatchConfig
	state  map[string]*watched
	looked bool
}

func (w *watcher) look(ctx context.Context, now time.Time) error {
	rctx, cancel := context.WithTimeout(ctx, w.cfg.Interval)
	defer cancel()
	rows, err := w.cfg.Source.WorkerMinutes(rctx, "", now.Add(-watchWindow))
	if err != nil {
		return err
	}
	by := map[string][]ledger.WorkerMinute{}
	for _, r := range rows {
		by[r.Worker] = append(by[r.Worker], r)
	}
	for name, rs := range by {
		st := w.state[name]
		if st == nil {
			st = &watched{}
			w.state[name] = st
		}
		for _, r := range rs {
			if r.Last.After(st.last) {
				st.last = r.Last
			}
		}
	}
	first := !w.looked
	w.looked = true
	for name, st := range w.state {
		if st.last.IsZero() {
			delete(w.state, name) // only rejected shares: nothing to watch yet
			continue
		}
		silent := now.Sub(st.last)
		if w.cfg.OfflineAfter > 0 {
			switch {
			case !st.offline && silent >= w.cfg.OfflineAfter:
				st.offline, st.since, st.dropped = true, st.last, false
				if !first {
					w.cfg.Notify(Event{Kind: KindWorkerOffline, Worker: name, LastShare: st.last.UTC(),
						SilentSeconds: silent.Truncate(time.Second).Seconds(), Time: now.UTC()})
				}
			case st.offline && silent < w.cfg.OfflineAfter:
				st.offline = false
				w.cfg.Notify(Event{Kind: KindWorkerOnline, Worker: name, LastShare: st.last.UTC(),
					SilentSeconds: st.last.Sub(st.since).Truncate(time.Second).Seconds(), Time: now.UTC()})
			case st.offline && silent >= forgetAfter:
				delete(w.state, name)
				continue
			}
		}
		if w.cfg.DropBelow > 0 && !st.offline {
			rs := by[name]
			rate, avg := ledger.SpanSum(rs, now, 5).Hashrate, ledger.SpanSum(rs, now, 60).Hashrate
			line := w.cfg.DropBelow * avg
			switch {
			case !st.dropped && avg > 0 && rate < line && sentEveryMinute(rs, now, 5):
				// Only a worker with shares in each of the 5 minutes: one
				// gone silent is the offline alert's, one just back is
				// still ramping up.
				st.dropped = true
				w.cfg.Notify(Event{Kind: KindHashrateDrop, Worker: name, Hashrate: rate, Average: avg,
					LastShare: st.last.UTC(), Time: now.UTC()})
			case st.dropped && rate >= line:
				st.dropped = false
			}
		}
		if !w.cfg.hasOffline() && silent >= forgetAfter {
			delete(w.state, name)
		}
	}
	return nil
}

func (c *WatchConfig) hasOffline() bool { return c.OfflineAfter > 0 }

// sentEveryMinute reports whether rows (one worker's) have an accepted
// share in each of the n complete minutes before now's.
func sentEveryMinute(rows []ledger.WorkerMinute, now time.Time, n int) bool {
	end := ledger.Minute(now)
	start := end.Add(-time.Duration(n) * time.Minute)
	k := 0
	for _, r := range rows {
		if r.Accepted > 0 && !r.Minute.Before(start) && r.Minute.Before(end) {
			k++
		}
	}
	return k == n
}
