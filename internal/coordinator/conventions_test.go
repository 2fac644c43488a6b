package coordinator_test

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/powcoord/powcoord/internal/coordinator"
	"github.com/powcoord/powcoord/internal/stratum"
)

// authorizePass authorizes user with a password and returns the answer.
func (c *client) authorizePass(user, pass string) *stratum.Message {
	c.t.Helper()
	return c.call("mining.authorize", []string{user, pass})
}

// firstDifficulty reads up to the first job and returns the difficulty
// the last mining.set_difficulty before it set (0 for none).
func (c *client) firstDifficulty() float64 {
	c.t.Helper()
	var d float64
	for {
		m := c.next()
		switch m.Method {
		case "mining.set_difficulty":
			d = c.diff
		case "mining.notify":
			return d
		}
	}
}

// noDifficultyChange checks, with a round trip, that nothing but job
// notifications arrived: no mining.set_difficulty.
func (c *client) noDifficultyChange() {
	c.t.Helper()
	c.call("mining.extranonce.subscribe", []any{})
	for _, m := range c.queue {
		if m.Method == "mining.set_difficulty" {
			c.t.Fatalf("unexpected mining.set_difficulty %s", m.Params)
		}
	}
	c.queue = nil
}

func TestPasswordFixedDifficulty(t *testing.T) {
	h := newHarness(t, harnessOpts{shareDiff: 1e-7})

	c := h.dial()
	c.subscribe()
	if m := c.authorizePass("alice.rig1", "x,d=0.5"); string(m.Result) != "true" {
		t.Fatalf("authorize with d=0.5: %s %s", m.Result, m.Error)
	}
	if d := c.firstDifficulty(); d != 0.5 {
		t.Fatalf("first difficulty %v, want d=0.5", d)
	}
	// A suggestion does not override the operator's d=.
	if m := c.call("mining.suggest_difficulty", []any{2}); string(m.Result) != "true" {
		t.Fatalf("suggest_difficulty after d=: %s %s", m.Result, m.Error)
	}
	c.noDifficultyChange()
	for _, w := range h.coord.Status().Workers {
		if w.Name == "alice.rig1" && w.Difficulty != 0.5 {
			t.Fatalf("status difficulty %v, want 0.5", w.Difficulty)
		}
	}

	// d= first in the list, other fields kept; a suggestion before it
	// loses to it too.
	c2 := h.dial()
	c2.call("mining.suggest_difficulty", []any{0.001})
	c2.subscribe()
	c2.authorizePass("bob", "d=0.0625,foo=bar")
	if d := c2.firstDifficulty(); d != 0.0625 {
		t.Fatalf("first difficulty %v, want d=0.0625", d)
	}

	// A miner cannot ask for more than MaxDifficulty (1e15 by default)
	// nor for less than the floor (MinDifficulty, 1e-9).
	for pw, want := range map[string]float64{"d=1e300": 1e15, "d=1e-30": 1e-9} {
		c := h.dial()
		c.subscribe()
		c.authorizePass("dave", pw)
		if d := c.firstDifficulty(); d != want {
			t.Errorf("password %q: first difficulty %v, want %v", pw, d, want)
		}
	}

	// Bad values are refused, naming the value.
	for _, pw := range []string{"d=abc", "x,d=0", "d=-1", "d=", "d=inf", "d=NaN"} {
		c := h.dial()
		c.subscribe()
		m := c.authorizePass("carol", pw)
		e := m.ResponseError()
		if string(m.Result) != "false" || e == nil || e.Code != stratum.CodeOther || !strings.Contains(e.Message, "d="+strings.SplitN(pw, "d=", 2)[1]) {
			t.Errorf("password %q answered %s %s, want false with error 20 naming the value", pw, m.Result, m.Error)
		}
	}
}

func TestPasswordFixedDifficultyWithAuthPassword(t *testing.T) {
	h := newHarness(t, harnessOpts{cfg: func(c *coordinator.Config) {
		c.AuthMode, c.Password = coordinator.AuthPassword, "s3cret"
	}})
	for pw, want := range map[string]string{"s3cret,d=0.25": "true", "d=0.25,s3cret": "true", "s3cret": "true", "wrong,d=0.25": "false", "d=0.25": "false"} {
		c := h.dial()
		c.subscribe()
		if m := c.authorizePass("alice", pw); string(m.Result) != want {
			t.Errorf("password %q answered %s %s, want %s", pw, m.Result, m.Error, want)
		}
	}
}

func TestListenerMinDifficulty(t *testing.T) {
	h := newHarness(t, harnessOpts{shareDiff: 1e-7, listen: func(ln net.Listener) net.Listener {
		return coordinator.WithMinDifficulty(ln, 0.01)
	}})
	// The starting difficulty is raised to the floor.
	c := h.dial()
	c.subscribe()
	c.authorize("alice")
	if d := c.firstDifficulty(); d != 0.01 {
		t.Fatalf("first difficulty %v, want the floor 0.01", d)
	}
	// A suggestion below the floor leaves it there (no new job either);
	// one above it is taken.
	c.call("mining.suggest_difficulty", []any{0.001})
	c.noDifficultyChange()
	c.call("mining.suggest_difficulty", []any{0.05})
	if m := c.next(); m.Method != "mining.set_difficulty" || c.diff != 0.05 {
		t.Fatalf("after suggesting 0.05: %s %v", m.Method, c.diff)
	}
	// d= below the floor is raised to it.
	c2 := h.dial()
	c2.subscribe()
	c2.authorizePass("bob", "x,d=0.005")
	if d := c2.firstDifficulty(); d != 0.01 {
		t.Fatalf("d=0.005 under a 0.01 floor gave %v", d)
	}
	if ln := newPipeListener(); coordinator.WithMinDifficulty(ln, 0) != net.Listener(ln) {
		t.Fatal("WithMinDifficulty(ln, 0) must return ln itself")
	}
}

// TestSuggestDifficultyOrdering: mining.suggest_difficulty is honoured
// before subscribe, between subscribe and authorize, after authorize, as
// a number, a string, fractional, and as a notification (null id).
func TestSuggestDifficultyOrdering(t *testing.T) {
	h := newHarness(t, harnessOpts{shareDiff: 1e-7})

	before := h.dial()
	if m := before.call("mining.suggest_difficulty", []any{"0.25"}); string(m.Result) != "true" {
		t.Fatalf("suggest before subscribe: %s %s", m.Result, m.Error)
	}
	before.subscribe()
	before.authorize("a")
	if d := before.firstDifficulty(); d != 0.25 {
		t.Fatalf("suggested 0.25 before subscribe, first difficulty %v", d)
	}

	note := h.dial()
	note.subscribe()
	note.send(`{"id":null,"method":"mining.suggest_difficulty","params":[0.000125]}`)
	note.authorize("b")
	if d := note.firstDifficulty(); d != 0.000125 {
		t.Fatalf("suggested 0.000125 as a notification, first difficulty %v", d)
	}

	after := h.dial()
	after.ready("c")
	after.call("mining.suggest_difficulty", []any{1.5})
	if m := after.next(); m.Method != "mining.set_difficulty" || after.diff != 1.5 {
		t.Fatalf("after authorize: %s %v", m.Method, after.diff)
	}
	// The new job follows at once, and a share of the old job is judged
	// at the old job's difficulty.
	after.waitNotify()
	// The same value again changes nothing: no new job.
	after.call("mining.suggest_difficulty", []any{"1.5"})
	after.noDifficultyChange()
}

// TestFixedDifficultyVardiffOff: with vardiff on, a session retargets
// after its interval; one with d= keeps its difficulty (virtual time).
func TestFixedDifficultyVardiffOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, harnessOpts{pipe: true, shareDiff: 1e-6, cfg: func(c *coordinator.Config) {
			c.SharesPerMinute, c.VardiffInterval = 20, 30*time.Second
		}})
		free := h.dial()
		free.ready("free")
		fixed := h.dial()
		fixed.subscribe()
		fixed.authorizePass("fixed", "x,d=0.000002")
		for fixed.lastJob == nil {
			fixed.next()
		}
		fixed.queue = nil
		time.Sleep(31 * time.Second) // past the vardiff interval
		for i, c := range []*client{free, fixed} {
			sh := c.solve(c.lastJob, uint32(i), c.diff, false, 0)
			sh.worker = []string{"free", "fixed"}[i]
			if ok, code := c.submit(sh); !ok {
				t.Fatalf("share refused (%d)", code)
			}
		}
		// 1 share in 31 s against 20 a minute: vardiff lowers free's
		// difficulty 4× (its largest step).
		free.call("mining.extranonce.subscribe", []any{})
		if free.diff != 0.25e-6 {
			t.Fatalf("vardiff session difficulty %v, want 2.5e-07", free.diff)
		}
		fixed.noDifficultyChange()
		if fixed.diff != 2e-6 {
			t.Fatalf("d= session difficulty %v, want 2e-06", fixed.diff)
		}
	})
}

// reconnectOf reads notifications until client.reconnect and returns its
// params, then checks the connection ends.
func reconnectOf(t *testing.T, c *client) []any {
	t.Helper()
	for {
		m := c.next()
		if m.Method != "client.reconnect" {
			continue
		}
		var p []any
		if err := json.Unmarshal(m.Params, &p); err != nil {
			t.Fatalf("client.reconnect params %s: %v", m.Params, err)
		}
		if m.ID != nil && string(m.ID) != "null" {
			t.Fatalf("client.reconnect id %s, want null", m.ID)
		}
		expectClosed(t, c)
		return p
	}
}

func TestReconnectOnShutdown(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	c := h.dial()
	c.ready("alice")
	idle := h.dial() // never given work: just closed
	waitSessions(t, h, 2)
	h.stop()
	_, port, _ := net.SplitHostPort(h.addr)
	p := reconnectOf(t, c)
	if want := []any{"127.0.0.1", mustAtof(t, port), 0.0}; !equalAny(p, want) {
		t.Fatalf("client.reconnect params %v, want %v", p, want)
	}
	if m, err := idle.readMsg(); err == nil {
		t.Fatalf("session without work got %s %s", m.Method, m.Params)
	}
}

func TestReconnectConfigured(t *testing.T) {
	h := newHarness(t, harnessOpts{cfg: func(c *coordinator.Config) {
		c.Reconnect = coordinator.Reconnect{Host: "pool.example.org", Port: 3334, Wait: 5 * time.Second}
	}})
	c := h.dial()
	c.ready("alice")
	h.stop()
	if p, want := reconnectOf(t, c), []any{"pool.example.org", 3334.0, 5.0}; !equalAny(p, want) {
		t.Fatalf("client.reconnect params %v, want %v", p, want)
	}

	off := newHarness(t, harnessOpts{cfg: func(c *coordinator.Config) { c.Reconnect.Disabled = true }})
	c2 := off.dial()
	c2.ready("bob")
	off.stop()
	for {
		m, err := c2.readMsg()
		if err != nil {
			break
		}
		if m.Method == "client.reconnect" {
			t.Fatal("client.reconnect sent with Reconnect.Disabled")
		}
	}
}

// TestIPv6Listener: a coordinator on [::1] serves a miner end to end;
// per-address limits and client.reconnect use the IPv6 address.
func TestIPv6Listener(t *testing.T) {
	probe, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback here: %v", err)
	}
	probe.Close()
	h := newHarness(t, harnessOpts{listenAddr: "[::1]:0", cfg: func(c *coordinator.Config) { c.MaxConnsPerIP = 1 }})
	if !strings.HasPrefix(h.addr, "[::1]:") {
		t.Fatalf("listening on %s", h.addr)
	}
	c := h.dial()
	n := c.ready("alice")
	sh := c.solve(n, 1, 1e-7, false, 0)
	sh.worker = "alice"
	if ok, code := c.submit(sh); !ok {
		t.Fatalf("share over IPv6 refused (%d)", code)
	}
	expectRefused(t, h.dial(), "too many connections from this address")
	h.stop()
	_, port, _ := net.SplitHostPort(h.addr)
	if p, want := reconnectOf(t, c), []any{"::1", mustAtof(t, port), 0.0}; !equalAny(p, want) {
		t.Fatalf("client.reconnect params %v, want %v", p, want)
	}
}

func mustAtof(t *testing.T, s string) float64 {
	t.Helper()
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func equalAny(a, b []any) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestReconnectThenLingers: after client.reconnect on a graceful shutdown
// the coordinator shuts only its sending side (the miner reads the end
// of the stream) and goes on reading what the miner still sends until
// the miner closes: a share the miner found before it read the
// client.reconnect line is not answered by a reset, and a miner that
// gives up its connection on a failed write still gets to read the
// client.reconnect line. Closing the connection at once made the
// miner's next write fail (the kernel resets a closed socket that
// receives data, and closing one with unread input resets it at once).
func TestReconnectThenLingers(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	c := h.dial()
	c.ready("alice")
	stopped := make(chan struct{})
	go func() { h.stop(); close(stopped) }()
	for {
		m := c.next()
		if m.Method == "client.reconnect" {
			break
		}
	}
	if _, err := c.readMsg(); !errors.Is(err, io.EOF) {
		t.Fatalf("read after client.reconnect: %v, want io.EOF", err)
	}
	// The miner has not seen the reconnect yet and goes on submitting.
	line := `{"id":9,"method":"mining.extranonce.subscribe","params":[]}` + "\n"
	for i := range 10 {
		if _, err := c.conn.Write([]byte(line)); err != nil {
			t.Fatalf("write %d after client.reconnect: %v, want the coordinator still reading", i, err)
		}
		<-time.After(2 * time.Millisecond) // time for a reset to come back
	}
	c.conn.Close()
	<-stopped
}

// TestListenerMaxDifficulty: a listener's ceiling holds against the
// starting difficulty, a d= password, mining.suggest_difficulty and
// vardiff (virtual time), and keeps a floor set on the same listener.
func TestListenerMaxDifficulty(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, harnessOpts{pipe: true, shareDiff: 1e-6, cfg: func(c *coordinator.Config) {
			c.SharesPerMinute, c.VardiffInterval = 20, 30*time.Second
		}, listen: func(ln net.Listener) net.Listener {
			return coordinator.WithMaxDifficulty(coordinator.WithMinDifficulty(ln, 5e-8), 2e-7)
		}})
		// The starting difficulty 1e-6 is lowered to the ceiling.
		c := h.dial()
		c.subscribe()
		c.authorize("alice")
		if d := c.firstDifficulty(); d != 2e-7 {
			t.Fatalf("first difficulty %v, want the ceiling 2e-07", d)
		}
		// A suggestion above the ceiling leaves it there (no new job);
		// one below it is taken, one below the floor raised to it.
		c.call("mining.suggest_difficulty", []any{4})
		c.noDifficultyChange()
		c.call("mining.suggest_difficulty", []any{1e-7})
		if m := c.next(); m.Method != "mining.set_difficulty" || c.diff != 1e-7 {
			t.Fatalf("after suggesting 1e-7: %s %v", m.Method, c.diff)
		}
		c.waitNotify()
		c.call("mining.suggest_difficulty", []any{1e-9})
		if m := c.next(); m.Method != "mining.set_difficulty" || c.diff != 5e-8 {
			t.Fatalf("after suggesting 1e-9 over a 5e-8 floor: %s %v", m.Method, c.diff)
		}
		c.waitNotify()
		c.call("mining.suggest_difficulty", []any{1e-7})
		c.next()
		c.waitNotify()
		c.queue = nil

		// d= above the ceiling is lowered to it.
		fixed := h.dial()
		fixed.subscribe()
		fixed.authorizePass("bob", "x,d=1024")
		if d := fixed.firstDifficulty(); d != 2e-7 {
			t.Fatalf("d=1024 under a 2e-7 ceiling gave %v", d)
		}

		// Vardiff: shares far too fast would raise 1e-7 fourfold; the
		// ceiling stops it at 2e-7.
		time.Sleep(4 * time.Second) // past an eighth of the interval
		for i := range uint32(42) {
			sh := c.solve(c.lastJob, i, c.diff, false, 0)
			sh.worker = "alice"
			if ok, code := c.submit(sh); !ok {
				t.Fatalf("share %d refused (%d)", i, code)
			}
		}
		c.call("mining.extranonce.subscribe", []any{})
		if c.diff != 2e-7 {
			t.Fatalf("vardiff took the difficulty to %v, want the ceiling 2e-07", c.diff)
		}
		if ln := newPipeListener(); coordinator.WithMaxDifficulty(ln, 0) != net.Listener(ln) {
			t.Fatal("WithMaxDifficulty(ln, 0) must return ln itself")
		}
	})
}
