//go:build unix

package clustertest

import "syscall"

// Pause stops the server process (SIGSTOP) without closing its sockets:
// clients stay connected and get no answers, as from a server stalled
// under load. Resume lets it go on.
func (s *NATSServer) Pause() { s.signal(syscall.SIGSTOP) }

// Resume continues a paused server (SIGCONT).
func (s *NATSServer) Resume() { s.signal(syscall.SIGCONT) }

func (s *NATSServer) signal(sig syscall.Signal) {
	s.mu.Lock()
	cmd := s.cmd
	s.mu.Unlock()
	if cmd != nil {
		cmd.Process.Signal(sig)
	}
}
