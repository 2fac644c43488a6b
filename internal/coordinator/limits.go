package coordinator

import (
	"crypto/subtle"
	"crypto/tls"
	"fmt"
	"net"
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
	if until, ok := c.bans[ip]; ok {
		if now.Before(until) {
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

// ban refuses connections from ip until BanDuration has passed.
func (c *Coordinator) ban(ip string, now time.Time) {
	c.mu.Lock()
	c.bans[ip] = now.Add(c.cfg.BanDuration)
	c.mu.Unlock()
}

// Banned reports whether ip is banned now.
func (c *Coordinator) Banned(ip string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	until, ok := c.bans[ip]
	return ok && c.cfg.Now().Before(until)
}

// banCountable says whether a rejection counts towards a ban: stale
// shares and ledger failures are not the miner's fault.
func banCountable(reason string) bool {
	return reason != ReasonStale && reason != ReasonLedger
}

// noteShareLocked counts one share of the session towards the ban rule and
// reports whether the session should now be banned. s.mu must be held.
func (s *session) noteShareLocked(rejected bool) bool {
	if s.c.cfg.BanMinShares < 0 {
		return false
	}
	s.banTotal++
	if rejected {
		s.banRejected++
	}
	if s.banTotal < s.c.cfg.BanMinShares {
		return false
	}
	return float64(s.banRejected) >= s.c.cfg.BanRejectRatio*float64(s.banTotal)
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
