package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/powcoord/powcoord/internal/listen"
	"github.com/powcoord/powcoord/internal/proxy"
)

const proxyUsage = `Usage: powcoord proxy --upstream stratum2+tcp://host:port/KEY [--upstream ...] --user NAME [flags]

A Stratum V1 to V2 translator: V1 miners (Bitaxe, cpuminer, powcoord
agent) connect to --stratum; the proxy opens one extended channel on the
first --upstream V2 pool that answers, as --user, and moves to the next
one (cycling) when that connection is lost. Each miner gets its own slice
of the channel's extranonce space and its own difficulty; the shares that
meet the pool's target are forwarded (docs/stratum-v2-guide.md, "Proxy in
front of a V2 pool").

Example:
  powcoord proxy --stratum :3333 --user alice --upstream stratum2+tcp://pool.example:3336/9bXiEd8boQVhq7WddEcERUL5tyyJVFYdU8th3HfbNXK3Yw6GRXh

Flags:
`

// proxyFlags are the flags of powcoord proxy.
type proxyFlags struct {
	listen    listen.Flags
	upstreams urlList
	user      string
	http      string
	startDiff float64
	perMinute float64
	logLevel  string
}

// runProxy runs the proxy subcommand until ctx is cancelled.
func runProxy(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("proxy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f proxyFlags
	f.listen.RegisterV1(fs, ":3333")
	fs.Var(&f.upstreams, "upstream", "Stratum V2 pool `URL` stratum2+tcp://host:port/AUTHORITYKEY; repeat for failover, tried in order (required)")
	fs.StringVar(&f.user, "user", "", "user identity of the upstream channel: the pool credits every forwarded share to it (required)")
	fs.StringVar(&f.http, "http", "", "`address` of the status API (GET /api/status); empty: none")
	fs.Float64Var(&f.startDiff, "start-difficulty", 0, "a new miner's share `difficulty` (0: the upstream channel's)")
	fs.Float64Var(&f.perMinute, "shares-per-minute", 20, "vardiff aim per miner, `N` shares a minute (negative: vardiff off)")
	fs.StringVar(&f.logLevel, "log-level", "info", "log `level`: debug, info, warn or error")
	configPath := addConfigFlag(fs)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), proxyUsage)
		fs.PrintDefaults()
	}
	if err := parseArgs(fs, args, configPath); err != nil {
		return err
	}
	if len(f.upstreams) == 0 {
		return errors.New("proxy: --upstream is required (e.g. --upstream stratum2+tcp://127.0.0.1:3336/KEY)")
	}
	if f.user == "" {
		return errors.New("proxy: --user is required: the upstream pool's user identity")
	}
	if f.listen.V1 == "" {
		return errors.New("proxy: --stratum is required: the address miners connect to")
	}
	if err := f.listen.Validate(); err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	if f.perMinute == 0 {
		return errors.New("proxy: --shares-per-minute 0: want a positive aim, or a negative value for no vardiff")
	}
	log, err := newLogger(stderr, f.logLevel)
	if err != nil {
		return err
	}
	p, err := proxy.New(proxy.Config{Upstreams: f.upstreams, User: f.user, VersionMask: f.listen.VersionMask,
		MinDifficulty: f.listen.MinDiff, MaxDifficulty: f.listen.MaxDiff, StartDifficulty: f.startDiff, SharesPerMinute: f.perMinute,
		HandshakeTimeout: f.listen.HandshakeTimeout, IdleTimeout: f.listen.IdleTimeout, MaxLine: f.listen.MaxLine, Logger: log})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", f.listen.V1)
	if err != nil {
		return fmt.Errorf("proxy: --stratum %q: %w", f.listen.V1, err)
	}
	log.Info("proxy listening", "stratum", "stratum+tcp://"+ln.Addr().String(), "upstreams", len(f.upstreams))
	if f.http != "" {
		hl, err := net.Listen("tcp", f.http)
		if err != nil {
			ln.Close()
			return fmt.Errorf("proxy: --http %q: %w", f.http, err)
		}
		srv := &http.Server{Handler: p.Handler(), ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(hl)
		defer srv.Close()
		log.Info("proxy status API", "url", "http://"+hl.Addr().String()+"/api/status")
	}
	return p.Run(ctx, ln)
}
