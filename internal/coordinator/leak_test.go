package coordinator_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestSessionTeardownNoLeak: every goroutine a session starts ends when
// the session does, however it ends (client close, invalid JSON, an
// oversized line, a refusal).
func TestSessionTeardownNoLeak(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	warm := h.dial() // the first session starts nothing lasting, but be sure
	warm.ready("warm")
	warm.conn.Close()
	waitSessions(t, h, 0)
	base := goleak.IgnoreCurrent()

	var clients []*client
	for i := range 20 {
		c := h.dial()
		switch i % 4 {
		case 0:
			c.ready("alice")
		case 1:
			c.subscribe()
		case 2:
			c.send("{not json")
		case 3:
			c.send(string(make([]byte, 8192)))
		}
		clients = append(clients, c)
	}
	for _, c := range clients {
		c.conn.Close()
	}
	waitSessions(t, h, 0)
	// The event loop keeps its reader goroutines (at most 128) for the
	// next ready session (eventloop_linux.go); they are the loop's, not a
	// session's, and end with it.
	goleak.VerifyNone(t, base, goleak.IgnoreAnyFunction("github.com/powcoord/powcoord/internal/coordinator.(*eventLoop).reader"))
	h.stop()
	goleak.VerifyNone(t, base)
}
