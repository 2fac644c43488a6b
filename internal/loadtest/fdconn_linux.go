//go:build linux

package loadtest

import (
	"errors"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// fdConn is a session's socket taken out of Go's runtime poller for an
// epoll reader: a duplicate of the connection's descriptor, after which
// the net.Conn is closed (the socket lives on in the duplicate). Without
// that, every arrival would wake the runtime's poller thread as well as
// the event loop's, for a descriptor no goroutine waits on. Reads are
// the loop's (never blocking); Write blocks in poll(2) while the send
// buffer is full, until the write deadline. The descriptor is used only
// under mu and closed under its write lock, so a closed session's number
// taken by a new descriptor is never read or written.
type fdConn struct {
	mu            sync.RWMutex
	fd            int // -1 once closed
	local, remote net.Addr
	wdl           time.Time // write deadline
	rdl           time.Time // read deadline
}

var errClosed = errors.New("use of closed connection")

// takeFD moves tc's socket to an fdConn; tc is closed.
func takeFD(tc *net.TCPConn) (*fdConn, error) {
	raw, err := tc.SyscallConn()
	if err != nil {
		return nil, err
	}
	nfd := -1
	var derr error
	if err := raw.Control(func(fd uintptr) {
		nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return nil, err
	}
	if derr != nil {
		return nil, os.NewSyscallError("fcntl F_DUPFD_CLOEXEC", derr)
	}
	c := &fdConn{fd: nfd, local: tc.LocalAddr(), remote: tc.RemoteAddr()}
	tc.Close() // the runtime forgets its descriptor; the socket stays open through nfd
	return c, nil
}

// read is one non-blocking read(2) (the loop's); it returns EAGAIN on an
// empty socket and n 0 with no error at the end of the stream.
func (c *fdConn) read(b []byte) (int, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.fd < 0 {
		return 0, errClosed
	}
	for {
		n, err := unix.Read(c.fd, b)
		if err != unix.EINTR {
			return n, err
		}
	}
}

// wait polls for events until the deadline dl (zero: none).
func (c *fdConn) wait(events int16, dl time.Time) error {
	ms := -1
	if !dl.IsZero() {
		d := time.Until(dl)
		if d <= 0 {
			return os.ErrDeadlineExceeded
		}
		ms = int(d/time.Millisecond) + 1
	}
	fds := []unix.PollFd{{Fd: int32(c.fd), Events: events}}
	n, err := unix.Poll(fds, ms)
	if err != nil && err != unix.EINTR {
		return err
	}
	if n == 0 && err == nil {
		return os.ErrDeadlineExceeded
	}
	return nil
}

// Read reads what the socket holds, waiting (in poll) for something.
// The event loop does not use it; it makes fdConn a net.Conn.
func (c *fdConn) Read(b []byte) (int, error) {
	for {
		n, err := c.read(b)
		if err != unix.EAGAIN {
			if n == 0 && err == nil && len(b) > 0 {
				return 0, net.ErrClosed
			}
			return n, err
		}
		c.mu.RLock()
		err = c.wait(unix.POLLIN, c.rdl)
		c.mu.RUnlock()
		if err != nil {
			return 0, err
		}
	}
}

// Write writes all of b, waiting in poll while the send buffer is full.
func (c *fdConn) Write(b []byte) (int, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.fd < 0 {
		return 0, errClosed
	}
	done := 0
	for done < len(b) {
		n, err := unix.Write(c.fd, b[done:])
		switch {
		case err == unix.EINTR:
		case err == unix.EAGAIN:
			if err := c.wait(unix.POLLOUT, c.wdl); err != nil {
				return done, err
			}
		case err != nil:
			return done, err
		default:
			done += n
		}
	}
	return done, nil
}

// Close closes the descriptor, once.
func (c *fdConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fd < 0 {
		return nil
	}
	err := unix.Close(c.fd)
	c.fd = -1
	return err
}

func (c *fdConn) LocalAddr() net.Addr  { return c.local }
func (c *fdConn) RemoteAddr() net.Addr { return c.remote }

func (c *fdConn) SetDeadline(t time.Time) error {
	c.SetReadDeadline(t)
	return c.SetWriteDeadline(t)
}

// The deadlines are read by Read and Write, which hold mu's read lock
// across their use; they are set only by the session's writer (Submit,
// under Miner.wmu), so they take the write lock.
func (c *fdConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.rdl = t
	c.mu.Unlock()
	return nil
}

func (c *fdConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	c.wdl = t
	c.mu.Unlock()
	return nil
}
