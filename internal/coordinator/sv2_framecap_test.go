package coordinator_test

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/powcoord/powcoord/internal/coordinator"
	"github.com/powcoord/powcoord/internal/sv2"
)

// lockedLog is a log sink safe for the coordinator's goroutines.
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

// captureWriter keeps what is written instead of sending it while capture
// is set, so a test can put an encrypted frame's first bytes on the wire
// without its payload.
type captureWriter struct {
	io.Writer
	capture bool
	kept    []byte
}

func (w *captureWriter) Write(p []byte) (int, error) {
	if w.capture {
		w.kept = append(w.kept, p...)
		return len(p), nil
	}
	return w.Writer.Write(p)
}

// TestSV2FrameCapBeforeSetup is issue 20's defect 7 from outside: many
// connections, before SetupConnection, each send the encrypted header of
// a frame claiming 262,143 bytes (under the old 256 KiB cap) and 100 bytes
// of it. Each is closed on the header with a log line naming the length
// and the cap, and the coordinator allocates nowhere near the claimed
// size per connection (before: 262 KB each, held until the read deadline).
func TestSV2FrameCapBeforeSetup(t *testing.T) {
	const conns, claimed = 20, 1<<18 - 1
	logs := &lockedLog{}
	h := newV2Harness(t, harnessOpts{cfg: func(c *coordinator.Config) {
		c.Logger = slog.New(slog.NewTextHandler(logs, nil))
	}})
	type hostile struct {
		raw  net.Conn
		conn *sv2.Conn
		head []byte
	}
	hs := make([]hostile, conns)
	for i := range hs {
		raw, err := net.Dial("tcp", h.v2addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { raw.Close() })
		raw.SetDeadline(time.Now().Add(20 * time.Second))
		w := &captureWriter{Writer: raw}
		conn, err := sv2.ClientHandshake(struct {
			io.Reader
			io.Writer
		}{raw, w}, sv2.ClientConfig{Authority: sv2.XOnly(h.auth)})
		if err != nil {
			t.Fatal(err)
		}
		w.capture = true
		if err := conn.WriteFrame(sv2.Header{MsgType: sv2.TypeSetupConnection}, make([]byte, claimed)); err != nil {
			t.Fatal(err)
		}
		hs[i] = hostile{raw: raw, conn: conn, head: w.kept[:sv2.EncHeaderSize+100]}
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for _, c := range hs {
		// Deadlines from now: the handshakes may have taken long on a
		// loaded machine. They only bound a failure.
		c.raw.SetDeadline(time.Now().Add(20 * time.Second))
	}
	for _, c := range hs {
		if _, err := c.raw.Write(c.head); err != nil {
			t.Fatal(err)
		}
	}
	for i, c := range hs {
		if _, _, err := c.conn.ReadFrame(); err == nil || isTimeout(err) {
			t.Fatalf("connection %d: not closed on the oversized header: %v", i, err)
		}
	}
	runtime.ReadMemStats(&after)
	if perConn := int(after.TotalAlloc-before.TotalAlloc) / conns; perConn > claimed/8 {
		t.Fatalf("%d bytes allocated per connection for a header claiming %d", perConn, claimed)
	}
	const want = "msg_length 262143 over the cap 1291 for frames from a miner"
	if n := strings.Count(logs.String(), want); n != conns {
		t.Fatalf("%d log lines name the length and the cap, want %d:\n%s", n, conns, logs.String())
	}
	if !strings.Contains(logs.String(), `msg="closing sv2 miner: frame over the cap"`) {
		t.Fatalf("no constant log message:\n%s", logs.String())
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// TestSV2LargestMinerMessages: the caps admit the largest legitimate
// miner messages: a SetupConnection with every string at 255 bytes is
// accepted, and a SubmitSharesExtended with a 32-byte extranonce (57
// bytes, its type's cap) is answered with a share error, not a close.
func TestSV2LargestMinerMessages(t *testing.T) {
	h := newV2Harness(t, harnessOpts{})
	c, err := h.dialV2(sv2.XOnly(h.auth))
	if err != nil {
		t.Fatal(err)
	}
	s255 := strings.Repeat("x", 255)
	c.send(&sv2.SetupConnection{MinVersion: 2, MaxVersion: 2, EndpointHost: s255, Vendor: s255, HardwareVersion: s255, Firmware: s255, DeviceID: s255})
	if m, ok := c.next().(*sv2.SetupConnectionSuccess); !ok {
		t.Fatalf("largest SetupConnection answered %T %+v", m, m)
	}
	c.open("big", true)
	c.waitActive()
	c.seq++
	c.send(&sv2.SubmitSharesExtended{ChannelID: c.ch, SequenceNumber: c.seq, JobID: c.cur.id, Extranonce: bytes.Repeat([]byte{1}, 32)})
	if got := c.result(); got != coordinator.SV2ErrExtranonceSize {
		t.Fatalf("largest SubmitSharesExtended: %q, want %q", got, coordinator.SV2ErrExtranonceSize)
	}
}
