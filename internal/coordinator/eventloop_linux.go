//go:build linux

package coordinator

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/powcoord/powcoord/internal/stratum"
	"golang.org/x/sys/unix"
)

// The event loop: on Linux a plain TCP session has no goroutine and no
// read buffer while it is idle. One goroutine per Serve waits in
// epoll_wait on every such connection (edge-triggered); a connection with
// something to read gets a goroutine that reads it into a pooled buffer
// until the socket is empty, handles the lines, and ends. The unfinished
// part of a line, if a read ended inside one, is all a session keeps
// between reads (stratum.LineSplitter). The read deadline becomes a
// number the loop's sweeper checks (see eventLoop.sweep), which closes the
// connection once it has passed.
//
// Why a small epoll loop rather than an event library: Go's runtime
// already polls every socket with epoll, so writes (the broadcast, the
// answers) stay on ordinary conn.Write with its deadlines and TLS or
// net.Pipe sessions keep the goroutine path unchanged; only the waiting
// for a read is taken over. The loop touches a descriptor only inside
// syscall.RawConn Control and Read, which hold the descriptor open, so a
// closed connection's number reused by a new one is never mistaken for
// it.

// eventLoop is one epoll instance and the sessions registered with it.
type eventLoop struct {
	log  *slog.Logger
	epfd int
	wake int // eventfd that stops the loop
	mu   sync.Mutex
	byID map[uint64]*session
	done chan struct{}

	// Ready sessions wait in rq for a reader goroutine; readers counts
	// the readers (busy or waiting), idle those waiting on rqCond.
	rqMu     sync.Mutex
	rqCond   sync.Cond
	rq       []*session
	readers  int
	idle     int
	blocked  int // readers waiting for their session's ledger answers
	stopping bool

	// Read deadlines: each session's is a number (evState.deadline, on
	// the loop's clock since epoch), and one sweeper goroutine closes the
	// sessions past theirs every sweepPeriod, instead of a timer each
	// (≈ 200 bytes a session, and a timer reset on every read).
	epoch      time.Time
	sweepOnce  sync.Once
	stopSweep  chan struct{}
	sweepEnded chan struct{} // closed when the sweeper ends; nil if never started
	sweepMu    sync.Mutex    // guards sweepEnded against close
}

// Readers. A session with something to read is queued for one of at most
// maxReaders reader goroutines, which live as long as the loop: a new
// goroutine per wake grew its stack to the depth of a share's parsing and
// validation every time (copystack was 14-18% of a loaded front-end's
// CPU, and a third of wakes still found no reader free when idle readers
// were only reused). A reader is started only when none waits and fewer
// than maxReaders are reading (readers waiting for their session's ledger
// answers do not count: see blocking); otherwise the session waits its
// turn. Readers past maxReaders end once the queue is empty.
const maxReaders = 128

// start has a reader serve s.
func (l *eventLoop) start(s *session) {
	l.rqMu.Lock()

	l.rq = append(l.rq, s)
	switch {
	case l.idle > 0:
		l.rqCond.Signal()
	case l.readers-l.blocked < maxReaders:
		l.readers++
		go l.reader()
	}
	l.rqMu.Unlock()
}

// blocking is told when a reader starts (+1) and stops (-1) waiting for
// its session's ledger answers (session.waitSettled): while it waits,
// another reader takes the queue, so that a ledger that stalls does not
// stop every other session's reading with it.
func (ev *evState) blocking(delta int) {
	l := ev.loop
	l.rqMu.Lock()
	l.blocked += delta
	if delta > 0 && l.idle == 0 && len(l.rq) > 0 && !l.stopping {
		l.readers++
		go l.reader()
	}
	l.rqMu.Unlock()
}

func (l *eventLoop) reader() {
	l.rqMu.Lock()
	for {
		for len(l.rq) == 0 {
			if l.stopping || l.readers-l.blocked > maxReaders {
				l.readers--
				l.rqMu.Unlock()
				return
			}
			l.idle++
			l.rqCond.Wait()
			l.idle--
		}
		s := l.rq[0]
		l.rq[0] = nil
		l.rq = l.rq[1:]
		l.rqMu.Unlock()
		if ev := s.ev.Load(); ev != nil {
			ev.serve(s)
		}
		l.rqMu.Lock()
	}
}

// evState is a session's part of the event loop.
type evState struct {
	loop     *eventLoop
	raw      syscall.RawConn
	ctx      context.Context
	done     func() // called once the session has ended
	running  atomic.Bool
	again    atomic.Bool
	hup      atomic.Bool // the peer has shut its side: its end of stream waits
	timedOut atomic.Bool
	deadline atomic.Int64 // read deadline, ns since loop.epoch
	lines    stratum.LineSplitter
}

// setDeadline moves the session's read deadline to d from now.
func (ev *evState) setDeadline(d time.Duration) {
	ev.deadline.Store(int64(time.Since(ev.loop.epoch) + d))
}

// sweepPeriod is how often a loop looks for sessions past their read
// deadline: a sixteenth of the shortest timeout, so a session is closed
// at most that much after its deadline (as on the goroutine path),
// between 5 ms and 1 s.
func sweepPeriod(cfg *Config) time.Duration {
	return min(max(min(cfg.HandshakeTimeout, cfg.IdleTimeout)/16, 5*time.Millisecond), time.Second)
}

// sweep closes, every period, the sessions whose read deadline passed,
// until the loop closes.
func (l *eventLoop) sweep(period time.Duration) {
	defer close(l.sweepEnded)
	t := time.NewTicker(period)
	defer t.Stop()
	var late []*session
	for {
		select {
		case <-l.stopSweep:
			return
		case <-t.C:
		}
		now := int64(time.Since(l.epoch))
		late = late[:0]
		l.mu.Lock()
		for _, s := range l.byID {
			if ev := s.ev.Load(); ev != nil && ev.deadline.Load() <= now {
				late = append(late, s)
			}
		}
		l.mu.Unlock()
		for i, s := range late {
			if ev := s.ev.Load(); ev != nil && ev.timedOut.CompareAndSwap(false, true) {
				s.abort()
			}
			late[i] = nil
		}
	}
}

// readBufPool holds the read buffers of sessions that are reading.
var readBufPool = sync.Pool{New: func() any { b := make([]byte, 4096); return &b }}

// newEventLoop starts an event loop, or returns nil when it cannot (the
// sessions then get goroutines of their own).
func newEventLoop(log *slog.Logger) *eventLoop {
	if !eventLoopEnabled {
		return nil
	}
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		log.Warn("event loop unavailable: one goroutine per session", "err", err)
		return nil
	}
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err == nil {
		ev := unix.EpollEvent{Events: unix.EPOLLIN}
		err = unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, efd, &ev) // data 0: the stop signal
		if err != nil {
			unix.Close(efd)
		}
	}
	if err != nil {
		unix.Close(epfd)
		log.Warn("event loop unavailable: one goroutine per session", "err", err)
		return nil
	}
	l := &eventLoop{log: log, epfd: epfd, wake: efd, byID: make(map[uint64]*session), done: make(chan struct{}),
		epoch: time.Now(), stopSweep: make(chan struct{})}
	l.rqCond.L = &l.rqMu
	go l.run()
	return l
}

// eventLoopEnabled turns the event loop off for tests of the goroutine
// path.
var eventLoopEnabled = true

func (l *eventLoop) run() {
	defer close(l.done)
	events := make([]unix.EpollEvent, 256)
	for {
		n, err := unix.EpollWait(l.epfd, events, -1)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			l.log.Error("event loop: epoll_wait failed", "err", err)
			return
		}
		for i := range n {
			id := uint64(uint32(events[i].Fd)) | uint64(uint32(events[i].Pad))<<32
			if id == 0 {
				return // stop
			}
			l.mu.Lock()
			s := l.byID[id]
			l.mu.Unlock()
			if s != nil {
				if ev := s.ev.Load(); ev != nil {
					if events[i].Events&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
						ev.hup.Store(true) // before the wake, which reads it
					}
					ev.wake(s)
				}
			}
		}
	}
}

// close stops the loop; every session must have ended.
func (l *eventLoop) close() {
	if l == nil {
		return
	}
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	unix.Write(l.wake, one[:])
	<-l.done
	l.sweepMu.Lock()
	select {
	case <-l.stopSweep:
	default:
		close(l.stopSweep)
	}
	ended := l.sweepEnded
	l.sweepMu.Unlock()
	if ended != nil {
		<-ended
	}
	l.rqMu.Lock()
	l.stopping = true
	l.rqCond.Broadcast()
	l.rqMu.Unlock()
	unix.Close(l.wake)
	unix.Close(l.epfd)
}

// add puts s on the loop and starts reading it; done is called once the
// session has ended. It returns false, having done nothing, for a
// connection the loop cannot poll.
func (l *eventLoop) add(ctx context.Context, s *session, done func()) bool {
	if l == nil {
		return false
	}
	tc, ok := s.conn.(syscall.Conn) // TCP, or TCP behind a PROXY header
	if !ok {
		return false
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return false
	}
	ev := &evState{loop: l, raw: raw, ctx: ctx, done: done, lines: stratum.NewLineSplitter(s.c.cfg.MaxLineBytes)}
	ev.setDeadline(s.readTimeout())
	l.sweepOnce.Do(func() {
		l.sweepMu.Lock()
		defer l.sweepMu.Unlock()
		select {
		case <-l.stopSweep: // closing: no sweeper
		default:
			l.sweepEnded = make(chan struct{})
			go l.sweep(sweepPeriod(&s.c.cfg))
		}
	})
	s.ev.Store(ev)
	l.mu.Lock()
	l.byID[s.id] = s
	l.mu.Unlock()
	var cerr error
	err = raw.Control(func(fd uintptr) {
		e := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(uint32(s.id)), Pad: int32(uint32(s.id >> 32))}
		cerr = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, int(fd), &e)
	})
	if err != nil || cerr != nil {
		l.mu.Lock()
		delete(l.byID, s.id)
		l.mu.Unlock()
		s.ev.Store(nil)
		return false
	}
	ev.wake(s) // anything sent before it was registered
	return true
}

// remove takes s off the loop.
func (l *eventLoop) remove(s *session) {
	l.mu.Lock()
	delete(l.byID, s.id)
	l.mu.Unlock()
	s.ev.Load().raw.Control(func(fd uintptr) {
		unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, int(fd), nil)
	})
}

// wake makes sure a goroutine reads the session: it starts one, or tells
// the running one to read once more before it ends.
func (ev *evState) wake(s *session) {
	if ev.running.CompareAndSwap(false, true) {
		ev.loop.start(s)
		return
	}
	ev.again.Store(true)
}

// serve reads the session until its socket is empty, again while wakes
// arrived meanwhile, and ends the session when reading fails.
func (ev *evState) serve(s *session) {
	for {
		ev.again.Store(false)
		if !ev.readReady(s) {
			// running stays set: nothing reads this session again.
			ev.loop.remove(s)
			s.teardown()
			ev.done()
			return
		}
		ev.running.Store(false)
		if !ev.again.Load() || !ev.running.CompareAndSwap(false, true) {
			return
		}
	}
}

// readReady reads and handles what the socket holds. It returns true once
// the socket is empty (the read deadline restarted) and false when the
// session must end.
func (ev *evState) readReady(s *session) bool {
	bp := readBufPool.Get().(*[]byte)
	defer readBufPool.Put(bp)
	buf := *bp
	var sub stratum.Submit
	handle := func(line []byte) bool { return s.handleLine(ev.ctx, line, &sub) }
	for {
		var n int
		var rerr error
		err := ev.raw.Read(func(fd uintptr) bool {
			for {
				n, rerr = unix.Read(int(fd), buf)
				if rerr != unix.EINTR {
					return true // never wait: an empty socket ends this read
				}
			}
		})
		if err == nil {
			err = rerr
		}
		switch {
		case err == nil && n > 0:
			ok, ferr := ev.lines.Feed(buf[:n], handle)
			if ferr != nil {
				s.logClose(ferr)
				return false
			}
			if !ok {
				return false
			}
			if n < len(buf) && !ev.hup.Load() {
				// A short read emptied the socket; what arrives next
				// is a new edge, so a new wake. Not so the end of the
				// stream of a peer that has hung up: its edge may have
				// come with the data just read (or while the lines
				// before were handled), and none follows, so the
				// session reads on to it.
				ev.setDeadline(s.readTimeout())
				return true
			}
		case err == nil:
			if ev.lines.Pending() > 0 {
				s.logClose(io.ErrUnexpectedEOF)
			} else {
				s.logClose(io.EOF)
			}
			return false
		case errors.Is(err, unix.EAGAIN):
			ev.setDeadline(s.readTimeout())
			return true
		case ev.timedOut.Load():
			s.c.log.Info("closing miner: read deadline passed", "remote", s.remote)
			return false
		default:
			s.logClose(err)
			return false
		}
	}
}

// writeNow writes as much of b as the socket takes at once, without
// waiting and without a write deadline: n bytes went out. A full socket
// buffer is not an error (n < len(b)); the caller sends the rest the
// ordinary way, with a deadline. ok is false when the descriptor could
// not be used as it stands (closed, or a write deadline already passed):
// nothing was written and the caller takes the ordinary way. A new job
// for thousands of sessions is thousands of such writes, and the
// deadline's timer work was a tenth of each (BenchmarkBroadcast).
func (ev *evState) writeNow(b []byte) (n int, ok bool, err error) {
	rerr := ev.raw.Write(func(fd uintptr) bool {
		for n < len(b) {
			k, e := unix.Write(int(fd), b[n:])
			if e == unix.EINTR {
				continue
			}
			if e != nil {
				if e != unix.EAGAIN {
					err = e
				}
				break
			}
			n += k
		}
		return true
	})
	if rerr != nil {
		return 0, false, nil
	}
	if n < len(b) && err == nil {
		directWritesShort.Add(1)
	}
	return n, true, err
}

// directWritesShort counts direct writes that left a remainder for the
// ordinary path (a full socket buffer); tests read it.
var directWritesShort atomic.Int64
