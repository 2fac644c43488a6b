package coordinator_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"sort"
	"testing"
	"time"

	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/coordinator"
	"github.com/powcoord/powcoord/internal/stratum"
	"github.com/powcoord/powcoord/internal/sv2"
)

// countConn counts the bytes a V1 client sends and receives.
type countConn struct {
	net.Conn
	read, sent int
}

func (c *countConn) Read(p []byte) (int, error)  { n, err := c.Conn.Read(p); c.read += n; return n, err }
func (c *countConn) Write(p []byte) (int, error) { c.sent += len(p); return c.Conn.Write(p) }

// dialV1 serves V1 on a second listener of the same coordinator (once)
// and connects a V1 client to it.
func (h *v2harness) dialV1() *client {
	h.t.Helper()
	if h.v1addr == "" {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			h.t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- h.coord.Serve(ctx, ln) }()
		h.t.Cleanup(func() { cancel(); <-done })
		h.v1addr = ln.Addr().String()
	}
	conn, err := net.Dial("tcp", h.v1addr)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { conn.Close() })
	return &client{t: h.t, conn: conn, r: bufio.NewReader(conn), jobs: map[string]*stratum.Notify{}}
}

// TestWireBytesV1V2 measures the bytes on the wire for one share (the
// submit and its answer) and one job over each protocol on one
// coordinator. V2's sizes are exact: an encrypted frame is a 22-byte
// header, the payload and a 16-byte tag.
func TestWireBytesV1V2(t *testing.T) {
	h := newV2Harness(t, harnessOpts{})
	frame := func(payload int) int64 { return int64(sv2.EncHeaderSize + payload + sv2.MACSize) }

	// V2: one share and its SubmitShares.Success.
	c := h.readyV2("bytes2", false)
	s := c.goodShare()
	r0, w0 := c.raw.read.Load(), c.raw.sent.Load()
	c.submit(s)
	if code := c.result(); code != "" {
		t.Fatal(code)
	}
	v2Submit, v2Answer := c.raw.sent.Load()-w0, c.raw.read.Load()-r0
	if v2Submit != frame(24) || v2Answer != frame(20) {
		t.Fatalf("V2 share: %d bytes sent, %d received; want %d and %d", v2Submit, v2Answer, frame(24), frame(20))
	}
	// V2: a job on a new block is a future NewMiningJob and SetNewPrevHash.
	v2CleanJob := frame(45) + frame(48)
	v2Job := frame(49)

	// V1 on the same coordinator.
	v1 := h.dialV1()
	cc := &countConn{Conn: v1.conn}
	v1.conn, v1.r = cc, bufio.NewReader(cc)
	n := v1.ready("bytes1")
	sh := v1.solve(n, 1, 1e-7, false, 0)
	sh.worker = "bytes1"
	r1, w1 := cc.read, cc.sent
	if ok, code := v1.submit(sh); !ok {
		t.Fatalf("V1 share refused: %d", code)
	}
	v1Submit, v1Answer := cc.sent-w1, cc.read-r1
	line, _ := (&stratumLine{n}).bytes()
	t.Logf("per share: V1 %d bytes sent + %d received, V2 %d + %d", v1Submit, v1Answer, v2Submit, v2Answer)
	t.Logf("per job: V1 mining.notify %d bytes (this coinbase, empty merkle branch); V2 NewMiningJob %d, on a new block %d (with SetNewPrevHash)", line, v2Job, v2CleanJob)
}

// stratumLine re-encodes a notify to count its line.
type stratumLine struct{ n *stratum.Notify }

func (l *stratumLine) bytes() (int, error) {
	b, err := stratum.AppendRequest(nil, nil, "mining.notify", l.n)
	return len(b), err
}

func jsonCall(id int, method string, params any) ([]byte, error) {
	return stratum.AppendRequest(nil, id, method, params)
}

// solveFrom finds the first nonce from start meeting target on job j.
func (c *v2client) solveFrom(j *v2job, start uint32, target chainmath.Target) v2share {
	hd := chainmath.Header{Version: j.version, PrevBlock: c.prev, MerkleRoot: j.root, Time: j.activeFrom, Bits: c.nbits}
	for nonce := start; ; nonce++ {
		hd.Nonce = nonce
		raw := hd.Bytes()
		h := chainmath.DoubleSHA256(raw[:])
		if target.Meets(&h) {
			return v2share{job: j.id, nonce: nonce, ntime: j.activeFrom, version: j.version, hash: h}
		}
	}
}

// TestSV2SharesPerSecond (SV2_BENCH=1) measures valid shares validated and
// durable per second over TCP, V1 and V2 side by side on one coordinator:
// conns connections, each keeping window shares unanswered. Medians of
// three runs are logged.
func TestSV2SharesPerSecond(t *testing.T) {
	if os.Getenv("SV2_BENCH") == "" {
		t.Skip("set SV2_BENCH=1")
	}
	const conns, per, window = 8, 2000, 16
	h := newV2Harness(t, harnessOpts{cfg: func(c *coordinator.Config) { c.BanMinShares = -1 }})
	var v1rates, v2rates []float64
	for run := 0; run < 3; run++ {
		// V2
		clients := make([]*v2client, conns)
		shares := make([][]v2share, conns)
		for i := range clients {
			c := h.readyV2(fmt.Sprintf("b2-%d-%d", run, i), false)
			clients[i] = c
			next := uint32(0)
			for len(shares[i]) < per {
				j := c.cur
				s := c.solveFrom(j, next, c.target)
				shares[i] = append(shares[i], s)
				next = s.nonce + 1
			}
		}
		start := time.Now()
		done := make(chan struct{}, conns)
		for i, c := range clients {
			go func() {
				acked := uint32(0)
				sent := 0
				for int(acked) < per {
					for sent < per && sent-int(acked) < window {
						c.submit(shares[i][sent])
						sent++
					}
					m, err := c.read()
					if err != nil {
						t.Error(err)
						break
					}
					switch m := m.(type) {
					case *sv2.SubmitSharesSuccess:
						acked += m.NewSubmitsAcceptedCount
					case *sv2.SubmitSharesError:
						t.Errorf("share refused: %s", m.ErrorCode)
						acked++
					}
				}
				done <- struct{}{}
			}()
		}
		for range clients {
			<-done
		}
		v2rates = append(v2rates, float64(conns*per)/time.Since(start).Seconds())
		for _, c := range clients {
			c.raw.Close()
		}
		// V1
		v1c := make([]*client, conns)
		lines := make([][][]byte, conns)
		for i := range v1c {
			c := h.dialV1()
			user := fmt.Sprintf("b1-%d-%d", run, i)
			n := c.ready(user)
			v1c[i] = c
			for e := uint32(0); len(lines[i]) < per; e++ {
				s := c.solve(n, e+1, 1e-7, false, 0)
				s.worker = user
				b, _ := jsonCall(len(lines[i])+10, "mining.submit", s.params())
				lines[i] = append(lines[i], b)
			}
		}
		for _, c := range v1c {
			c.conn.SetDeadline(time.Now().Add(time.Minute))
		}
		start = time.Now()
		for i, c := range v1c {
			go func() {
				acked, sent := 0, 0
				for acked < per {
					for sent < per && sent-acked < window {
						c.conn.Write(lines[i][sent])
						sent++
					}
					line, err := c.r.ReadBytes('\n')
					if err != nil {
						t.Error(err)
						break
					}
					if !bytes.Contains(line, []byte(`"method"`)) {
						if !bytes.Contains(line, []byte(`"result":true`)) {
							t.Errorf("V1 share refused: %s", line)
						}
						acked++
					}
				}
				done <- struct{}{}
			}()
		}
		for range v1c {
			<-done
		}
		v1rates = append(v1rates, float64(conns*per)/time.Since(start).Seconds())
		for _, c := range v1c {
			c.conn.Close()
		}
	}
	sort.Float64s(v1rates)
	sort.Float64s(v2rates)
	t.Logf("valid durable shares/s over TCP, %d connections, window %d: V1 %v median %.0f; V2 %v median %.0f", conns, window, v1rates, v1rates[1], v2rates, v2rates[1])
}
