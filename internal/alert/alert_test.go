package alert

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

var (
	yes = true
	no  = false
	t0  = time.Date(2026, 12, 2, 3, 4, 5, 0, time.UTC)
)

func blockEvent(accepted *bool, reason string) Event {
	return Event{Kind: KindBlock, Height: 812, Hash: "00000000000000000001a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7", Finder: "bc1qalice.rig1", Accepted: accepted, Reason: reason, Time: t0}
}

func bestEvent(prev float64) Event {
	return Event{Kind: KindBestShare, Hash: "0000000000004f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796", Worker: "bc1qalice.rig1", Difficulty: 3912.5, Previous: prev, Time: t0}
}

func TestBodies(t *testing.T) {
	for _, tc := range []struct {
		name, format string
		ev           Event
		body, ctype  string
	}{
		{"block json", FormatJSON, blockEvent(&yes, ""),
			`{"event":"block","height":812,"hash":"00000000000000000001a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7","finder":"bc1qalice.rig1","accepted":true,"time":"2026-12-02T03:04:05Z"}`,
			"application/json"},
		{"rejected block json", FormatJSON, blockEvent(&no, "bad-txnmrklroot"),
			`{"event":"block","height":812,"hash":"00000000000000000001a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7","finder":"bc1qalice.rig1","accepted":false,"reason":"bad-txnmrklroot","time":"2026-12-02T03:04:05Z"}`,
			"application/json"},
		{"best json", FormatJSON, bestEvent(1024),
			`{"event":"best_share","hash":"0000000000004f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796","worker":"bc1qalice.rig1","difficulty":3912.5,"previous":1024,"time":"2026-12-02T03:04:05Z"}`,
			"application/json"},
		{"block discord", FormatDiscord, blockEvent(&yes, ""),
			`{"content":"Block 812 found by bc1qalice.rig1 (accepted): 00000000000000000001a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7","allowed_mentions":{"parse":[]}}`,
			"application/json"},
		{"best discord", FormatDiscord, bestEvent(0),
			`{"content":"New best share for bc1qalice.rig1: difficulty 3912.5 (first share)","allowed_mentions":{"parse":[]}}`,
			"application/json"},
		// A miner's worker name is data, never markup or a mention.
		{"hostile worker discord", FormatDiscord, Event{Kind: KindBestShare, Worker: "@everyone <script>\"x\"\n", Difficulty: 2, Time: t0},
			`{"content":"New best share for @everyone \u003cscript\u003e\"x\"\n: difficulty 2 (first share)","allowed_mentions":{"parse":[]}}`,
			"application/json"},
		{"block ntfy", FormatNtfy, blockEvent(&no, "high-hash"),
			`Block 812 found by bc1qalice.rig1 (not accepted: high-hash): 00000000000000000001a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7`,
			"text/plain; charset=utf-8"},
		{"best ntfy", FormatNtfy, bestEvent(1024),
			`New best share for bc1qalice.rig1: difficulty 3912.5 (previous 1024)`,
			"text/plain; charset=utf-8"},
	} {
		body, ctype, err := Body(tc.format, &tc.ev)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if string(body) != tc.body || ctype != tc.ctype {
			t.Errorf("%s:\n got %s (%s)\nwant %s (%s)", tc.name, body, ctype, tc.body, tc.ctype)
		}
	}
	if _, _, err := Body("slack", &Event{}); err == nil || err.Error() != `webhook format "slack": want json, discord or ntfy` {
		t.Errorf("unknown format: %v", err)
	}
}

func TestNewRejectsBadURL(t *testing.T) {
	for _, u := range []string{"ftp://example.org/x", "example.org/hook", "http:///nohost"} {
		if _, err := New(Config{URLs: []string{u}}); err == nil {
			t.Errorf("URL %q accepted", u)
		}
	}
	_, err := New(Config{URLs: []string{"ftp://example.org/secret-token"}})
	if err == nil || err.Error() != `webhook URL "ftp://example.org/...": want http://host/path or https://host/path` {
		t.Errorf("error %v, want the URL redacted to its host", err)
	}
}

type request struct {
	body, ctype, title string
}

// TestRetriesUntilAccepted: a 127.0.0.1 endpoint answers 500, then 503,
// then 200: the same body arrives three times, one post counted ok and
// two failed attempts.
func TestRetriesUntilAccepted(t *testing.T) {
	var mu sync.Mutex
	var got []request
	statuses := []int{500, 503, 200}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, request{string(b), r.Header.Get("Content-Type"), r.Header.Get("Title")})
		code := statuses[min(len(got)-1, len(statuses)-1)]
		mu.Unlock()
		w.WriteHeader(code)
	}))
	defer srv.Close()
	reg := prometheus.NewRegistry()
	n, err := New(Config{URLs: []string{srv.URL + "/topic"}, Format: FormatNtfy, RetryMin: time.Millisecond, RetryMax: 2 * time.Millisecond, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	n.Notify(blockEvent(&yes, ""))
	host := srv.Listener.Addr().String()
	deadline := time.Now().Add(10 * time.Second)
	for value(n.posted.WithLabelValues(host, "ok")) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("not delivered; requests %v", got)
		}
		time.Sleep(time.Millisecond) // polling with a deadline
	}
	want := request{"Block 812 found by bc1qalice.rig1 (accepted): 00000000000000000001a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7", "text/plain; charset=utf-8", "powcoord: block found"}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 3 {
		t.Fatalf("%d requests, want 3", len(got))
	}
	for i, r := range got {
		if r != want {
			t.Errorf("request %d: %+v, want %+v", i, r, want)
		}
	}
	if f := value(n.failures.WithLabelValues(host)); f != 2 {
		t.Errorf("failed attempts %v, want 2", f)
	}
	if f := value(n.posted.WithLabelValues(host, "failed")); f != 0 {
		t.Errorf("given up %v, want 0", f)
	}
}

// TestPermanentRefusal: a 404 is not retried.
func TestPermanentRefusal(t *testing.T) {
	var mu sync.Mutex
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls++
		mu.Unlock()
		http.NotFound(w, r)
	}))
	defer srv.Close()
	n, err := New(Config{URLs: []string{srv.URL}, RetryMin: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	n.Notify(bestEvent(0))
	host := srv.Listener.Addr().String()
	deadline := time.Now().Add(10 * time.Second)
	for value(n.posted.WithLabelValues(host, "failed")) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("not given up")
		}
		time.Sleep(time.Millisecond) // polling with a deadline
	}
	mu.Lock()
	defer mu.Unlock()
	if calls != 1 {
		t.Fatalf("%d requests, want 1 (404 is final)", calls)
	}
}

// pipeNet is an in-memory network for synctest bubbles: dialing host h
// hands the server end to listener h.
type pipeNet struct {
	mu  sync.Mutex
	lns map[string]*pipeListener
}

type pipeListener struct {
	addr  string
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}
func (l *pipeListener) Close() error   { l.once.Do(func() { close(l.done) }); return nil }
func (l *pipeListener) Addr() net.Addr { return pipeAddr(l.addr) }

type pipeAddr string

func (a pipeAddr) Network() string { return "pipe" }
func (a pipeAddr) String() string  { return string(a) }

func (p *pipeNet) listen(addr string) *pipeListener {
	p.mu.Lock()
	defer p.mu.Unlock()
	l := &pipeListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
	p.lns[addr] = l
	return l
}

func (p *pipeNet) dial(ctx context.Context, _, addr string) (net.Conn, error) {
	p.mu.Lock()
	l := p.lns[addr]
	p.mu.Unlock()
	if l == nil {
		return nil, &net.OpError{Op: "dial", Err: net.ErrClosed}
	}
	server, client := net.Pipe()
	select {
	case l.conns <- server:
		return client, nil
	case <-l.done:
		return nil, net.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// TestDeadEndpoint (virtual time): an endpoint that accepts and never
// answers costs Notify nothing; its attempts time out and back off on
// schedule (10 s, 1 s, 10 s, 2 s, 10 s: given up at 33 s); a full queue
// drops and counts; a healthy endpoint next to it gets every event it
// has room for, at once.
func TestDeadEndpoint(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pn := &pipeNet{lns: map[string]*pipeListener{}}
		dead := pn.listen("dead.example:80")
		var held []net.Conn // the dead endpoint keeps its connections and never reads
		var heldMu sync.Mutex
		go func() {
			for {
				c, err := dead.Accept()
				if err != nil {
					return
				}
				heldMu.Lock()
				held = append(held, c)
				heldMu.Unlock()
			}
		}()
		good := pn.listen("good.example:80")
		var mu sync.Mutex
		var bodies []string
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			mu.Lock()
			bodies = append(bodies, string(b))
			mu.Unlock()
		})}
		go srv.Serve(good)
		tr := &http.Transport{DialContext: pn.dial}
		n, err := New(Config{
			URLs:     []string{"http://dead.example/hook", "http://good.example/hook"},
			Client:   &http.Client{Transport: tr},
			Attempts: 3, Timeout: 10 * time.Second, RetryMin: time.Second, RetryMax: time.Minute, QueueSize: 4,
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { n.Run(ctx); close(done) }()

		start := time.Now()
		n.Notify(bestEvent(1))
		synctest.Wait() // the dead endpoint's goroutine holds event 1 in flight
		for i := 2; i <= 100; i++ {
			n.Notify(bestEvent(float64(i)))
		}
		if d := time.Since(start); d != 0 {
			t.Fatalf("100 Notify calls took %v of virtual time, want 0", d)
		}
		// dead: 1 in flight, 4 queued, 95 dropped.
		if d := value(n.dropped.WithLabelValues("dead.example")); d != 95 {
			t.Errorf("dead endpoint dropped %v, want 95", d)
		}
		synctest.Wait()
		time.Sleep(33*time.Second - time.Nanosecond)
		synctest.Wait()
		if g := value(n.posted.WithLabelValues("dead.example", "failed")); g != 0 {
			t.Fatalf("given up %v before 33 s", g)
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		if g := value(n.posted.WithLabelValues("dead.example", "failed")); g != 1 {
			t.Fatalf("given up %v at 33 s, want 1", g)
		}
		if f := value(n.failures.WithLabelValues("dead.example")); f != 3 {
			t.Errorf("failed attempts %v, want 3", f)
		}
		// good: it had the same queue of 4 behind the first event, so
		// what it delivered depends only on how fast it drained: every
		// event it did not drop arrived, and nothing failed.
		okGood := value(n.posted.WithLabelValues("good.example", "ok"))
		dropGood := value(n.dropped.WithLabelValues("good.example"))
		if okGood+dropGood != 100 || okGood < 5 {
			t.Errorf("good endpoint: %v delivered + %v dropped, want 100 in all and at least 5 delivered", okGood, dropGood)
		}
		mu.Lock()
		if len(bodies) != int(okGood) || bodies[0] != `{"event":"best_share","hash":"0000000000004f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796","worker":"bc1qalice.rig1","difficulty":3912.5,"previous":1,"time":"2026-12-02T03:04:05Z"}` {
			t.Errorf("good endpoint bodies %q", bodies)
		}
		mu.Unlock()

		cancel()
		<-done
		srv.Close()
		dead.Close()
		tr.CloseIdleConnections()
		heldMu.Lock()
		for _, c := range held {
			c.Close()
		}
		heldMu.Unlock()
	})
}

// value reads a counter.
func value(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}
