package coordinator

import (
	"crypto/subtle"
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/powcoord/powcoord/internal/ledger"
	"github.com/powcoord/powcoord/internal/stratum"
)

// Authorization modes for Config.AuthMode.
const (
	// AuthOpen authorizes every username the work source can pay.
	AuthOpen = "open"
	// AuthAllowList authorizes only the usernames in Config.AllowList.
	AuthAllowList = "allowlist"
	// AuthPassword authorizes any payable username whose password equals
	// Config.Password.
	AuthPassword = "password"
)

// Defaults of the ban thresholds.
const (
	defaultBanMinShares   = 100
	defaultBanRejectRatio = 0.9
	defaultBanDuration    = 10 * time.Minute
	defaultBanIPAfter     = 3
	defaultBanWindow      = 10 * time.Minute
)

// checkLimits validates and defaults the connection-limit, ban and
// authorization fields of c.
func (c *Config) checkLimits() error {
	if c.MaxConns < 0 {
		return fmt.Errorf("max connections %d: must not be negative", c.MaxConns)
	}
	if c.MaxConnsPerIP < 0 {
		return fmt.Errorf("max connections per IP %d: must not be negative", c.MaxConnsPerIP)
	}
	if c.BanMinShares == 0 {
		c.BanMinShares = defaultBanMinShares
	}
	if c.BanRejectRatio == 0 {
		c.BanRejectRatio = defaultBanRejectRatio
	}
	if !(c.BanRejectRatio > 0 && c.BanRejectRatio <= 1) {
		return fmt.Errorf("ban reject ratio %v: must be in (0, 1]", c.BanRejectRatio)
	}
	if c.BanDuration == 0 {
		c.BanDuration = defaultBanDuration
	}
	if c.BanDuration < 0 {
		return fmt.Errorf("ban duration %v: must be positive", c.BanDuration)
	}
	if c.BanIPAfter == 0 {
		c.BanIPAfter = defaultBanIPAfter
	}
	if c.BanWindow == 0 {
		c.BanWindow = defaultBanWindow
	}
	if c.BanWindow < 0 {
		return fmt.Errorf("ban window %v: must be positive", c.BanWindow)
	}
	switch c.AuthMode {
	case "":
		c.AuthMode = AuthOpen
	case AuthOpen:
	case AuthAllowList:
		if len(c.AllowList) == 0 {
			return fmt.Errorf("auth mode %q needs a non-empty allow-list", c.AuthMode)
		}
	case AuthPassword:
		if c.Password == "" {
			return fmt.Errorf("auth mode %q needs a password", c.AuthMode)
		}
	default:
		return fmt.Errorf("auth mode %q: want %q, %q or %q", c.AuthMode, AuthOpen, AuthAllowList, AuthPassword)
	}
	return nil
}

// remoteIP is the address part of a connection's remote address.
func remoteIP(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

// admit decides whether a new connection from ip may have a session. It
// returns "" and counts the connection when it may, or the reason it may
// not. c.mu must be held.
func (c *Coordinator) admitLocked(ip string, now time.Time) string {
	if b, ok := c.bans[ip]; ok {
		if now.Before(b.Until) {
			return "banned"
		}
		delete(c.bans, ip)
	}
	if c.cfg.MaxConns > 0 && len(c.sessions)+len(c.v2) >= c.cfg.MaxConns {
		return "too many connections"
	}
	if c.cfg.MaxConnsPerIP > 0 && c.perIP[ip] >= c.cfg.MaxConnsPerIP {
		return "too many connections from this address"
	}
	c.perIP[ip]++
	return ""
}

// refuse tells a refused connection why in one Stratum error line and
// closes it.
func (c *Coordinator) refuse(conn net.Conn, reason string) {
	c.metrics.refused.WithLabelValues(reason).Inc()
	c.log.Info("refusing miner", "remote", conn.RemoteAddr().String(), "reason", reason)
	buf, _ := stratum.AppendResponse(nil, nil, nil, &stratum.Error{Code: stratum.CodeOther, Message: "connection refused: " + reason})
	conn.SetDeadline(c.cfg.Now().Add(time.Second)) // a TLS write first reads the handshake
	conn.Write(buf)
	conn.Close()
}

// Ban is one banned address, as Bans lists it: why, since when, until
// when, and the counts that earned it.
type Ban struct {
	IP     string    `json:"ip"`
	Reason string    `json:"reason"`
	Since  time.Time `json:"since"`
	Until  time.Time `json:"until"`
	// Connections of the address that tripped the reject rule within
	// BanWindow, the shares they sent that the rule counted, how many of
	// those were rejected, and their workers.
	Connections int      `json:"connections"`
	Shares      int      `json:"shares"`
	Rejected    int      `json:"rejected"`
	Workers     []string `json:"workers"`
}

// trip is one connection closed by the reject rule, kept for BanWindow
// against its address.
type trip struct {
	at               time.Time
	shares, rejected int
	worker           string
}

// rejectRule counts one connection's shares towards the reject rule:
// at least BanMinShares shares of which at least BanRejectRatio were
// rejected for the miner's own fault. Its connection's lock guards it.
type rejectRule struct{ shares, rejected int }

// note counts one share and reports whether the connection now trips the
// rule.
func (r *rejectRule) note(cfg *Config, rejected bool) bool {
	if cfg.BanMinShares < 0 {
		return false
	}
	r.shares++
	if rejected {
		r.rejected++
	}
	if r.shares < cfg.BanMinShares {
		return false
	}
	return float64(r.rejected) >= cfg.BanRejectRatio*float64(r.shares)
}

// closedForRejects judges the address of a connection that tripped the
// reject rule (its caller closes the connection): the worker is marked in
// the accounting, the trip is kept against the address for BanWindow, and
// the address is banned for BanDuration when it has BanIPAfter trips in
// that window, unless it is exempt.
func (c *Coordinator) closedForRejects(ip, remote, worker string, r rejectRule, now time.Time) {
	c.metrics.rejectCloses.Inc()
	c.stats.closedForRejects(worker, now)
	c.log.Warn("closing miner: shares mostly rejected", "remote", remote, "ip", ip, "worker", worker, "shares", r.shares, "rejected", r.rejected)
	exempt := c.exempt(ip)
	c.mu.Lock()
	kept := c.trips[ip][:0]
	for _, t := range c.trips[ip] {
		if now.Sub(t.at) < c.cfg.BanWindow {
			kept = append(kept, t)
		}
	}
	kept = append(kept, trip{at: now, shares: r.shares, rejected: r.rejected, worker: worker})
	c.trips[ip] = kept
	if len(c.trips) > sweepTripsOver {
		c.sweepTripsLocked(now)
	}
	var b *Ban
	if !exempt && c.cfg.BanIPAfter > 0 && len(kept) >= c.cfg.BanIPAfter {
		b = &Ban{IP: ip, Since: now, Until: now.Add(c.cfg.BanDuration), Connections: len(kept)}
		for _, t := range kept {
			b.Shares += t.shares
			b.Rejected += t.rejected
			if t.worker != "" && !slices.Contains(b.Workers, t.worker) {
				b.Workers = append(b.Workers, t.worker)
			}
		}
		b.Reason = fmt.Sprintf("%d connections within %v had mostly rejected shares (%d of %d)", b.Connections, c.cfg.BanWindow, b.Rejected, b.Shares)
		c.bans[ip] = b
		delete(c.trips, ip)
	}
	c.mu.Unlock()
	if b != nil {
		c.metrics.bans.Inc()
		c.log.Warn("banning address: connections mostly rejected", "ip", ip, "connections", b.Connections, "shares", b.Shares, "rejected", b.Rejected, "for", c.cfg.BanDuration)
	} else if exempt {
		c.log.Info("address exempt from bans", "ip", ip, "connections", len(kept))
	}
}

// sweepTripsOver is how many addresses with trips the coordinator keeps
// before it forgets those whose trips are all past the window.
const sweepTripsOver = 4096

// sweepTripsLocked forgets the addresses whose trips are all older than
// BanWindow. c.mu must be held.
func (c *Coordinator) sweepTripsLocked(now time.Time) {
	for ip, ts := range c.trips {
		if now.Sub(ts[len(ts)-1].at) >= c.cfg.BanWindow {
			delete(c.trips, ip)
		}
	}
}

// exempt reports whether ip is in one of the BanExempt networks.
func (c *Coordinator) exempt(ip string) bool {
	if len(c.cfg.BanExempt) == 0 {
		return false
	}
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, p := range c.cfg.BanExempt {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Banned reports whether ip is banned now.
func (c *Coordinator) Banned(ip string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, ok := c.bans[ip]
	return ok && c.cfg.Now().Before(b.Until)
}

// Bans lists the addresses banned now, ordered by address.
func (c *Coordinator) Bans() []Ban {
	now := c.cfg.Now()
	c.mu.Lock()
	out := make([]Ban, 0, len(c.bans))
	for ip, b := range c.bans {
		if !now.Before(b.Until) {
			delete(c.bans, ip)
			continue
		}
		cp := *b
		cp.Workers = slices.Clone(b.Workers)
		out = append(out, cp)
	}
	c.mu.Unlock()
	slices.SortFunc(out, func(a, b Ban) int { return strings.Compare(a.IP, b.IP) })
	return out
}

// Unban lifts the ban of ip, and forgets the trips counted against it;
// it reports whether ip was banned.
func (c *Coordinator) Unban(ip string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, ok := c.bans[ip]
	delete(c.bans, ip)
	delete(c.trips, ip)
	if ok && c.cfg.Now().Before(b.Until) {
		c.log.Info("ban lifted", "ip", ip)
		return true
	}
	return false
}

// banCountable says whether a rejection counts towards the reject rule.
// Not the miner's fault, so never counted: stale shares (blocks that lost
// a race among them), ledger failures, a job id this connection was sent
// and our own job changes have since dropped (expired), and a share too
// easy only for a job whose difficulty we have since lowered (eased).
func banCountable(reason string, expired, eased bool) bool {
	switch reason {
	case ReasonStale, ReasonLedger:
		return false
	case ReasonJobNotFound:
		return !expired
	case ReasonLowDifficulty:
		return !eased
	}
	return true
}

// authorized applies the authorization mode to a username and password;
// it returns "" when they pass and the reason otherwise.
func (c *Coordinator) authorized(user, password string) string {
	switch c.cfg.AuthMode {
	case AuthAllowList:
		base := ledger.AccountOf(user)
		if c.allow[user] || c.allow[base] {
			return ""
		}
		return fmt.Sprintf("user %q is not on the allow-list", user)
	case AuthPassword:
		if subtle.ConstantTimeCompare([]byte(password), []byte(c.cfg.Password)) == 1 {
			return ""
		}
		return fmt.Sprintf("wrong password for user %q", user)
	}
	return ""
}

// ListenTLS listens on addr for Stratum over TLS (stratum+ssl) with the
// PEM certificate chain and key in certFile and keyFile. Hand the
// listener to Serve, alongside a plain one if wanted. The TLS handshake
// happens on the session's first read, so the handshake deadline bounds
// it too.
func ListenTLS(addr, certFile, keyFile string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("TLS Stratum listener %q: %w", addr, err)
	}
	tln, err := WithTLS(ln, certFile, keyFile)
	if err != nil {
		ln.Close()
		return nil, err
	}
	return tln, nil
}

// WithTLS returns ln serving Stratum over TLS with the PEM certificate
// chain and key in certFile and keyFile, for a listener ListenTLS does
// not open itself (one that takes PROXY headers first, say).
func WithTLS(ln net.Listener, certFile, keyFile string) (net.Listener, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("TLS certificate %q / key %q: %w", certFile, keyFile, err)
	}
	return tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}), nil
}

// ParseNetworks reads a comma-separated list of networks, each in CIDR
// form (10.0.0.0/8, 2001:db8::/32) or a single address (a /32 or /128),
// as Config.BanExempt takes them. Spaces around entries and empty entries
// are skipped; an IPv4-mapped IPv6 entry is read as IPv4.
func ParseNetworks(list string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(list, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !strings.Contains(f, "/") {
			a, err := netip.ParseAddr(f)
			if err != nil || a.Zone() != "" {
				return nil, fmt.Errorf("network %q: want an address or CIDR such as 10.0.0.0/8 or 2001:db8::/32", f)
			}
			a = a.Unmap()
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("network %q: want an address or CIDR such as 10.0.0.0/8 or 2001:db8::/32", f)
		}
		if a := p.Addr(); a.Is4In6() {
			if p.Bits() < 96 {
				return nil, fmt.Errorf("network %q: an IPv4-mapped prefix needs at least 96 bits", f)
			}
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}
