//go:build !linux

package loadtest

import "syscall"

// manySources is false off Linux: macOS configures only 127.0.0.1 on its
// loopback interface and neither macOS nor Windows has
// IP_BIND_ADDRESS_NO_PORT, so every session connects from the default
// source address and a run holds at most about one ephemeral-port range
// of sessions (16,384 by default on both).
const manySources = false

// bindNoPort is never installed off Linux (see manySources); it sets no
// option.
func bindNoPort(network, address string, c syscall.RawConn) error { return nil }
