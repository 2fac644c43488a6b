// Package listen is the listener surface of every process that serves
// miners: the Stratum V1, V1-over-TLS and V2 listeners, and what applies
// to the connections they accept (authorization, connection limits, bans,
// timeouts, difficulty floors, version rolling, client.reconnect). One
// flag set, validated in one place, used alike by `powcoord coordinator`
// and `powcoord frontend` (docs/architecture.md, "One listener surface").
package listen

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/powcoord/powcoord/internal/coordinator"
	"github.com/powcoord/powcoord/internal/proxyproto"
	"github.com/powcoord/powcoord/internal/sv2"
)

// Flags is the listener surface. The zero value serves only what a
// caller sets by hand (tests, the demo) with the coordinator's defaults
// for everything else.
type Flags struct {
	V1  string // --stratum: Stratum V1 address
	TLS string // --stratum-tls: Stratum V1 over TLS address
	V2  string // --stratum2: Stratum V2 (Noise) address

	TLSCert, TLSKey string // --tls-cert, --tls-key
	AuthorityKey    string // --authority-key: V2 authority key file

	MinDiff    float64 // --min-difficulty: floor of the V1 and V2 listeners
	TLSMinDiff float64 // --stratum-tls-min-difficulty (negative: MinDiff)

	MaxDiff    float64 // --max-difficulty: ceiling of the V1 and V2 listeners (0: none)
	TLSMaxDiff float64 // --stratum-tls-max-difficulty (negative: MaxDiff)

	MaxConns, MaxConnsPerIP int // --max-conns, --max-conns-per-ip

	Auth, AllowUsers, AuthPassword string // --auth, --allow-users, --auth-password

	HandshakeTimeout, IdleTimeout time.Duration // --handshake-timeout, --idle-timeout
	MaxLine                       int           // --max-line

	ReconnectAddr string        // --reconnect-addr host:port
	ReconnectWait time.Duration // --reconnect-wait

	VersionMask uint32 // --version-mask

	// ProxyFrom are the proxies whose connections start with a PROXY
	// protocol header (--proxy-protocol-from, docs/proxy-protocol.md).
	ProxyFrom []netip.Prefix
}

// Register adds the listener flags to fs, --stratum defaulting to
// v1Default. With minimal (the demo), only the V2 flags are registered:
// the demo picks its own V1 address and keeps the coordinator's defaults.
func (f *Flags) Register(fs *flag.FlagSet, v1Default string, minimal bool) {
	fs.StringVar(&f.V2, "stratum2", "", "Stratum V2-only (Noise-encrypted, stratum2+tcp) listen `address`; empty: none (--stratum serves V2 too)")
	fs.StringVar(&f.AuthorityKey, "authority-key", "", "Stratum V2 pool authority private key `file` (hex) of --stratum and --stratum2, created with mode 0600 on first start; empty: sv2-authority.key in the data directory")
	if minimal {
		f.TLSMinDiff, f.TLSMaxDiff = -1, -1
		return
	}
	fs.StringVar(&f.V1, "stratum", v1Default, "Stratum listen `address` (host:port; port 0 picks a free one): V1 and V2 (stratum2+tcp, the --authority-key) alike, told apart by each connection's first bytes")
	fs.StringVar(&f.TLS, "stratum-tls", "", "Stratum over TLS (stratum+ssl) listen `address`; empty disables it (needs --tls-cert and --tls-key)")
	fs.StringVar(&f.TLSCert, "tls-cert", "", "PEM certificate chain `file` for --stratum-tls")
	fs.StringVar(&f.TLSKey, "tls-key", "", "PEM private key `file` for --stratum-tls")
	fs.Float64Var(&f.TLSMinDiff, "stratum-tls-min-difficulty", -1, "the same floor for the --stratum-tls listener (negative: the --min-difficulty value)")
	fs.IntVar(&f.MaxConns, "max-conns", 0, "refuse connections beyond this many sessions (0: no limit)")
	fs.IntVar(&f.MaxConnsPerIP, "max-conns-per-ip", 0, "refuse more than this many sessions from one IP address (0: no limit)")
	fs.Float64Var(&f.TLSMaxDiff, "stratum-tls-max-difficulty", -1, "the same ceiling for the --stratum-tls listener (negative: the --max-difficulty value)")
	fs.StringVar(&f.Auth, "auth", "open", "authorization `mode`: open, allowlist (--allow-users) or password (--auth-password)")
	fs.StringVar(&f.AllowUsers, "allow-users", "", "comma-separated `usernames` (or the part before the first '.') for --auth allowlist")
	fs.StringVar(&f.AuthPassword, "auth-password", "", "the `password` every miner must send with --auth password")
	fs.StringVar(&f.ReconnectAddr, "reconnect-addr", "", "`host:port` that client.reconnect tells miners at a graceful shutdown; empty: the address each miner's connection reached (set it behind NAT or a proxy)")
	fs.DurationVar(&f.ReconnectWait, "reconnect-wait", time.Second, "wait that client.reconnect asks miners for at a graceful shutdown, whole seconds; negative: send no client.reconnect")
	f.registerMinerFlags(fs)
	fs.Var((*prefixList)(&f.ProxyFrom), "proxy-protocol-from", "take PROXY protocol v1/v2 headers (HAProxy send-proxy, send-proxy-v2) on every Stratum listener from these proxies: comma-separated CIDR `prefixes` or addresses (e.g. 10.0.0.5,fd00::/8). Their connections must start with one (else they are closed and logged) and count as the miner's address for bans, per-IP limits, logs and the API; a PROXY header from any other address is refused. Empty: none")
}

// RegisterV1 adds the flags of a Stratum V1-only listener that is no
// pool of its own (powcoord proxy): --stratum and what applies to its
// miners (difficulty bounds, timeouts, line length, version mask).
func (f *Flags) RegisterV1(fs *flag.FlagSet, v1Default string) {
	fs.StringVar(&f.V1, "stratum", v1Default, "Stratum V1 listen `address` (host:port; port 0 picks a free one)")
	f.TLSMinDiff, f.TLSMaxDiff = -1, -1
	f.registerMinerFlags(fs)
}

// registerMinerFlags adds the flags about the miners' connections that
// every listener surface has.
func (f *Flags) registerMinerFlags(fs *flag.FlagSet) {
	fs.Float64Var(&f.MinDiff, "min-difficulty", 0, "lowest share `difficulty` on the --stratum and --stratum2 listeners: vardiff, suggest_difficulty and a d= password never go below it (0: no floor)")
	fs.Float64Var(&f.MaxDiff, "max-difficulty", 0, "highest share `difficulty` on the --stratum and --stratum2 listeners: vardiff, suggest_difficulty and a d= password never go above it (0: no ceiling)")
	fs.DurationVar(&f.HandshakeTimeout, "handshake-timeout", 30*time.Second, "close a connection that has not subscribed and authorized within this `duration`")
	fs.DurationVar(&f.IdleTimeout, "idle-timeout", 10*time.Minute, "close a connection that sends nothing for this `duration`")
	fs.IntVar(&f.MaxLine, "max-line", 4096, "close a connection that sends a line longer than this many `bytes`")
	f.VersionMask = coordinator.DefaultVersionMask
	fs.Var((*hexMask)(&f.VersionMask), "version-mask", "header version bits miners may roll, in `hex`, inside 1fffffe0 (BIP 323); a V1 miner is granted its mining.configure mask ANDed with this, a V2 channel rolls under it")
}

// hexMask is a flag.Value for a hex version mask.
type hexMask uint32

func (m *hexMask) String() string { return fmt.Sprintf("%08x", uint32(*m)) }

func (m *hexMask) Set(s string) error {
	v, err := strconv.ParseUint(strings.TrimPrefix(strings.ToLower(s), "0x"), 16, 32)
	if err != nil {
		return fmt.Errorf("version mask %q: want 8 hex digits, e.g. 1fffffe0", s)
	}
	*m = hexMask(v)
	return nil
}

// prefixList is a flag.Value for --proxy-protocol-from, checked when set.
type prefixList []netip.Prefix

func (p *prefixList) String() string {
	if p == nil {
		return ""
	}
	s := make([]string, len(*p))
	for i, x := range *p {
		s[i] = x.String()
	}
	return strings.Join(s, ",")
}

func (p *prefixList) Set(v string) error {
	if strings.TrimSpace(v) == "" {
		*p = nil
		return nil
	}
	ps, err := proxyproto.ParsePrefixes(v)
	if err != nil {
		return err
	}
	*p = ps
	return nil
}

// Validate checks what only the flags can get wrong (pairs that belong
// together, addresses, floors); each error names the flag and the value.
// The coordinator checks the values it is given (auth mode, bans, version
// mask) when it starts, naming the value.
func (f *Flags) Validate() error {
	if f.TLS != "" && (f.TLSCert == "" || f.TLSKey == "") {
		return fmt.Errorf("--stratum-tls %q needs --tls-cert and --tls-key", f.TLS)
	}
	if f.TLS == "" && (f.TLSCert != "" || f.TLSKey != "") {
		return errors.New("--tls-cert and --tls-key are only used with --stratum-tls")
	}
	if f.MinDiff < 0 || math.IsNaN(f.MinDiff) || math.IsInf(f.MinDiff, 0) {
		return fmt.Errorf("--min-difficulty %v: must be 0 (none) or a positive number", f.MinDiff)
	}
	if math.IsNaN(f.TLSMinDiff) || math.IsInf(f.TLSMinDiff, 0) {
		return fmt.Errorf("--stratum-tls-min-difficulty %v: must be a number", f.TLSMinDiff)
	}
	if f.MaxDiff < 0 || math.IsNaN(f.MaxDiff) || math.IsInf(f.MaxDiff, 0) {
		return fmt.Errorf("--max-difficulty %v: must be 0 (none) or a positive number", f.MaxDiff)
	}
	if math.IsNaN(f.TLSMaxDiff) || math.IsInf(f.TLSMaxDiff, 0) {
		return fmt.Errorf("--stratum-tls-max-difficulty %v: must be a number", f.TLSMaxDiff)
	}
	if f.MaxDiff > 0 && f.MaxDiff < f.MinDiff {
		return fmt.Errorf("--max-difficulty %v is below --min-difficulty %v", f.MaxDiff, f.MinDiff)
	}
	if lo, hi := f.tlsBounds(); hi > 0 && hi < lo {
		return fmt.Errorf("the --stratum-tls ceiling %v is below its floor %v (--stratum-tls-max-difficulty, --stratum-tls-min-difficulty)", hi, lo)
	}
	if f.MaxConns < 0 {
		return fmt.Errorf("--max-conns %d: must be 0 (no limit) or positive", f.MaxConns)
	}
	if f.MaxConnsPerIP < 0 {
		return fmt.Errorf("--max-conns-per-ip %d: must be 0 (no limit) or positive", f.MaxConnsPerIP)
	}
	if f.HandshakeTimeout < 0 || f.IdleTimeout < 0 {
		return fmt.Errorf("--handshake-timeout %v / --idle-timeout %v: must not be negative", f.HandshakeTimeout, f.IdleTimeout)
	}
	if f.MaxLine < 0 {
		return fmt.Errorf("--max-line %d: must be positive", f.MaxLine)
	}
	if f.ReconnectAddr != "" {
		if _, _, err := f.reconnect(); err != nil {
			return err
		}
	}
	if f.ReconnectWait > 0 && f.ReconnectWait%time.Second != 0 {
		return fmt.Errorf("--reconnect-wait %v: client.reconnect carries whole seconds", f.ReconnectWait)
	}
	return nil
}

func (f *Flags) allowList() []string {
	var out []string
	for _, u := range strings.Split(f.AllowUsers, ",") {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, u)
		}
	}
	return out
}

// reconnect splits --reconnect-addr.
func (f *Flags) reconnect() (string, int, error) {
	host, ps, err := net.SplitHostPort(f.ReconnectAddr)
	port, perr := strconv.Atoi(ps)
	if err != nil || host == "" || perr != nil || port < 1 || port > 65535 {
		return "", 0, fmt.Errorf("--reconnect-addr %q: want host:port (e.g. pool.example.org:3333 or [2001:db8::1]:3333)", f.ReconnectAddr)
	}
	return host, port, nil
}

// Apply copies what the flags say about connections into cfg; zero
// values leave the coordinator's defaults.
func (f *Flags) Apply(cfg *coordinator.Config) {
	cfg.MaxConns, cfg.MaxConnsPerIP = f.MaxConns, f.MaxConnsPerIP
	cfg.AuthMode, cfg.Password = f.Auth, f.AuthPassword
	cfg.AllowList = f.allowList()
	cfg.HandshakeTimeout, cfg.IdleTimeout, cfg.MaxLineBytes = f.HandshakeTimeout, f.IdleTimeout, f.MaxLine
	if f.ReconnectAddr != "" {
		cfg.Reconnect.Host, cfg.Reconnect.Port, _ = f.reconnect()
	}
	cfg.Reconnect.Wait = max(f.ReconnectWait, 0)
	cfg.Reconnect.Disabled = f.ReconnectWait < 0
	cfg.VersionMask = f.VersionMask
}

// Set is the open listeners of one Flags.
type Set struct {
	f   *Flags
	srv *sv2.Server // with V1 or V2
	log *slog.Logger

	// V1, TLS and V2 are the listeners (nil when not configured), under
	// the PROXY protocol and TLS but without the coordinator's wrappers,
	// for their addresses.
	V1, TLS, V2 net.Listener
	// SV2URL is stratum2+tcp://host:port/<authority key> of --stratum2,
	// else of --stratum: what a V2 miner enters.
	SV2URL string
	// V1URL is the stratum2+tcp URL of --stratum, which serves V1 and V2
	// alike (empty without --stratum).
	V1URL string
}

// Noise returns the V2 server (the --authority-key) of --stratum and
// --stratum2, nil when neither is configured: the Job Declarator Server
// answers under the same key.
func (s *Set) Noise() *sv2.Server { return s.srv }

// Open opens every configured listener. The V2 authority key is
// --authority-key, or sv2-authority.key in dataDir, made on first start.
func (f *Flags) Open(dataDir string, log *slog.Logger) (*Set, error) {
	s := &Set{f: f}
	fail := func(err error) (*Set, error) { s.Close(); return nil, err }
	s.log = log
	var err error
	if f.V1 != "" {
		if s.V1, err = s.listen(f.V1); err != nil {
			return fail(fmt.Errorf("--stratum %q: %w", f.V1, err))
		}
	}
	if f.TLS != "" {
		if s.TLS, err = s.listenTLS(f.TLS); err != nil {
			return fail(fmt.Errorf("--stratum-tls %q: %w", f.TLS, err))
		}
	}
	if f.V1 == "" && f.V2 == "" {
		return s, nil
	}
	// --stratum serves V2 too, on the same port: the authority key is
	// needed whenever either listens.
	path := f.AuthorityKey
	if path == "" {
		path = filepath.Join(dataDir, "sv2-authority.key")
	}
	key, created, err := sv2.LoadOrCreateAuthorityKey(path)
	if err != nil {
		return fail(fmt.Errorf("--authority-key: %w", err))
	}
	if created {
		log.Info("stratum v2 authority key created", "file", path)
	}
	if s.srv, err = sv2.NewServer(sv2.ServerConfig{Authority: key}); err != nil {
		return fail(err)
	}
	if s.V1 != nil {
		s.V1URL = sv2.URL(s.V1.Addr().String(), sv2.XOnly(key))
		log.Info("stratum v1 and v2 listening", "addr", s.V1.Addr().String(), "url", s.V1URL)
	}
	if f.V2 != "" {
		if s.V2, err = s.listen(f.V2); err != nil {
			return fail(fmt.Errorf("--stratum2 %q: %w", f.V2, err))
		}
		s.SV2URL = sv2.URL(s.V2.Addr().String(), sv2.XOnly(key))
		log.Info("stratum v2 listening", "addr", s.V2.Addr().String(), "url", s.SV2URL)
	}
	if s.SV2URL == "" {
		s.SV2URL = s.V1URL
	}
	return s, nil
}

// listen listens on addr, taking PROXY headers from --proxy-protocol-from.
func (s *Set) listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil || len(s.f.ProxyFrom) == 0 {
		return ln, err
	}
	return proxyproto.NewListener(ln, proxyproto.Config{Trusted: s.f.ProxyFrom, Timeout: s.f.HandshakeTimeout, Logger: s.log}), nil
}

// listenTLS is listen under TLS: a PROXY header comes before the TLS
// handshake.
func (s *Set) listenTLS(addr string) (net.Listener, error) {
	ln, err := s.listen(addr)
	if err != nil {
		return nil, err
	}
	tl, err := coordinator.WithTLS(ln, s.f.TLSCert, s.f.TLSKey)
	if err != nil {
		ln.Close()
		return nil, err
	}
	return tl, nil
}

// tlsBounds are the --stratum-tls listener's floor and ceiling, each
// the other listeners' unless set.
func (f *Flags) tlsBounds() (lo, hi float64) {
	lo, hi = f.TLSMinDiff, f.TLSMaxDiff
	if lo < 0 {
		lo = f.MinDiff
	}
	if hi < 0 {
		hi = f.MaxDiff
	}
	return lo, hi
}

// Serve returns the listeners for Coordinator.Run, each with its
// difficulty floor and ceiling: V1 telling V1 from V2 by the first bytes,
// V2 only V2, both with the Noise server.
func (s *Set) Serve() []net.Listener {
	bound := func(ln net.Listener, lo, hi float64) net.Listener {
		return coordinator.WithMaxDifficulty(coordinator.WithMinDifficulty(ln, lo), hi)
	}
	var out []net.Listener
	if s.V1 != nil {
		out = append(out, bound(coordinator.WithSV2Detect(s.V1, s.srv), s.f.MinDiff, s.f.MaxDiff))
	}
	if s.TLS != nil {
		lo, hi := s.f.tlsBounds()
		out = append(out, bound(s.TLS, lo, hi))
	}
	if s.V2 != nil {
		out = append(out, bound(coordinator.WithSV2(s.V2, s.srv), s.f.MinDiff, s.f.MaxDiff))
	}
	return out
}

// Reopen listens again on the addresses the listeners had (ports
// included), after Coordinator.Run closed them: a front-end serves one
// lease term per Run. The port stays free for a moment at most; an
// address still taken is retried until stop is closed.
func (s *Set) Reopen(stop <-chan struct{}) error {
	again := func(old net.Listener, listen func(string) (net.Listener, error)) (net.Listener, error) {
		if old == nil {
			return nil, nil
		}
		addr := old.Addr().String()
		for {
			ln, err := listen(addr)
			if err == nil {
				return ln, nil
			}
			select {
			case <-stop:
				return nil, err
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	var err error
	if s.V1, err = again(s.V1, s.listen); err != nil {
		return fmt.Errorf("--stratum %s: %w", s.f.V1, err)
	}
	if s.TLS, err = again(s.TLS, s.listenTLS); err != nil {
		return fmt.Errorf("--stratum-tls %s: %w", s.f.TLS, err)
	}
	if s.V2, err = again(s.V2, s.listen); err != nil {
		return fmt.Errorf("--stratum2 %s: %w", s.f.V2, err)
	}
	return nil
}

// Close closes every listener of the set.
func (s *Set) Close() {
	for _, ln := range []net.Listener{s.V1, s.TLS, s.V2} {
		if ln != nil {
			ln.Close()
		}
	}
}
