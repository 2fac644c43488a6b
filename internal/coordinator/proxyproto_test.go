package coordinator_test

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/powcoord/powcoord/internal/coordinator"
	"github.com/powcoord/powcoord/internal/proxyproto"
	"github.com/powcoord/powcoord/internal/sv2"
)

// behindProxy wraps a harness listener to take PROXY headers from
// 127.0.0.0/8, the address every test connection comes from.
func behindProxy(ln net.Listener) net.Listener {
	return proxyproto.NewListener(ln, proxyproto.Config{Trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
}

// dialProxied connects as a proxy would: the PROXY header, then the
// client's bytes.
func (h *harness) dialProxied(header string) *client {
	h.t.Helper()
	c := h.dial()
	if _, err := io.WriteString(c.conn, header); err != nil {
		h.t.Fatal(err)
	}
	return c
}

func workerRemote(t *testing.T, coord *coordinator.Coordinator, name string) string {
	t.Helper()
	for _, w := range coord.Status().Workers {
		if w.Name == name {
			return w.Remote
		}
	}
	t.Fatalf("no worker %q in the status", name)
	return ""
}

// TestProxyProtocolClientAddress: behind a trusted proxy, a V1 session is
// the miner's address: the status API shows it, and the per-IP limit
// counts it (two miners through one proxy address are two addresses; a
// second connection of the same miner address is refused and logged with
// it). A V2 connection's v2 header (IPv6) reaches the status the same way.
func TestProxyProtocolClientAddress(t *testing.T) {
	logs := &lockedLog{}
	h := newHarness(t, harnessOpts{listen: behindProxy, cfg: func(c *coordinator.Config) {
		c.MaxConnsPerIP = 1
		c.Logger = slog.New(slog.NewTextHandler(logs, nil))
	}})
	a := h.dialProxied("PROXY TCP4 203.0.113.7 198.51.100.1 40001 3333\r\n")
	a.ready("alice")
	b := h.dialProxied("PROXY TCP4 203.0.113.8 198.51.100.1 40002 3333\r\n")
	b.ready("bob")
	if got := workerRemote(t, h.coord, "alice"); got != "203.0.113.7:40001" {
		t.Fatalf("alice's remote %q, want the miner's 203.0.113.7:40001", got)
	}
	if got := workerRemote(t, h.coord, "bob"); got != "203.0.113.8:40002" {
		t.Fatalf("bob's remote %q, want 203.0.113.8:40002", got)
	}
	c := h.dialProxied("PROXY TCP4 203.0.113.7 198.51.100.1 40003 3333\r\n")
	m, err := c.readMsg()
	if err != nil || !strings.Contains(string(m.Error), "too many connections from this address") {
		t.Fatalf("second connection of 203.0.113.7: %+v %v", m, err)
	}
	if want := `msg="refusing miner" remote=203.0.113.7:40003 reason="too many connections from this address"`; !strings.Contains(logs.String(), want) {
		t.Fatalf("log lacks %s:\n%s", want, logs.String())
	}

	v2h := newV2Harness(t, harnessOpts{listen: behindProxy})
	nc, err := net.Dial("tcp", v2h.v2addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	hdr := proxyV2(netip.MustParseAddrPort("[2001:db8::7]:40004"), netip.MustParseAddrPort("[2001:db8::1]:3336"))
	if _, err := nc.Write(hdr); err != nil {
		t.Fatal(err)
	}
	raw := &tamperConn{Conn: nc}
	conn, err := sv2.ClientHandshake(raw, sv2.ClientConfig{Authority: sv2.XOnly(v2h.auth)})
	if err != nil {
		t.Fatal(err)
	}
	v := &v2client{t: t, raw: raw, conn: conn, jobs: map[uint32]*v2job{}}
	v.send(&sv2.SetupConnection{MinVersion: 2, MaxVersion: 2, Flags: 1})
	if _, ok := v.next().(*sv2.SetupConnectionSuccess); !ok {
		t.Fatal("no SetupConnection.Success")
	}
	v.open("carol", false)
	if got := workerRemote(t, v2h.coord, "carol"); got != "[2001:db8::7]:40004" {
		t.Fatalf("carol's remote %q, want [2001:db8::7]:40004", got)
	}
}

// proxyV2 is a version 2 PROXY header for TCP over IPv6.
func proxyV2(src, dst netip.AddrPort) []byte {
	b := []byte("\r\n\r\n\x00\r\nQUIT\n\x21\x21\x00\x24")
	s, d := src.Addr().As16(), dst.Addr().As16()
	b = append(append(b, s[:]...), d[:]...)
	return append(b, byte(src.Port()>>8), byte(src.Port()), byte(dst.Port()>>8), byte(dst.Port()))
}

// TestProxyHeaderFromUntrustedRefused: a PROXY header from an address
// not trusted to send one is not honoured: the V1 and the V2 connection
// are closed with a log line naming the peer's own address, and no
// session or worker takes the claimed address.
func TestProxyHeaderFromUntrustedRefused(t *testing.T) {
	logs := &lockedLog{}
	untrusted := func(ln net.Listener) net.Listener {
		return proxyproto.NewListener(ln, proxyproto.Config{Trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	}
	quiet := func(c *coordinator.Config) { c.Logger = slog.New(slog.NewTextHandler(logs, nil)) }
	h := newHarness(t, harnessOpts{listen: untrusted, cfg: quiet})
	c := h.dialProxied("PROXY TCP4 203.0.113.7 198.51.100.1 40001 3333\r\n")
	c.send(`{"id":1,"method":"mining.subscribe","params":[]}`)
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if line, err := bufio.NewReader(c.conn).ReadString('\n'); err == nil {
		t.Fatalf("V1 connection with an untrusted PROXY header answered %q", line)
	}
	v2h := newV2Harness(t, harnessOpts{listen: untrusted, cfg: quiet})
	nc, err := net.Dial("tcp", v2h.v2addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	nc.Write(append([]byte("PROXY TCP4 203.0.113.7 198.51.100.1 40001 3336\r\n"), make([]byte, sv2.EllSwiftSize)...))
	if n, err := nc.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("V2 connection with an untrusted PROXY header: %d bytes, %v", n, err)
	}
	for _, want := range []string{
		`msg="closing miner: PROXY header from an address not trusted to send one" remote=127.0.0.1:`,
		`msg="closing sv2 miner: PROXY header from an address not trusted to send one" remote=127.0.0.1:`,
	} {
		if !strings.Contains(logs.String(), want) {
			t.Fatalf("log lacks %s:\n%s", want, logs.String())
		}
	}
	if strings.Contains(logs.String(), "203.0.113.7") || h.coord.SessionCount()+v2h.coord.SessionCount() != 0 {
		t.Fatalf("the claimed address was used: %d sessions\n%s", h.coord.SessionCount()+v2h.coord.SessionCount(), logs.String())
	}
}
