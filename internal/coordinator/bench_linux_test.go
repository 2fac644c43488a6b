package coordinator

import (
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"
)

// BenchmarkLoopbackWriteFloor is the kernel's part of a broadcast alone:
// one write(2) of a mining.notify-sized buffer to each of n loopback TCP
// sockets whose peers are plain descriptors nobody polls, from one
// goroutine, nothing else. BenchmarkBroadcast's ns/session next to this
// one's is what the coordinator adds to the system call; this one is the
// floor a loopback notify cannot go below on the machine it runs on.
func BenchmarkLoopbackWriteFloor(b *testing.B) {
	for _, n := range []int{1000, 5000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			port := ln.Addr().(*net.TCPAddr).Port
			fds := make([]int, 0, n)
			for range n {
				c, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
				if err != nil {
					b.Fatal(err)
				}
				defer syscall.Close(c)
				if err := syscall.Connect(c, &syscall.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
					b.Fatal(err)
				}
				s, err := ln.Accept()
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				f, err := s.(*net.TCPConn).File() // a blocking duplicate
				if err != nil {
					b.Fatal(err)
				}
				defer f.Close()
				fds = append(fds, int(f.Fd()))
				// The peers never read: keep what b.N rounds send within
				// the socket buffers.
				syscall.SetsockoptInt(c, syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4<<20)
			}
			msg := make([]byte, 346) // a new-block mining.notify with an empty branch
			b.ResetTimer()
			start := time.Now()
			for range b.N {
				for _, fd := range fds {
					if _, err := syscall.Write(fd, msg); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(time.Since(start).Nanoseconds())/float64(b.N*n), "ns/session")
		})
	}
}
