package coordinator

import (
	"fmt"
	"math"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/powcoord/powcoord/internal/stratum"
)

// Miner conventions that are not part of Stratum proper but that home
// mining firmware relies on (docs/stratum-v1.md, "Conventions"): a fixed
// difficulty in the password, a per-listener difficulty floor, and
// client.reconnect on a graceful shutdown.

// WithMinDifficulty returns ln with a difficulty floor: every session
// accepted on it mines at least at difficulty d, whatever vardiff,
// mining.suggest_difficulty or a d= password field would choose (an ASIC
// listener can refuse to hand out CPU-sized work). d <= 0 returns ln
// itself. Hand the result to Serve or Run; it keeps a ceiling set by
// WithMaxDifficulty.
func WithMinDifficulty(ln net.Listener, d float64) net.Listener {
	if !(d > 0) {
		return ln
	}
	l := diffBoundsOf(ln)
	l.min = d
	return l
}

// WithMaxDifficulty returns ln with a difficulty ceiling: every session
// accepted on it mines at most at difficulty d, whatever vardiff,
// mining.suggest_difficulty or a d= password field would choose (a
// listener for small devices whose shares must keep coming). d <= 0
// returns ln itself. Hand the result to Serve or Run; it keeps a floor
// set by WithMinDifficulty. A ceiling below the floor wins.
func WithMaxDifficulty(ln net.Listener, d float64) net.Listener {
	if !(d > 0) {
		return ln
	}
	l := diffBoundsOf(ln)
	l.max = d
	return l
}

// diffListener is a listener with difficulty bounds (0: none).
type diffListener struct {
	net.Listener
	min, max float64
}

// diffBoundsOf returns a copy of ln's bounds around its inner listener,
// or new empty bounds around ln.
func diffBoundsOf(ln net.Listener) *diffListener {
	if l, ok := ln.(*diffListener); ok {
		cp := *l
		return &cp
	}
	return &diffListener{Listener: ln}
}

// listenerMinDifficulty is the floor ln sets (0 for none).
func listenerMinDifficulty(ln net.Listener) float64 {
	if m, ok := ln.(*diffListener); ok {
		return m.min
	}
	return 0
}

// listenerMaxDifficulty is the ceiling of a session on ln: the
// coordinator's MaxDifficulty, lowered by ln's own.
func listenerMaxDifficulty(ln net.Listener, cfg *Config) float64 {
	if m, ok := ln.(*diffListener); ok && m.max > 0 {
		return min(m.max, cfg.MaxDifficulty)
	}
	return cfg.MaxDifficulty
}

// minDiff is the lowest difficulty a session may mine at: the
// coordinator's MinDifficulty, raised by its listener's floor.
func (s *session) minDiff() float64 {
	return max(s.c.cfg.MinDifficulty, listenerMinDifficulty(s.ln))
}

// clampSession bounds d to what the session's listener and the
// coordinator allow; the ceiling wins over the floor.
func (s *session) clampSession(d float64) float64 {
	return min(max(d, s.minDiff()), listenerMaxDifficulty(s.ln, &s.c.cfg))
}

// parsePassword splits a mining.authorize password into its
// comma-separated fields, takes out the d=N field (a fixed share
// difficulty, public-pool's convention) and returns the other fields
// joined again by commas, which is the password proper. fixed is 0 when
// there is no d= field.
func parsePassword(pw string) (rest string, fixed float64, err error) {
	if !strings.Contains(pw, "d=") {
		return pw, 0, nil
	}
	fields := strings.Split(pw, ",")
	kept := fields[:0]
	for _, f := range fields {
		v, ok := strings.CutPrefix(strings.TrimSpace(f), "d=")
		if !ok {
			kept = append(kept, f)
			continue
		}
		d, perr := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if perr != nil || !(d > 0) || math.IsInf(d, 0) {
			return "", 0, fmt.Errorf("password field d=%s: want a positive difficulty such as d=1024 or d=0.5", v)
		}
		fixed = d
	}
	return strings.Join(kept, ","), fixed, nil
}

// Reconnect tells miners where to come back after a graceful shutdown.
type Reconnect struct {
	// Host and Port are sent in client.reconnect; empty Host (or 0 Port)
	// sends the address the miner's own connection reached, as the
	// coordinator sees it.
	Host string
	Port int
	// Wait is how long miners are asked to wait before reconnecting, sent
	// in whole seconds (0: at once).
	Wait time.Duration
	// Disabled sends no client.reconnect: connections are just closed.
	Disabled bool
}

// reconnectParams are client.reconnect's [host, port, wait] for s.
func (s *session) reconnectParams() []any {
	r := s.c.cfg.Reconnect
	host, port := r.Host, r.Port
	if host == "" || port == 0 {
		if ta, ok := s.conn.LocalAddr().(*net.TCPAddr); ok {
			if host == "" {
				host = ta.IP.String()
			}
			if port == 0 {
				port = ta.Port
			}
		}
	}
	return []any{host, port, int64(r.Wait / time.Second)}
}

// reconnectLinger is how long a session sent client.reconnect on a
// graceful shutdown is still read, its sending side shut, before it is
// closed: time for the miner to read the line and close, while what it
// sends meanwhile is read rather than answered by a reset.
const reconnectLinger = time.Second

// sendReconnect writes client.reconnect to a session that has been given
// work, as its last line, bounded by a one-second write deadline (a miner
// that does not read cannot hold up the shutdown), and reports whether
// it was written. The session is marked closed first, so nothing else
// writes after it, and the write happens without the session lock (its
// reader must not wait on a stuck write).
func (s *session) sendReconnect() bool {
	s.mu.Lock()
	if s.closed || s.lastEpoch == nil {
		s.mu.Unlock()
		return false
	}
	s.closed = true
	s.mu.Unlock()
	b, err := stratum.AppendRequest(nil, nil, "client.reconnect", s.reconnectParams())
	if err != nil {
		return false
	}
	s.conn.SetWriteDeadline(s.c.cfg.Now().Add(time.Second))
	if _, err := s.conn.Write(b); err != nil {
		return false
	}
	s.c.metrics.reconnects.Inc()
	return true
}

// shutWrite ends the sending side of a plain TCP session, after what was
// written (a FIN, not a reset), and reports whether it did. Its reader
// goes on until the miner closes or the session is aborted.
func (s *session) shutWrite() bool {
	// TCP, or TCP behind a PROXY header: not TLS, whose CloseWrite
	// sends an alert instead.
	tc, ok := s.conn.(interface {
		syscall.Conn
		CloseWrite() error
	})
	return ok && tc.CloseWrite() == nil
}

// closeForShutdown ends the sessions of a listener being shut down: with
// client.reconnect first when that is on (several at once, so that slow
// miners do not add up). A plain TCP session that was sent it has its
// sending side shut and is returned, to be read until the miner closes
// or reconnectLinger passes and then aborted by the caller; every other
// session is closed. Closing at once after the line made the kernel
// answer the miner's next write (a share found meanwhile) with a reset,
// or reset the connection at once when the miner's input was still
// unread, and a miner that gives up its connection when a write fails
// never read the client.reconnect line waiting in its socket.
func (c *Coordinator) closeForShutdown(list []*session) (lingering []*session) {
	if c.cfg.Reconnect.Disabled {
		for _, s := range list {
			s.abort()
		}
		return nil
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	ch := make(chan *session)
	for range min(broadcastWorkers, len(list)) {
		wg.Go(func() {
			for s := range ch {
				if !s.sendReconnect() || !s.shutWrite() {
					s.abort()
					continue
				}
				mu.Lock()
				lingering = append(lingering, s)
				mu.Unlock()
			}
		})
	}
	for _, s := range list {
		ch <- s
	}
	close(ch)
	wg.Wait()
	return lingering
}
