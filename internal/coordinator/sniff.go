package coordinator

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/powcoord/powcoord/internal/sv2"
)

// One port for V1 and V2 (docs/stratum-v2.md, "One port"): a Stratum V1
// miner's first bytes are a JSON object, `{"`, with optional whitespace
// before and between; a V2 miner's are the 64-byte ElligatorSwift key of
// the Noise handshake, uniformly random. A V2 key that starts with those
// two bytes (about 1 in 65536, a little more counting whitespace) is taken
// for V1 and closed at the handshake timeout; the miner's next attempt
// draws a fresh key. Anything else goes to the Noise handshake, which
// closes garbage with a log line.

// sniffMax is how many bytes the detection reads at most: leading
// whitespace beyond it is not V1.
const sniffMax = 16

// sniffV1 tells from b, the first bytes a connection sent, whether it
// speaks Stratum V1 (v1) or not; decided is false while b could still be
// either (only whitespace, or whitespace and '{' so far).
func sniffV1(b []byte) (v1, decided bool) {
	i := skipSpace(b, 0)
	if i == len(b) {
		return false, false
	}
	if b[i] != '{' {
		return false, true
	}
	i = skipSpace(b, i+1)
	if i == len(b) {
		return false, false
	}
	return b[i] == '"', true
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++
	}
	return i
}

// sniff reads the first bytes of conn until sniffV1 decides (or sniffMax
// bytes came) and returns the connection to hand on: conn itself when the
// bytes could be peeked without reading them (TCP on Unix: the session
// then reads them again, and a V1 session can go on the event loop), else
// conn with the bytes read replayed before the rest.
func sniff(conn net.Conn) (net.Conn, bool, error) {
	var buf [sniffMax]byte
	if n, err := peek(conn, buf[:]); err != nil {
		return conn, false, err
	} else if n > 0 {
		if v1, decided := sniffV1(buf[:n]); decided {
			return conn, v1, nil
		}
	}
	n := 0
	for {
		m, err := conn.Read(buf[n:])
		n += m
		v1, decided := sniffV1(buf[:n])
		if decided || n == len(buf) {
			return &replayConn{Conn: conn, head: buf[:n:n]}, v1, nil
		}
		if err != nil {
			if errors.Is(err, io.EOF) && n > 0 {
				err = io.ErrUnexpectedEOF
			}
			return conn, false, err
		}
	}
}

// replayConn is a connection whose first bytes were read already: Read
// returns them before the rest.
type replayConn struct {
	net.Conn
	head []byte
}

func (r *replayConn) Read(p []byte) (int, error) {
	if len(r.head) > 0 {
		n := copy(p, r.head)
		r.head = r.head[n:]
		return n, nil
	}
	return r.Conn.Read(p)
}

// WithSV2Detect returns ln marked to serve Stratum V1 and V2 both, telling
// them apart by each connection's first bytes, V2 with srv's keys: what
// --stratum is. WithSV2 is for a V2-only listener.
func WithSV2Detect(ln net.Listener, srv *sv2.Server) net.Listener {
	return &sv2Listener{Listener: ln, srv: srv, detect: true}
}

// serveDetected runs one connection of a WithSV2Detect listener, off the
// accept loop: it waits (at most the handshake timeout) for the first
// bytes, then serves the connection as V1 or V2. done is called once
// the connection is served, or handed to the event loop.
func (c *Coordinator) serveDetected(ctx context.Context, conn net.Conn, ln net.Listener, srv *sv2.Server, loop func() *eventLoop, done func()) {
	handedOn := false
	defer func() {
		if !handedOn {
			done()
		}
	}()
	// A banned address is refused at once, not after its first bytes.
	if c.Banned(remoteIP(conn.RemoteAddr())) {
		c.refuse(conn, "banned")
		return
	}
	conn.SetReadDeadline(c.cfg.Now().Add(c.cfg.HandshakeTimeout))
	// A shutdown ends the wait at once.
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Unix(1, 0)) })
	conn, v1, err := sniff(conn)
	if !stop() || ctx.Err() != nil {
		conn.Close()
		return
	}
	if err != nil {
		c.log.Info("closing miner: no stratum v1 or v2 start within the handshake timeout", "remote", conn.RemoteAddr().String(), "err", err)
		conn.Close()
		return
	}
	conn.SetReadDeadline(time.Time{})
	if !v1 {
		c.serveSV2(ctx, conn, ln, srv)
		return
	}
	s, reason := c.newSession(conn, ln)
	if s == nil {
		c.refuse(conn, reason)
		return
	}
	if _, fd := conn.(syscall.Conn); fd && loop().add(ctx, s, done) {
		handedOn = true
		return
	}
	s.serve(ctx)
}
