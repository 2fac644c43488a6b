package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/powcoord/powcoord/internal/coordinator"
	"github.com/powcoord/powcoord/internal/listen"
	"github.com/powcoord/powcoord/internal/web"
)

// poolFlags are the miner policy flags that `coordinator` and `frontend`
// share, registered once here: the reject rule and bans (docs/bans.md),
// the coinbase tag, and who may lift a ban over HTTP. The listeners and
// what applies to each (floors, ceilings, auth, limits) are
// internal/listen's.
type poolFlags struct {
	banMinShares   int
	banRejectRatio float64
	banDuration    time.Duration
	banIPAfter     int
	banWindow      time.Duration
	banExempt      string
	coinbaseTag    string
	adminToken     string
	adminHTTP      string
}

func (p *poolFlags) register(fs *flag.FlagSet) {
	fs.IntVar(&p.banMinShares, "ban-min-shares", 100, "shares a connection must have sent before the reject rule judges it; negative disables the rule")
	fs.Float64Var(&p.banRejectRatio, "ban-reject-ratio", 0.9, "close a connection with at least this `fraction` of its shares rejected for its own fault (stale shares and rejects caused by the pool's job changes not counted)")
	fs.DurationVar(&p.banDuration, "ban-duration", 10*time.Minute, "how long a ban refuses the address")
	fs.IntVar(&p.banIPAfter, "ban-ip-after", 3, "ban an address once this many of its connections were closed by the reject rule within --ban-window; negative: never ban an address, only close the connections")
	fs.DurationVar(&p.banWindow, "ban-window", 10*time.Minute, "the `duration` within which --ban-ip-after closed connections ban their address")
	fs.StringVar(&p.banExempt, "ban-exempt", "", "comma-separated `networks` (CIDR like 10.0.0.0/8, or single addresses) never banned: their connections are still closed by the reject rule")
	fs.StringVar(&p.coinbaseTag, "coinbase-tag", coordinator.DefaultCoinbaseTag, "`text` pushed into every coinbase scriptSig after the extranonce; refused at start when it does not fit into the scriptSig's 100 bytes")
	fs.StringVar(&p.adminToken, "admin-token", "", "bearer `token` that lets DELETE /api/bans/{ip} on --http lift a ban (header Authorization: Bearer TOKEN); empty: only --admin-http can")
	fs.StringVar(&p.adminHTTP, "admin-http", "", "admin HTTP listen `address` (keep it private, e.g. 127.0.0.1:8081) serving GET /api/bans and DELETE /api/bans/{ip} without a token; empty disables it")
}

// givenPoolFlags lists the pool and listener flags set on fs (command
// line or --config), as "--name": what a cluster coordinator, which
// serves no miners, refuses.
func givenPoolFlags(fs *flag.FlagSet) []string {
	names := flag.NewFlagSet("", flag.ContinueOnError)
	new(poolFlags).register(names)
	new(listen.Flags).Register(names, "", false)
	var set []string
	fs.Visit(func(f *flag.Flag) {
		if names.Lookup(f.Name) != nil {
			set = append(set, "--"+f.Name)
		}
	})
	return set
}

// check validates the flags, naming the one at fault and its value.
func (p *poolFlags) check() error {
	if !(p.banRejectRatio > 0 && p.banRejectRatio <= 1) {
		return fmt.Errorf("--ban-reject-ratio %v: must be above 0 and at most 1", p.banRejectRatio)
	}
	if p.banDuration <= 0 {
		return fmt.Errorf("--ban-duration %v: must be positive", p.banDuration)
	}
	if p.banIPAfter == 0 {
		return errors.New("--ban-ip-after 0: want at least 1, or negative to never ban an address")
	}
	if p.banWindow <= 0 {
		return fmt.Errorf("--ban-window %v: must be positive", p.banWindow)
	}
	if _, err := coordinator.ParseNetworks(p.banExempt); err != nil {
		return fmt.Errorf("--ban-exempt: %w", err)
	}
	if p.coinbaseTag == "" {
		return errors.New("--coinbase-tag: must not be empty")
	}
	if err := coordinator.CheckCoinbaseTag(p.coinbaseTag, 0); err != nil {
		return fmt.Errorf("--coinbase-tag: %w", err)
	}
	return nil
}

// apply copies the flags into cfg. Zero values (flags built without
// register, as the demo and tests do) keep the coordinator's defaults.
func (p *poolFlags) apply(cfg *coordinator.Config) error {
	cfg.BanMinShares, cfg.BanRejectRatio, cfg.BanDuration = p.banMinShares, p.banRejectRatio, p.banDuration
	cfg.BanIPAfter, cfg.BanWindow = p.banIPAfter, p.banWindow
	nets, err := coordinator.ParseNetworks(p.banExempt)
	if err != nil {
		return fmt.Errorf("--ban-exempt: %w", err)
	}
	cfg.BanExempt = nets
	cfg.CoinbaseTag = p.coinbaseTag
	return nil
}

// listenAdmin opens --admin-http and returns its server (the ban routes
// over current, no token needed), or nils without --admin-http. The
// caller serves it and shuts it down.
func (p *poolFlags) listenAdmin(current func() web.BanList, log *slog.Logger) (*http.Server, net.Listener, error) {
	if p.adminHTTP == "" {
		return nil, nil, nil
	}
	ln, err := net.Listen("tcp", p.adminHTTP)
	if err != nil {
		return nil, nil, fmt.Errorf("--admin-http %q: %w", p.adminHTTP, err)
	}
	mux := http.NewServeMux()
	web.BanRoutes(mux, current, web.BanAccess{Admin: true}, log)
	log.Info("admin HTTP listening", "addr", ln.Addr().String())
	return &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}, ln, nil
}

// serveAdmin serves srv on ln until ctx ends (nothing when srv is nil).
func serveAdmin(ctx context.Context, srv *http.Server, ln net.Listener) error {
	if srv == nil {
		return nil
	}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("admin HTTP server on %s: %w", ln.Addr(), err)
	}
	return nil
}
