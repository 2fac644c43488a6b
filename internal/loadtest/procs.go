package loadtest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"time"

	"github.com/powcoord/powcoord/internal/chainmath"
)

// A run over several processes (Config.Procs): the parent starts the
// children and steers them through the phases with one JSON object a
// line on each child's standard input; each child answers with one JSON
// object a line on its standard output.
//
//   - start (with the child's share of the sessions, numbered from its
//     offset, and of the share rate) → ready, when its sessions are open
//     and have their first job.
//   - shares → the child's share-phase counts; every child is told at
//     once, so the phases overlap and the rates add up.
//   - For each block, one child in turn is the miner: solve → solved (the
//     block's prevhash, which the new clean notify carries); then every
//     child is told expect, and answers expecting once it records that
//     prevhash's notify; then the miner is told submit and answers with
//     the wall-clock time it sent the block; then every child is told
//     collect and answers, once all its sessions have the notify (or 10 s
//     passed), with every arrival: when the read holding the line's first
//     byte and the read completing it returned, in Unix nanoseconds.
//
// All processes are on one machine, so the wall clock (CLOCK_REALTIME,
// time.Now) is one clock for all: the parent computes the latencies from
// the submit and the spread from the earliest first byte over every
// child's raw samples, never from per-child summaries.

// childConfig is a child's part of a run.
type childConfig struct {
	Addr            string        `json:"addr"`
	Offset          int           `json:"offset"`
	Sessions        int           `json:"sessions"`
	SharesPerSecond int           `json:"rate"`
	Window          int           `json:"window"`
	Duration        time.Duration `json:"duration_ns"`
	PerSourceIP     int           `json:"per_ip"`
	Readers         string        `json:"readers"`
}

// order is a line from the parent.
type order struct {
	Op   string       `json:"op"` // start, shares, solve, expect, submit, collect
	Cfg  *childConfig `json:"cfg,omitempty"`
	Prev string       `json:"prev,omitempty"`
}

// answer is a line from a child.
type answer struct {
	Ev      string         `json:"ev"` // ready, shares, solved, expecting, submitted, arrivals
	Err     string         `json:"err,omitempty"`
	Readers string         `json:"readers,omitempty"`
	Connect *connectResult `json:"connect,omitempty"`
	Shares  *shareResult   `json:"shares,omitempty"`
	Prev    string         `json:"prev,omitempty"`
	Hash    string         `json:"hash,omitempty"`
	T0      int64          `json:"t0,omitempty"`
	Round   *roundResult   `json:"round,omitempty"`
}

// ServeChild runs one child of a several-process run (Config.Procs):
// it reads the parent's orders from in and writes its answers to out,
// one JSON object a line each, until in ends. Logs go to log.
func ServeChild(ctx context.Context, in io.Reader, out io.Writer, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dec := json.NewDecoder(bufio.NewReader(in))
	w := bufio.NewWriter(out)
	enc := json.NewEncoder(w)
	send := func(a answer) error {
		if err := enc.Encode(a); err != nil {
			return err
		}
		return w.Flush()
	}
	var o order
	if err := dec.Decode(&o); err != nil {
		return fmt.Errorf("reading the start order: %w", err)
	}
	if o.Op != "start" || o.Cfg == nil {
		return fmt.Errorf("first order %q, want start", o.Op)
	}
	cc := *o.Cfg
	cfg := Config{Addr: cc.Addr, Sessions: cc.Sessions, SharesPerSecond: cc.SharesPerSecond, Window: max(cc.Window, 1),
		Duration: cc.Duration, PerSourceIP: max(cc.PerSourceIP, 1), Readers: cc.Readers, Logger: log}
	g, cr, err := openGroup(ctx, cfg, log, cc.Offset, cc.Sessions)
	if err != nil {
		send(answer{Ev: "ready", Connect: &cr, Err: err.Error()})
		return err
	}
	defer g.stop()
	if err := send(answer{Ev: "ready", Connect: &cr, Readers: g.cfg.Readers}); err != nil {
		return err
	}
	var (
		miner    *Miner // the block solved, to submit
		block    Share
		answered *Miner // the block submitted, whose answer collect awaits
		r        *round
		cpu0     cpuTime
	)
	for {
		o = order{}
		if err := dec.Decode(&o); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("reading an order: %w", err)
		}
		var a answer
		switch o.Op {
		case "shares":
			sr := shareResult{}
			if cc.SharesPerSecond > 0 && cc.Duration > 0 {
				sr = g.shares(ctx, cc.SharesPerSecond)
			}
			a = answer{Ev: "shares", Shares: &sr}
		case "solve":
			m, sh, err := g.solve()
			a = answer{Ev: "solved"}
			if err != nil {
				a.Err = err.Error()
			} else {
				miner, block = m, sh
				a.Prev, a.Hash = chainmath.StratumPrevHash(sh.Hash), sh.Hash.String()
			}
		case "expect":
			r = g.expect(o.Prev)
			cpu0 = selfCPU()
			a = answer{Ev: "expecting"}
		case "submit":
			a = answer{Ev: "submitted"}
			if miner == nil {
				a.Err = "submit before solve"
			} else if t0, err := submitBlock(miner, block); err != nil {
				a.Err = err.Error()
			} else {
				a.T0 = t0
				answered = miner
			}
			miner = nil
		case "collect":
			a = answer{Ev: "arrivals"}
			if r == nil {
				a.Err = "collect before expect"
			} else {
				res := g.await(ctx, r, cpu0)
				if answered != nil {
					waitAnswered(ctx, answered)
					answered = nil
				}
				a.Round = &res
				r = nil
			}
		default:
			a = answer{Ev: "error", Err: fmt.Sprintf("unknown order %q", o.Op)}
		}
		if err := send(a); err != nil {
			return err
		}
	}
}

// child is the parent's handle on one child process.
type child struct {
	n    int
	cmd  *exec.Cmd
	in   io.WriteCloser
	enc  *json.Encoder
	dec  *json.Decoder
	done chan error
}

func (c *child) tell(o order) error {
	if err := c.enc.Encode(o); err != nil {
		return fmt.Errorf("child %d: sending %s: %w", c.n, o.Op, err)
	}
	return nil
}

// hear reads the child's next answer, which must be want.
func (c *child) hear(want string) (answer, error) {
	var a answer
	if err := c.dec.Decode(&a); err != nil {
		return a, fmt.Errorf("child %d: waiting for %s: %w", c.n, want, err)
	}
	if a.Err != "" {
		return a, fmt.Errorf("child %d: %s: %s", c.n, a.Ev, a.Err)
	}
	if a.Ev != want {
		return a, fmt.Errorf("child %d: answered %s, want %s", c.n, a.Ev, want)
	}
	return a, nil
}

// split is part k of total divided into n parts as evenly as integers go.
func split(total, n, k int) int {
	p := total / n
	if k < total%n {
		p++
	}
	return p
}

// runProcs runs cfg over cfg.Procs child processes (see the top of this
// file) and merges their reports.
func runProcs(ctx context.Context, cfg Config) (rep *Report, err error) {
	log := cfg.Logger
	n := cfg.Procs
	if cfg.Command == nil {
		return nil, errors.New("procs > 1 needs a command to start the children")
	}
	if cfg.Sessions < n {
		return nil, fmt.Errorf("sessions %d: want at least one per process (procs %d)", cfg.Sessions, n)
	}
	rep = &Report{Procs: n}
	if cfg.PID > 0 {
		rep.RSSStartBytes, _ = rss(cfg.PID)
	}
	var kids []*child
	defer func() {
		for _, c := range kids {
			c.in.Close() // the child closes its sessions and exits
		}
		for _, c := range kids {
			select {
			case werr := <-c.done:
				if werr != nil && err == nil {
					err = fmt.Errorf("child %d: %w", c.n, werr)
				}
			case <-time.After(30 * time.Second):
				c.cmd.Process.Kill()
				<-c.done
			}
		}
	}()
	offset := 0
	for k := range n {
		cmd := cfg.Command(ctx)
		in, perr := cmd.StdinPipe()
		if perr != nil {
			return rep, perr
		}
		out, perr := cmd.StdoutPipe()
		if perr != nil {
			return rep, perr
		}
		if err := cmd.Start(); err != nil {
			return rep, fmt.Errorf("starting child %d: %w", k, err)
		}
		c := &child{n: k, cmd: cmd, in: in, enc: json.NewEncoder(in), dec: json.NewDecoder(bufio.NewReader(out)), done: make(chan error, 1)}
		go func() { c.done <- cmd.Wait() }()
		kids = append(kids, c)
		addr := cfg.Addr
		if len(cfg.Addrs) > 1 {
			addr = cfg.Addrs[k%len(cfg.Addrs)]
		}
		cc := &childConfig{Addr: addr, Offset: offset, Sessions: split(cfg.Sessions, n, k), SharesPerSecond: split(cfg.SharesPerSecond, n, k),
			Window: cfg.Window, Duration: cfg.Duration, PerSourceIP: cfg.PerSourceIP, Readers: cfg.Readers}
		offset += cc.Sessions
		if err := c.tell(order{Op: "start", Cfg: cc}); err != nil {
			return rep, err
		}
	}
	for _, c := range kids {
		a, err := c.hear("ready")
		if a.Connect != nil {
			rep.Sessions += a.Connect.Sessions
			rep.ConnectErrors += a.Connect.Errors
			rep.ConnectTime = max(rep.ConnectTime, a.Connect.Time)
		}
		if err != nil {
			return rep, err
		}
		rep.Readers = a.Readers
	}
	log.Info("sessions connected", "sessions", rep.Sessions, "took", rep.ConnectTime, "procs", n, "readers", rep.Readers)
	if cfg.PID > 0 {
		rep.RSSIdleBytes, _ = rss(cfg.PID)
	}

	if cfg.SharesPerSecond > 0 && cfg.Duration > 0 {
		cpu0, _ := cpuTicks(cfg.PID)
		for _, c := range kids {
			if err := c.tell(order{Op: "shares"}); err != nil {
				return rep, err
			}
		}
		var elapsed time.Duration
		for _, c := range kids {
			a, err := c.hear("shares")
			if err == nil && a.Shares == nil {
				err = fmt.Errorf("child %d: shares without counts", c.n)
			}
			if err != nil {
				return rep, err
			}
			rep.addShares(*a.Shares)
			elapsed = max(elapsed, a.Shares.Elapsed)
		}
		cpu1, _ := cpuTicks(cfg.PID)
		if cfg.PID > 0 && elapsed > 0 {
			rep.RSSBytes, _ = rss(cfg.PID)
			rep.CPUPercent = float64(cpu1-cpu0) / clockTicks / elapsed.Seconds() * 100
		}
		log.Info("share phase done", "sent", rep.Submitted, "accepted", rep.Accepted, "per_second", rep.SharesPerSec)
	}
	if err := blockDelay(ctx, cfg); err != nil {
		return rep, err
	}

	var stats notifyStats
	all := func(o order, want string) ([]answer, error) {
		for _, c := range kids {
			if err := c.tell(o); err != nil {
				return nil, err
			}
		}
		as := make([]answer, len(kids))
		for i, c := range kids {
			a, err := c.hear(want)
			if err != nil {
				return nil, err
			}
			as[i] = a
		}
		return as, nil
	}
	for b := 0; b < cfg.Blocks && ctx.Err() == nil; b++ {
		mc := kids[b%n]
		if err := mc.tell(order{Op: "solve"}); err != nil {
			return rep, err
		}
		solved, err := mc.hear("solved")
		if err != nil {
			return rep, err
		}
		if _, err := all(order{Op: "expect", Prev: solved.Prev}, "expecting"); err != nil {
			return rep, err
		}
		if err := mc.tell(order{Op: "submit"}); err != nil {
			return rep, err
		}
		sub, err := mc.hear("submitted")
		if err != nil {
			return rep, err
		}
		as, err := all(order{Op: "collect"}, "arrivals")
		if err != nil {
			return rep, err
		}
		parts := make([]roundResult, len(as))
		for i, a := range as {
			if a.Round == nil {
				return rep, fmt.Errorf("child %d: arrivals without a round", i)
			}
			parts[i] = *a.Round
		}
		stats.logBlock(log, solved.Hash, sub.T0, parts)
	}
	stats.fill(rep)
	return rep, nil
}
