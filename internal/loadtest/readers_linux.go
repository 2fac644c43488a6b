//go:build linux

package loadtest

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The epoll readers: a few goroutines, each waiting in epoll_wait
// (edge-triggered) on its share of the sessions, read every ready socket
// until it is empty into one buffer per loop, cut the lines and handle
// them on the spot (Miner.feed: the notify's arrival recorded, a share's
// answer counted). A session owns no goroutine and no read buffer; what
// it keeps between reads is an unfinished line. Each socket is taken out
// of Go's runtime poller first (fdConn), so an arrival wakes one thread,
// the loop's.

// loopBufSize is the read buffer of one event loop.
const loopBufSize = 64 << 10

// startReaders starts reading every miner, with epoll loops unless mode
// is "goroutines" or epoll is unavailable, and returns how. stop closes
// every session and waits for the readers.
func startReaders(ctx context.Context, miners []*Miner, mode string, log *slog.Logger) (stop func(), used string) {
	if mode != "goroutines" {
		stop, err := startEventReaders(miners)
		if err == nil {
			return stop, "epoll"
		}
		log.Warn("epoll readers unavailable: one goroutine per session", "err", err)
	}
	return startGoroutineReaders(ctx, miners), "goroutines"
}

// readLoop is one epoll instance and the sessions registered with it.
type readLoop struct {
	epfd   int
	wake   int // eventfd that stops the loop; epoll data 0
	miners []*Miner
	conns  []*fdConn
	ep     *os.File        // epfd, for the runtime's poller; nil if not
	rc     syscall.RawConn // ep's
	buf    []byte
	done   chan struct{}
	// started is set when run is started; close waits for it then.
	started bool
}

// startEventReaders registers every miner with one of a few epoll loops
// (one per CPU the runtime uses, at most 4) and starts them.
func startEventReaders(miners []*Miner) (stop func(), err error) {
	k := max(1, min(runtime.GOMAXPROCS(0), 4, len(miners)))
	loops := make([]*readLoop, 0, k)
	closeAll := func() {
		for _, l := range loops {
			l.close()
		}
	}
	for range k {
		l, err := newReadLoop()
		if err != nil {
			closeAll()
			return nil, err
		}
		loops = append(loops, l)
	}
	for i, m := range miners {
		if err := loops[i%k].add(m); err != nil {
			closeAll()
			return nil, err
		}
	}
	for _, l := range loops {
		l.started = true
		go l.run()
	}
	return func() {
		closeAll()
		for _, m := range miners {
			m.Close()
		}
	}, nil
}

func newReadLoop() (*readLoop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, efd, &ev); err != nil {
		unix.Close(efd)
		unix.Close(epfd)
		return nil, fmt.Errorf("epoll_ctl: %w", err)
	}
	l := &readLoop{epfd: epfd, wake: efd, buf: make([]byte, loopBufSize), done: make(chan struct{})}
	// Let the runtime poll the epoll descriptor (see run).
	if unix.SetNonblock(epfd, true) == nil {
		l.ep = os.NewFile(uintptr(epfd), "epoll")
		if rc, err := l.ep.SyscallConn(); err == nil {
			l.rc = rc
		}
	}
	return l, nil
}

// add registers m (before the loop runs). The kernel reports a socket
// that already holds data when it is added, so nothing read before is
// missed.
func (l *readLoop) add(m *Miner) error {
	tc, ok := m.conn.(*net.TCPConn)
	if !ok {
		return fmt.Errorf("connection %T is not TCP", m.conn)
	}
	c, err := takeFD(tc)
	if err != nil {
		return err
	}
	m.conn = c
	l.miners = append(l.miners, m)
	l.conns = append(l.conns, c)
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(len(l.miners))} // 1-based; 0 is the stop signal
	c.mu.RLock()
	defer c.mu.RUnlock()
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, c.fd, &ev); err != nil {
		return fmt.Errorf("epoll_ctl: %w", err)
	}
	return nil
}

// run waits for ready sessions and reads them until told to stop. The
// wait itself is the runtime's: the epoll descriptor is registered with
// Go's poller, which parks the goroutine until the descriptor is
// readable (some session is), so an idle loop holds no thread in a
// blocking epoll_wait (whose P the scheduler would hand off and take
// back on every wake). Where the runtime cannot poll it, the loop
// blocks in epoll_wait instead.
func (l *readLoop) run() {
	defer close(l.done)
	events := make([]unix.EpollEvent, 256)
	stopped := false
	if l.rc != nil {
		var werr error
		err := l.rc.Read(func(fd uintptr) bool {
			for {
				n, err := unix.EpollWait(int(fd), events, 0)
				if err == unix.EINTR {
					continue
				}
				if err != nil {
					werr = err
					return true
				}
				if stopped = l.handle(events[:n]); stopped {
					return true
				}
				if n < len(events) {
					return false // nothing more ready: wait for the next edge
				}
			}
		})
		if stopped || (err == nil && werr != nil) {
			return
		}
	}
	for !stopped {
		n, err := unix.EpollWait(l.epfd, events, -1)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return
		}
		stopped = l.handle(events[:n])
	}
}

// handle reads every session in events; it returns true at the stop
// signal.
func (l *readLoop) handle(events []unix.EpollEvent) bool {
	for _, ev := range events {
		if ev.Fd == 0 {
			return true
		}
		l.read(int(ev.Fd) - 1)
	}
	return false
}

// read reads session i until its socket is empty and handles what came.
// A session whose stream ended or went wrong is taken off the loop (its
// connection is closed by stop, as the goroutine readers' is).
func (l *readLoop) read(i int) {
	m := l.miners[i]
	if m == nil {
		return
	}
	for {
		n, err := l.conns[i].read(l.buf)
		at := time.Now()
		switch {
		case err == nil && n > 0:
			if ferr := m.feed(l.buf[:n], at); ferr != nil {
				l.drop(i)
				return
			}
			if n < len(l.buf) {
				return // a short read emptied the socket: the next data is a new edge
			}
		case errors.Is(err, unix.EAGAIN):
			return
		default: // the end of the stream (n == 0) or a read error
			l.drop(i)
			return
		}
	}
}

// drop takes session i off the loop.
func (l *readLoop) drop(i int) {
	c := l.conns[i]
	c.mu.RLock()
	if c.fd >= 0 {
		unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, c.fd, nil)
	}
	c.mu.RUnlock()
	l.miners[i] = nil
}

// close stops the loop (if it runs) and releases its descriptors.
func (l *readLoop) close() {
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	unix.Write(l.wake, one[:])
	if l.started {
		<-l.done
	}
	unix.Close(l.wake)
	if l.ep != nil {
		l.ep.Close() // closes epfd
	} else {
		unix.Close(l.epfd)
	}
}
