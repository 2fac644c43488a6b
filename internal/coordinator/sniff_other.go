//go:build !unix

package coordinator

import "net"

// peek is the Unix MSG_PEEK (sniff_unix.go); elsewhere the first bytes
// are read and replayed.
func peek(net.Conn, []byte) (int, error) { return 0, nil }
