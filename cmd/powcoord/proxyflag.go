package main

import (
	"flag"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/powcoord/powcoord/internal/proxyproto"
)

// proxyFlag is --proxy-protocol-from, registered by addProxyFlag for
// every command that serves miners (coordinator, frontend): the proxies
// whose connections start with a PROXY header (docs/proxy-protocol.md).
// Its value is checked when it is set.
type proxyFlag struct {
	prefixes []netip.Prefix
}

func (p *proxyFlag) String() string {
	if p == nil {
		return ""
	}
	s := make([]string, len(p.prefixes))
	for i, x := range p.prefixes {
		s[i] = x.String()
	}
	return strings.Join(s, ",")
}

func (p *proxyFlag) Set(v string) error {
	if strings.TrimSpace(v) == "" {
		p.prefixes = nil
		return nil
	}
	ps, err := proxyproto.ParsePrefixes(v)
	if err != nil {
		return err
	}
	p.prefixes = ps
	return nil
}

// addProxyFlag registers --proxy-protocol-from on fs.
func addProxyFlag(fs *flag.FlagSet) *proxyFlag {
	p := &proxyFlag{}
	fs.Var(p, "proxy-protocol-from", "take PROXY protocol v1/v2 headers (HAProxy send-proxy, send-proxy-v2) on every Stratum listener from these proxies: comma-separated CIDR `prefixes` or addresses (e.g. 10.0.0.5,fd00::/8). Their connections must start with one (else they are closed and logged) and count as the miner's address for bans, per-IP limits, logs and the API; a PROXY header from any other address is refused. Empty: none")
	return p
}

// wrap returns ln taking PROXY headers from the flag's proxies, each
// read within timeout (0: 10 s); ln itself when the flag is empty (or p
// is nil: a command without the flag).
func (p *proxyFlag) wrap(ln net.Listener, timeout time.Duration, log *slog.Logger) net.Listener {
	if p == nil || len(p.prefixes) == 0 {
		return ln
	}
	return proxyproto.NewListener(ln, proxyproto.Config{Trusted: p.prefixes, Timeout: timeout, Logger: log})
}
