package proxyproto

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ParsePrefixes parses a comma-separated list of CIDR prefixes (a bare
// address stands for itself alone: /32 or /128), as --proxy-protocol-from
// takes it. An empty list is an error; so is any entry that is neither,
// named in the error.
func ParsePrefixes(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, e := range strings.Split(s, ",") {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		if p, err := netip.ParsePrefix(e); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(e)
		if err != nil || a.Zone() != "" {
			return nil, fmt.Errorf("proxy address %q: not a CIDR prefix (10.0.0.0/8, fd00::/8) or an IP address", e)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("proxy addresses %q: no CIDR prefix or IP address given", s)
	}
	return out, nil
}

// Config configures NewListener.
type Config struct {
	// Trusted are the proxies' addresses: a connection from one of them
	// must start with a valid PROXY header, and gets the client's
	// address from it; any other connection is passed on untouched.
	Trusted []netip.Prefix
	// Timeout bounds the reading of a trusted connection's header
	// (default 10 s).
	Timeout time.Duration
	// Logger receives a line for each trusted connection closed for a
	// missing or bad header (default slog.Default()).
	Logger *slog.Logger
}

// NewListener wraps ln: a connection from a trusted address is handed
// out by Accept only once its PROXY header has been read (each on its own
// goroutine, so a slow proxy holds up no other connection), with the
// header's client address as its RemoteAddr and the address the client
// reached as its LocalAddr; one without a valid header is closed and
// logged, never handed out. Other connections are handed out as they
// come. With no trusted address, ln itself is returned.
func NewListener(ln net.Listener, cfg Config) net.Listener {
	if len(cfg.Trusted) == 0 {
		return ln
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	l := &listener{Listener: ln, cfg: cfg, out: make(chan accepted), done: make(chan struct{})}
	go l.acceptLoop()
	return l
}

type accepted struct {
	conn net.Conn
	err  error
}

type listener struct {
	net.Listener
	cfg       Config
	out       chan accepted
	done      chan struct{}
	closeOnce sync.Once
}

// Accept returns the next connection: an untrusted one as it came, a
// trusted one after its header.
func (l *listener) Accept() (net.Conn, error) {
	select {
	case a := <-l.out:
		return a.conn, a.err
	case <-l.done:
		return nil, fmt.Errorf("proxyproto: accept on %s: %w", l.Addr(), net.ErrClosed)
	}
}

// Close closes the listener; connections whose header is still being
// read are closed when it has been.
func (l *listener) Close() error {
	err := l.Listener.Close()
	l.closeOnce.Do(func() { close(l.done) })
	return err
}

func (l *listener) acceptLoop() {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			// Handed to the caller one by one, as the listener would:
			// Accept's caller decides (and backs off) as before.
			select {
			case l.out <- accepted{err: err}:
			case <-l.done:
				return
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if !l.trusted(c.RemoteAddr()) {
			l.deliver(c)
			continue
		}
		go l.readHeader(c)
	}
}

func (l *listener) deliver(c net.Conn) {
	select {
	case l.out <- accepted{conn: c}:
	case <-l.done:
		c.Close()
	}
}

func (l *listener) trusted(a net.Addr) bool {
	ip := addrOf(a)
	for _, p := range l.cfg.Trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// addrOf is the IP address of a, IPv4-mapped IPv6 unmapped.
func addrOf(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(ta.IP)
		return ip.Unmap()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap.Addr().Unmap()
}

func (l *listener) readHeader(c net.Conn) {
	c.SetReadDeadline(time.Now().Add(l.cfg.Timeout))
	h, err := Read(c)
	c.SetReadDeadline(time.Time{})
	if err != nil {
		l.cfg.Logger.Info("closing connection: no valid PROXY header from a trusted proxy", "remote", c.RemoteAddr().String(), "err", err)
		c.Close()
		return
	}
	l.deliver(wrap(c, h))
}

// Conn is a connection that came with a PROXY header.
type Conn struct {
	net.Conn
	header        Header
	remote, local net.Addr
}

// sysConn is a Conn over a connection with a file descriptor: it is
// passed on (an event loop may poll it), since Read never buffers past
// the header.
type sysConn struct{ *Conn }

func (c sysConn) SyscallConn() (syscall.RawConn, error) {
	return c.Conn.Conn.(syscall.Conn).SyscallConn()
}

// CloseWrite shuts the sending side, where the connection can.
func (c *Conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

func wrap(c net.Conn, h Header) net.Conn {
	pc := &Conn{Conn: c, header: h, remote: c.RemoteAddr(), local: c.LocalAddr()}
	if h.Source.IsValid() {
		pc.remote = net.TCPAddrFromAddrPort(h.Source)
		pc.local = net.TCPAddrFromAddrPort(h.Destination)
	}
	if _, ok := c.(syscall.Conn); ok {
		return sysConn{pc}
	}
	return pc
}

// RemoteAddr is the client's address from the header (the proxy's when
// the header carried none).
func (c *Conn) RemoteAddr() net.Addr { return c.remote }

// LocalAddr is the address the client reached, from the header (the
// connection's own when the header carried none).
func (c *Conn) LocalAddr() net.Addr { return c.local }

// Header returns the connection's PROXY header.
func (c *Conn) Header() Header { return c.header }

// ProxyAddr is the proxy's address: the connection's own remote address.
func (c *Conn) ProxyAddr() net.Addr { return c.Conn.RemoteAddr() }
