package coordinator_test

import (
	"bufio"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/powcoord/powcoord/internal/coordinator"
	"github.com/powcoord/powcoord/internal/stratum"
)

// dialFrom connects to the harness from a chosen loopback source address
// (every 127.0.0.0/8 address is local on Linux).
func (h *harness) dialFrom(src string) *client {
	h.t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	conn, err := d.Dial("tcp", h.addr)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { conn.Close() })
	return &client{t: h.t, conn: conn, r: bufio.NewReader(conn), jobs: map[string]*stratum.Notify{}}
}

// expectRefused reads the refusal line of a refused connection and then
// its end.
func expectRefused(t *testing.T, c *client, want string) {
	t.Helper()
	m, err := c.readMsg()
	if err != nil {
		t.Fatalf("refused connection: reading the refusal: %v", err)
	}
	if e := m.ResponseError(); e == nil || !strings.Contains(e.Message, want) {
		t.Fatalf("refusal %s %s, want an error containing %q", m.Result, m.Error, want)
	}
	expectClosed(t, c)
}

// expectClosed reads until the connection ends; it fails when it does not
// end within the client's read deadline.
func expectClosed(t *testing.T, c *client) {
	t.Helper()
	for {
		_, err := c.readMsg()
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("connection still open")
		}
		return
	}
}

// waitSessions polls until the coordinator has n sessions.
func waitSessions(t *testing.T, h *harness, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for h.coord.SessionCount() != n {
		if time.Now().After(deadline) {
			t.Fatalf("sessions %d, want %d", h.coord.SessionCount(), n)
		}
		time.Sleep(time.Millisecond) // polling with a deadline
	}
}

func TestMaxConns(t *testing.T) {
	h := newHarness(t, harnessOpts{cfg: func(c *coordinator.Config) { c.MaxConns = 2 }})
	a, b := h.dial(), h.dial()
	a.ready("alice")
	b.ready("bob")
	expectRefused(t, h.dial(), "too many connections")
	// A freed slot serves an honest miner again.
	a.conn.Close()
	waitSessions(t, h, 1)
	if n := h.dial().ready("carol"); n == nil {
		t.Fatal("no job after a slot was freed")
	}
}

func TestMaxConnsPerIP(t *testing.T) {
	h := newHarness(t, harnessOpts{cfg: func(c *coordinator.Config) { c.MaxConnsPerIP = 2 }})
	h.dialFrom("127.0.0.1").ready("a1")
	h.dialFrom("127.0.0.1").ready("a2")
	expectRefused(t, h.dialFrom("127.0.0.1"), "from this address")
	// Another address is not affected.
	h.dialFrom("127.0.0.2").ready("b1")
	if got := h.coord.SessionCount(); got != 3 {
		t.Fatalf("sessions %d, want 3", got)
	}
}

// TestHandshakeTimeout: connections that do not subscribe and authorize
// are closed exactly HandshakeTimeout after they connected (virtual time);
// an honest miner is kept past it.
func TestHandshakeTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, harnessOpts{pipe: true, cfg: func(c *coordinator.Config) { c.HandshakeTimeout = 3 * time.Second }})
		start := time.Now()
		silent := h.dial()
		subOnly := h.dial()
		subOnly.subscribe() // never authorizes
		expectClosed(t, silent)
		expectClosed(t, subOnly)
		if d := time.Since(start); d != 3*time.Second {
			t.Fatalf("handshake deadline closed the connections after %v, want 3s", d)
		}
		// An honest miner that completes the handshake is kept past the
		// handshake deadline: its requests after it still get replies.
		c := h.dial()
		c.ready("alice")
		for range 12 {
			time.Sleep(500 * time.Millisecond) // an honest miner's traffic
			if m := c.call("mining.extranonce.subscribe", []any{}); string(m.Result) != "true" {
				t.Fatalf("honest miner answered %s", m.Result)
			}
		}
	})
}

// TestIdleTimeout: a session that says nothing after the handshake is
// closed IdleTimeout after its last line and a sixteenth of it (the slack
// that lets a busy session move its deadline once in a while instead of
// once a line, session.nextReadDeadline).
func TestIdleTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, harnessOpts{pipe: true, cfg: func(c *coordinator.Config) { c.IdleTimeout = 5 * time.Second }})
		c := h.dial()
		c.ready("alice")
		time.Sleep(4 * time.Second)
		c.call("mining.extranonce.subscribe", []any{}) // restarts the idle clock
		start := time.Now()
		expectClosed(t, c)
		if d := time.Since(start); d != 5*time.Second+5*time.Second/16 {
			t.Fatalf("idle session closed after %v, want 5.3125s", d)
		}
		waitSessions(t, h, 0)
		if n := h.dial().ready("bob"); n == nil {
			t.Fatal("no job after an idle close")
		}
	})
}

func TestAuthModes(t *testing.T) {
	authorize := func(c *client, user, pass string) (bool, int) {
		m := c.call("mining.authorize", []string{user, pass})
		if e := m.ResponseError(); e != nil {
			return false, e.Code
		}
		return string(m.Result) == "true", 0
	}
	t.Run("allowlist", func(t *testing.T) {
		h := newHarness(t, harnessOpts{cfg: func(c *coordinator.Config) {
			c.AuthMode = coordinator.AuthAllowList
			c.AllowList = []string{"alice", "bob.rig1"}
		}})
		c := h.dial()
		c.subscribe()
		for _, tc := range []struct {
			user string
			ok   bool
		}{{"mallory", false}, {"alice", true}, {"alice.rig7", true}, {"bob", false}, {"bob.rig1", true}, {"bob.rig2", false}} {
			ok, code := authorize(c, tc.user, "x")
			if ok != tc.ok || (!ok && code != stratum.CodeUnauthorized) {
				t.Errorf("authorize %q: %v code %d, want %v", tc.user, ok, code, tc.ok)
			}
		}
		if n := h.dial().ready("alice"); n == nil {
			t.Fatal("allowed miner got no job")
		}
	})
	t.Run("password", func(t *testing.T) {
		h := newHarness(t, harnessOpts{cfg: func(c *coordinator.Config) {
			c.AuthMode = coordinator.AuthPassword
			c.Password = "s3cret"
		}})
		c := h.dial()
		c.subscribe()
		if ok, code := authorize(c, "alice", "x"); ok || code != stratum.CodeUnauthorized {
			t.Fatalf("wrong password: %v %d", ok, code)
		}
		if ok, _ := authorize(c, "alice", "s3cret"); !ok {
			t.Fatal("right password refused")
		}
		if c.waitNotify() == nil {
			t.Fatal("no job after the right password")
		}
	})
	t.Run("config", func(t *testing.T) {
		for _, cfg := range []coordinator.Config{
			{AuthMode: coordinator.AuthAllowList},
			{AuthMode: coordinator.AuthPassword},
			{AuthMode: "guess"},
			{MaxConns: -1},
			{BanRejectRatio: 1.5},
		} {
			h := newHarness(t, harnessOpts{})
			cfg.Source, cfg.Store = h.chain, h.store
			if _, err := coordinator.New(cfg); err == nil {
				t.Errorf("config %+v accepted", cfg)
			}
		}
	})
}

func TestBan(t *testing.T) {
	const diff = 1e-7
	var offset atomic.Int64 // the test clock's lead over the real one
	now := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	h := newHarness(t, harnessOpts{shareDiff: diff, cfg: func(c *coordinator.Config) {
		c.BanMinShares = 10
		c.BanRejectRatio = 0.8
		c.BanDuration = time.Hour
		c.BanIPAfter = 1 // the first connection to trip the rule bans its address
		c.Now = now
	}})
	// An honest miner from another address, with a few rejects of its own.
	honest := h.dialFrom("127.0.0.2")
	hn := honest.ready("honest")

	bad := h.dialFrom("127.0.0.1")
	n := bad.ready("mallory")
	good := bad.solve(n, 1, diff, false, 0)
	good.worker = "mallory"
	if ok, code := bad.submit(good); !ok {
		t.Fatalf("valid share rejected with %d", code)
	}
	// Nine duplicates: 9 of 10 rejected crosses 0.8 at the tenth share.
	for i := 0; i < 8; i++ {
		if ok, code := bad.submit(good); ok || code != stratum.CodeDuplicate {
			t.Fatalf("duplicate %d: %v %d", i, ok, code)
		}
	}
	if h.coord.Banned("127.0.0.1") {
		t.Fatal("banned after 9 shares, before BanMinShares")
	}
	bad.send(`{"id":99,"method":"mining.submit","params":["mallory","` + good.job + `","` + good.en2 + `","` + good.ntime + `","` + good.nonce + `"]}`)
	expectClosed(t, bad)
	if !h.coord.Banned("127.0.0.1") {
		t.Fatal("127.0.0.1 not banned after 9 of 10 shares rejected")
	}
	expectRefused(t, h.dialFrom("127.0.0.1"), "banned")

	// The honest miner is served: its shares are accepted.
	for i := uint32(1); i <= 3; i++ {
		s := honest.solve(hn, i, diff, false, 0)
		s.worker = "honest"
		if ok, code := honest.submit(s); !ok {
			t.Fatalf("honest share %d rejected with %d", i, code)
		}
	}
	// The ban expires.
	offset.Store(int64(2 * time.Hour))
	if h.coord.Banned("127.0.0.1") {
		t.Fatal("ban did not expire")
	}
	if n := h.dialFrom("127.0.0.1").ready("mallory"); n == nil {
		t.Fatal("no job after the ban expired")
	}
}

// TestNoBanWhenDisabled: a negative BanMinShares never bans.
func TestNoBanWhenDisabled(t *testing.T) {
	h := newHarness(t, harnessOpts{cfg: func(c *coordinator.Config) { c.BanMinShares = -1 }})
	c := h.dial()
	n := c.ready("alice")
	for i := 0; i < 120; i++ {
		if ok, _ := c.submit(share{worker: "alice", job: n.JobID, en2: "0000000z", ntime: n.NTime, nonce: "00000000"}); ok {
			t.Fatal("malformed share accepted")
		}
	}
	if h.coord.Banned("127.0.0.1") {
		t.Fatal("banned with bans off")
	}
	if m := c.call("mining.extranonce.subscribe", []any{}); string(m.Result) != "true" {
		t.Fatalf("connection unusable: %s", m.Result)
	}
}
