package proxyproto

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

type lockedLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func listen(t *testing.T, trusted string, logs io.Writer) net.Listener {
	t.Helper()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p, err := ParsePrefixes(trusted)
	if err != nil {
		t.Fatal(err)
	}
	ln := NewListener(raw, Config{Trusted: p, Timeout: 5 * time.Second, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	t.Cleanup(func() { ln.Close() })
	return ln
}

func dial(t *testing.T, ln net.Listener, send string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, send); err != nil {
		t.Fatal(err)
	}
	return c
}

func accept(t *testing.T, ln net.Listener) net.Conn {
	t.Helper()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

func readN(t *testing.T, c net.Conn, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestListenerTrustedProxy: from a trusted address, a connection without
// a valid header is closed and logged, never handed out; one held by a
// proxy that has sent nothing yet holds up no other; a connection with a
// header is handed out with the client's address as RemoteAddr, the
// address it reached as LocalAddr, its file descriptor reachable for an
// event loop, and exactly the bytes after the header.
func TestListenerTrustedProxy(t *testing.T) {
	logs := &lockedLog{}
	ln := listen(t, "127.0.0.0/8", logs)
	silent := dial(t, ln, "") // a proxy that has not sent its header yet
	bad := dial(t, ln, `{"id":1,"method":"mining.subscribe","params":[]}`+"\n")
	dial(t, ln, "PROXY TCP4 203.0.113.7 198.51.100.1 40001 3333\r\n"+`{"id":1}`)
	c := accept(t, ln)
	if got := c.RemoteAddr().String(); got != "203.0.113.7:40001" {
		t.Fatalf("RemoteAddr %s, want the client's 203.0.113.7:40001", got)
	}
	if got := c.LocalAddr().String(); got != "198.51.100.1:3333" {
		t.Fatalf("LocalAddr %s, want 198.51.100.1:3333", got)
	}
	if _, ok := c.(syscall.Conn); !ok {
		t.Fatal("a TCP connection's descriptor is hidden")
	}
	if pc, ok := c.(sysConn); !ok || pc.Header().Version != 1 || !strings.HasPrefix(pc.ProxyAddr().String(), "127.0.0.1:") {
		t.Fatalf("%T: header or proxy address lost", c)
	}
	if got := readN(t, c, 8); got != `{"id":1}` {
		t.Fatalf("client bytes %q", got)
	}
	// The connection without a header was closed.
	if n, err := bad.Read(make([]byte, 1)); err == nil {
		t.Fatalf("headerless connection from a trusted proxy still open (%d bytes)", n)
	}
	if want := `msg="closing connection: no valid PROXY header from a trusted proxy"`; !strings.Contains(logs.String(), want) || !strings.Contains(logs.String(), "not a PROXY protocol header") {
		t.Fatalf("log:\n%s", logs.String())
	}
	// The silent one gets its header late (v2 now) and is handed out.
	silent.Write(v2(t, `0d0a0d0a000d0a515549540a 21 21 0024
		20010db8000000000000000000000042 20010db8000000000000000000000001 9c41 0d05`))
	silent.Write([]byte("rest"))
	c = accept(t, ln)
	if got := c.RemoteAddr().String(); got != "[2001:db8::42]:40001" {
		t.Fatalf("v2 RemoteAddr %s", got)
	}
	if got := readN(t, c, 4); got != "rest" {
		t.Fatalf("client bytes %q", got)
	}
}

// TestListenerUntrustedPassesThrough: a connection from an address not in
// the list is handed out untouched, its own address and every byte
// (a PROXY header included: it is not honoured) as sent.
func TestListenerUntrustedPassesThrough(t *testing.T) {
	ln := listen(t, "10.0.0.0/8, 192.0.2.1", io.Discard)
	const send = "PROXY TCP4 203.0.113.7 198.51.100.1 40001 3333\r\n"
	cl := dial(t, ln, send)
	c := accept(t, ln)
	if c.RemoteAddr().String() != cl.LocalAddr().String() {
		t.Fatalf("RemoteAddr %s, want the peer's own %s", c.RemoteAddr(), cl.LocalAddr())
	}
	if _, ok := c.(*net.TCPConn); !ok {
		t.Fatalf("untrusted connection wrapped: %T", c)
	}
	if got := readN(t, c, len(send)); got != send {
		t.Fatalf("bytes %q", got)
	}
}

func TestParsePrefixes(t *testing.T) {
	p, err := ParsePrefixes(" 10.0.0.0/8,192.0.2.1 , fd00::/8,::ffff:198.51.100.9,10.1.2.3/16")
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.1/32"), netip.MustParsePrefix("fd00::/8"),
		netip.MustParsePrefix("198.51.100.9/32"), netip.MustParsePrefix("10.1.0.0/16")}
	if err != nil || len(p) != len(want) {
		t.Fatalf("%v %v", p, err)
	}
	for i := range want {
		if p[i] != want[i] {
			t.Fatalf("entry %d: %v, want %v", i, p[i], want[i])
		}
	}
	for in, mention := range map[string]string{
		"10.0.0.0/8,haproxy.local": `proxy address "haproxy.local"`,
		"10.0.0.0/33":              `proxy address "10.0.0.0/33"`,
		" , ":                      "no CIDR prefix or IP address given",
	} {
		if _, err := ParsePrefixes(in); err == nil || !strings.Contains(err.Error(), mention) {
			t.Errorf("%q: %v, want an error mentioning %q", in, err, mention)
		}
	}
}
