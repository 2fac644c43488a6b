package coordinator_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/powcoord/powcoord/internal/coordinator"
	"github.com/powcoord/powcoord/internal/sv2"
)

// newOnePortHarness serves V1 and V2 on one WithSV2Detect listener (what
// --stratum is), logging into logs.
func newOnePortHarness(t *testing.T, logs *lockedLog, cfgs ...func(*coordinator.Config)) *v2harness {
	t.Helper()
	auth, _ := btcec.NewPrivateKey()
	srv, err := sv2.NewServer(sv2.ServerConfig{Authority: auth})
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, harnessOpts{
		listen: func(ln net.Listener) net.Listener { return coordinator.WithSV2Detect(ln, srv) },
		cfg: func(c *coordinator.Config) {
			c.Logger = slog.New(slog.NewTextHandler(logs, nil))
			for _, f := range cfgs {
				f(c)
			}
		},
	})
	return &v2harness{harness: h, auth: auth, srv: srv, v2addr: h.addr, v1addr: h.addr}
}

// TestOnePortV1AndV2BothMine: a V1 miner and a V2 miner on the same
// address each get work and have a share accepted and in the ledger with
// the hash they computed; a V1 miner whose first line arrives in pieces,
// after whitespace, is told apart too.
func TestOnePortV1AndV2BothMine(t *testing.T) {
	logs := &lockedLog{}
	h := newOnePortHarness(t, logs)
	ctx := context.Background()

	v1 := h.dial()
	n := v1.ready("onev1")
	s1 := v1.solve(n, 1, 1e-7, false, 0)
	s1.worker = "onev1"
	if ok, code := v1.submit(s1); !ok {
		t.Fatalf("V1 share on the shared port refused: code %d", code)
	}

	v2 := h.readyV2("onev2", true)
	s2 := v2.goodShare()
	v2.submit(s2)
	if code := v2.result(); code != "" {
		t.Fatalf("V2 share on the shared port refused: %s", code)
	}

	// Whitespace first, then the JSON line in three writes.
	split := h.dial()
	for _, part := range []string{" \r\n", "{", ` "id":1,"method":"mining.subscribe","params":[]}` + "\n"} {
		if _, err := io.WriteString(split.conn, part); err != nil {
			t.Fatal(err)
		}
	}
	split.nextID = 1
	if m, err := split.readMsg(); err != nil || m.ResponseError() != nil || string(m.ID) != "1" {
		t.Fatalf("split V1 subscribe answered %+v, %v", m, err)
	}

	for user, want := range map[string]string{"onev1": s1.hash.String(), "onev2": s2.hash.String()} {
		shares, err := h.store.Shares(ctx, user)
		if err != nil || len(shares) != 1 || shares[0].Hash.String() != want {
			t.Fatalf("ledger shares of %s: %+v (%v), want one with hash %s", user, shares, err, want)
		}
	}
	if !strings.Contains(logs.String(), "protocol=v1+v2") {
		t.Fatalf("no v1+v2 listening line in %s", logs)
	}
}

// TestOnePortGarbageClosedAndLogged: bytes that are neither V1 nor a
// Noise handshake are closed with a log line naming the address: long
// garbage fails the first frame's authentication, a short HTTP request
// ends the handshake, a connection that sends nothing and closes is
// logged too. A V1 miner on the same port is unaffected.
func TestOnePortGarbageClosedAndLogged(t *testing.T) {
	logs := &lockedLog{}
	h := newOnePortHarness(t, logs)
	for _, tc := range []struct {
		name, send, log string
	}{
		{"random", string(bytes.Repeat([]byte{0x9c, 0x01, 0xee, 0x7b}, 50)), "closing sv2 miner: frame failed authentication"},
		{"http", "GET / HTTP/1.0\r\n\r\n", "closing sv2 miner: handshake failed"},
		{"empty", "", "closing miner: no stratum v1 or v2 start within the handshake timeout"},
	} {
		nc, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		local := nc.LocalAddr().String()
		nc.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(nc, tc.send)
		nc.(*net.TCPConn).CloseWrite()
		if _, err := io.Copy(io.Discard, nc); err != nil {
			t.Fatalf("%s: not closed by the pool: %v", tc.name, err)
		}
		nc.Close()
		h.stop() // Serve has returned: every line is logged
		h = nil
		got := logs.String()
		if !strings.Contains(got, tc.log) || !strings.Contains(got, "remote="+local) {
			t.Fatalf("%s: log has no %q for %s:\n%s", tc.name, tc.log, local, got)
		}
		logs = &lockedLog{}
		h = newOnePortHarness(t, logs)
	}
	h.dial().ready("stillv1")
}

// TestOnePortBannedRefusedBeforeFirstBytes: an address banned on the
// shared port is refused as soon as it connects, with the V1 refusal
// line and a log line, not left waiting for its first bytes until the
// handshake timeout.
func TestOnePortBannedRefusedBeforeFirstBytes(t *testing.T) {
	logs := &lockedLog{}
	h := newOnePortHarness(t, logs, func(c *coordinator.Config) {
		c.BanMinShares, c.BanRejectRatio, c.BanIPAfter = 10, 0.9, 1
	})
	bad := h.dial()
	sendInvalid(t, bad, "rig", bad.ready("rig"), 10, true)
	if !h.coord.Banned("127.0.0.1") {
		t.Fatal("127.0.0.1 not banned after 10 invalid shares")
	}
	quiet := h.dial() // sends nothing
	quiet.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	m, err := quiet.readMsg()
	if err != nil || !strings.Contains(string(m.Error), "connection refused: banned") {
		t.Fatalf("banned address answered %+v, %v; want the refusal at once", m, err)
	}
	expectClosed(t, quiet)
	if got := logs.String(); !strings.Contains(got, `msg="refusing miner"`) || !strings.Contains(got, "reason=banned") {
		t.Fatalf("no refusal log line:\n%s", got)
	}
}
