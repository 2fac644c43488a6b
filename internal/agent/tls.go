package agent

import (
	"context"
	"crypto/tls"
	"net"
)

// dial connects to addr, a (possibly redirected) address of pool p, over
// TLS when p is a stratum+ssl pool. The TLS handshake completes before
// dial returns, within the dial timeout.
func (a *Agent) dial(ctx context.Context, p pool, addr string) (net.Conn, error) {
	nd := &net.Dialer{Timeout: dialTimeout}
	if !p.tls {
		return nd.DialContext(ctx, "tcp", addr)
	}
	cfg := &tls.Config{}
	if a.cfg.TLSConfig != nil {
		cfg = a.cfg.TLSConfig.Clone()
	}
	if cfg.ServerName == "" {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		cfg.ServerName = host
	}
	td := tls.Dialer{NetDialer: nd, Config: cfg}
	return td.DialContext(ctx, "tcp", addr)
}
