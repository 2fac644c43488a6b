package loadtest

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// manySources reports whether Run spreads its sessions over several
// 127.x source addresses. On Linux the whole of 127.0.0.0/8 is local and
// IP_BIND_ADDRESS_NO_PORT lets one source address reach past the
// ephemeral-port range, so a run can hold far more sessions than one
// address has ports.
const manySources = true

// bindNoPort lets the kernel pick the source port at connect time, by the
// whole 4-tuple, instead of at bind time: without it a bound source
// address runs out of ports early, TIME_WAIT ones included.
func bindNoPort(network, address string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
	})
	if err != nil {
		return err
	}
	return serr
}
