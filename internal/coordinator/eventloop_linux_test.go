//go:build linux

package coordinator_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/powcoord/powcoord/internal/coordinator"
	"github.com/powcoord/powcoord/internal/stratum"
)

// TestEventLoopIdleSessions: on Linux, idle TCP sessions wait on the event
// loop, not on goroutines of their own; they still get work, answer
// requests split across writes in any way, and a line over the limit
// still closes the connection.
func TestEventLoopIdleSessions(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	warm := h.dial()
	warm.ready("warm") // starts the event loop
	before := runtime.NumGoroutine()
	var clients []*client
	for range 400 {
		c := h.dial()
		c.ready("alice")
		clients = append(clients, c)
	}
	waitSessions(t, h, 401)
	// The goroutines that read the handshakes end on their own; the
	// loop's readers (at most 128, fewer here: two cores) stay for
	// whichever session is ready next.
	for deadline := time.Now().Add(5 * time.Second); runtime.NumGoroutine()-before > 128+10; {
		if time.Now().After(deadline) {
			t.Fatalf("400 idle sessions hold %d more goroutines, want none of their own", runtime.NumGoroutine()-before)
		}
		time.Sleep(time.Millisecond) // polling with a deadline
	}
	// A request dribbled in one byte a write, then two in one write.
	c := clients[7]
	line := `{"id":41,"method":"mining.extranonce.subscribe","params":[]}`
	for i := range len(line) {
		if _, err := io.WriteString(c.conn, line[i:i+1]); err != nil {
			t.Fatal(err)
		}
	}
	c.send("")
	m, err := c.readMsg()
	if err != nil || string(m.ID) != "41" || string(m.Result) != "true" {
		t.Fatalf("dribbled request: %+v %v", m, err)
	}
	c.send(`{"id":42,"method":"mining.extranonce.subscribe","params":[]}` + "\r\n" + `{"id":43,"method":"mining.extranonce.subscribe","params":[]}`)
	for _, id := range []string{"42", "43"} {
		if m, err := c.readMsg(); err != nil || string(m.ID) != id {
			t.Fatalf("want answer %s: %+v %v", id, m, err)
		}
	}
	// Over the 4096-byte limit, in pieces: the connection is closed.
	bad := clients[8]
	for range 5 {
		io.WriteString(bad.conn, strings.Repeat("x", 1000))
	}
	bad.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := bufio.NewReader(bad.conn).ReadString('\n'); !errors.Is(err, io.EOF) {
		t.Fatalf("over-long line: connection not closed (%v)", err)
	}
	waitSessions(t, h, 400)
	for _, c := range clients {
		c.conn.Close()
	}
	waitSessions(t, h, 1)
}

// TestEventLoopHandshakeTimeout: a TCP session on the event loop that does
// not finish its handshake in time is closed by its timer.
func TestEventLoopHandshakeTimeout(t *testing.T) {
	h := newHarness(t, harnessOpts{cfg: func(c *coordinator.Config) { c.HandshakeTimeout = 200 * time.Millisecond }})
	c := h.dial()
	c.subscribe()
	start := time.Now()
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c.conn)
	for {
		if _, err := r.ReadString('\n'); err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatalf("want the coordinator to close, got %v", err)
			}
			break
		}
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("closed after %v, want about 200ms", d)
	}
	waitSessions(t, h, 0)
}

// TestEventLoopIdleTimeout: every line a TCP session on the event loop
// sends moves its read deadline (the loop's sweeper closes a session
// only once its deadline passed, never before); silent for IdleTimeout,
// it is closed.
func TestEventLoopIdleTimeout(t *testing.T) {
	const idle = 300 * time.Millisecond
	h := newHarness(t, harnessOpts{cfg: func(c *coordinator.Config) { c.IdleTimeout = idle }})
	c := h.dial()
	c.ready("alice")
	// Five lines 100 ms apart: 500 ms in all, past one IdleTimeout, and
	// each answered.
	for range 5 {
		time.Sleep(idle / 3)
		if m := c.call("mining.extranonce.subscribe", []any{}); string(m.Result) != "true" {
			t.Fatalf("session closed or refused while it was talking: %s %s", m.Result, m.Error)
		}
	}
	last := time.Now()
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c.conn)
	for {
		if _, err := r.ReadString('\n'); err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatalf("want the coordinator to close, got %v", err)
			}
			break
		}
	}
	if d := time.Since(last); d < idle || d > 2*time.Second {
		t.Fatalf("closed %v after the last line, want from %v to about %v", d, idle, idle+idle/16)
	}
	waitSessions(t, h, 0)
}

// gatedListener accepts nothing until open is closed: the connections
// made before wait in the kernel with what their clients sent.
type gatedListener struct {
	net.Listener
	open chan struct{}
}

func (g gatedListener) Accept() (net.Conn, error) {
	<-g.open
	return g.Listener.Accept()
}

// TestEventLoopLastLineThenClose: a miner that sends a line and shuts
// its side ends its session then, not at a timeout. When the line and the
// end of the stream wait in the socket together (here: sent before the
// coordinator accepted), the read that takes the line is short and no
// edge follows it, so the loop must read on to the end of the stream of a
// peer that has hung up. It did not: such sessions stayed open until
// their read deadline, and a graceful shutdown waited its whole linger on
// a miner that had closed at once.
func TestEventLoopLastLineThenClose(t *testing.T) {
	gate := make(chan struct{})
	h := newHarness(t, harnessOpts{listen: func(ln net.Listener) net.Listener { return gatedListener{ln, gate} }})
	const n = 400
	var clients []*client
	for range n {
		c := h.dial()
		b, _ := stratum.AppendRequest(nil, 1, "mining.subscribe", []string{"last-line"})
		if _, err := c.conn.Write(b); err != nil {
			t.Fatal(err)
		}
		if err := c.conn.(*net.TCPConn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	close(gate)
	for i, c := range clients {
		m, err := c.readMsg()
		if err != nil {
			t.Fatalf("client %d: no answer to mining.subscribe: %v", i, err)
		}
		if string(m.ID) != "1" {
			t.Fatalf("client %d: answer %s, want the answer to mining.subscribe", i, m.ID)
		}
		// readMsg waits 10 s; the handshake timeout is 30 s.
		if _, err := c.readMsg(); !errors.Is(err, io.EOF) {
			t.Fatalf("client %d: after the answer: %v, want the coordinator to close (io.EOF)", i, err)
		}
	}
}
