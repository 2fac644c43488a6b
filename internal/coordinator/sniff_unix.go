//go:build unix

package coordinator

import (
	"io"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// peek copies into buf the bytes conn has received, without reading them,
// waiting for the first under conn's read deadline. It returns 0 and no
// error when conn cannot be peeked (no file descriptor).
func peek(conn net.Conn, buf []byte) (int, error) {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return 0, nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, nil
	}
	var n int
	var perr error
	err = rc.Read(func(fd uintptr) bool {
		n, _, perr = unix.Recvfrom(int(fd), buf, unix.MSG_PEEK)
		return perr != unix.EAGAIN && perr != unix.EWOULDBLOCK
	})
	if err != nil {
		return 0, err
	}
	if perr == unix.EINTR {
		return 0, nil // read, not peeked
	}
	if perr != nil {
		return 0, perr
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}
