package coordinator

import (
	"fmt"
	"net"
	"runtime"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// loopbackPairs opens n loopback TCP connections and returns, for each,
// the client's descriptor and a duplicate of the server's (outside Go's
// poller), all closed when b ends.
func loopbackPairs(b *testing.B, n int) (clients, servers []int) {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	for range n {
		c, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { syscall.Close(c) })
		if err := syscall.Connect(c, &syscall.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			b.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			b.Fatal(err)
		}
		f, err := s.(*net.TCPConn).File()
		s.Close()
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { f.Close() })
		clients = append(clients, c)
		servers = append(servers, int(f.Fd()))
	}
	return clients, servers
}

// BenchmarkLoopbackWriteFloor is the kernel's part of a broadcast alone:
// one write(2) of a mining.notify-sized buffer to each of n loopback TCP
// sockets whose peers are plain descriptors nobody polls, from one
// goroutine, nothing else. BenchmarkBroadcast's ns/session next to this
// one's is what the coordinator adds to the system call; this one is the
// floor a loopback notify cannot go below on the machine it runs on.
func BenchmarkLoopbackWriteFloor(b *testing.B) {
	for _, n := range []int{1000, 5000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			clients, fds := loopbackPairs(b, n) // the servers' descriptors are blocking
			for _, c := range clients {
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

// BenchmarkRoundTripFloor is the kernel's part of a share alone: n
// loopback TCP sessions, each sending a mining.submit-sized line and
// waiting for an answer-sized line before its next (the load generator's
// window of 1), served by a peer that does nothing but answer each line.
// Each side is one thread with its own epoll set and non-blocking
// sockets, so a share costs exactly what it must with one share a packet:
// the miner's write and read, the server's read and write, and a share
// of two epoll_wait calls. No parsing, validation, ledger or cluster. The
// shares/s it reports (both sides in one process, on however many cores
// the machine has) is the ceiling for any Stratum server on this machine
// with its miners on the same cores; cpu-µs/share is the CPU both ends
// spend on one share (getrusage of the process).
func BenchmarkRoundTripFloor(b *testing.B) {
	for _, n := range []int{1000, 4000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			clients, servers := loopbackPairs(b, n)
			for _, x := range append(slices.Clone(clients), servers...) {
				syscall.SetsockoptInt(x, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
				if err := syscall.SetNonblock(x, true); err != nil {
					b.Fatal(err)
				}
			}
			submit := []byte(`{"id":12345,"method":"mining.submit","params":["bc1qexampleworkeraddress.rig01","1a2b3c","00000000000001f4","6760a1c2","1d2e3f40"]}` + "\n")
			answer := []byte(`{"id":12345,"result":true,"error":null}` + "\n")
			total := int64(b.N)
			var sent, done atomic.Int64
			loop := func(fds []int, onRead func(fd int) bool, errc chan<- error) {
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
				if err != nil {
					errc <- err
					return
				}
				defer syscall.Close(ep)
				for _, fd := range fds {
					ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(fd)}
					if err := syscall.EpollCtl(ep, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
						errc <- err
						return
					}
				}
				events := make([]syscall.EpollEvent, 256)
				for done.Load() < total {
					k, err := syscall.EpollWait(ep, events, 10)
					if err != nil && err != syscall.EINTR {
						errc <- err
						return
					}
					for _, ev := range events[:max(k, 0)] {
						if !onRead(int(ev.Fd)) {
							errc <- fmt.Errorf("session %d failed", ev.Fd)
							return
						}
					}
				}
				errc <- nil
			}
			buf := make([]byte, 4096)
			sbuf := make([]byte, 4096)
			// A read may hold several lines (never here with a window of
			// one) or part of one; counting newlines is the whole parse.
			server := func(fd int) bool {
				k, err := syscall.Read(fd, sbuf)
				if err == syscall.EAGAIN {
					return true
				}
				if err != nil || k == 0 {
					return done.Load() >= total
				}
				for _, c := range sbuf[:k] {
					if c == '\n' {
						if _, err := syscall.Write(fd, answer); err != nil {
							return false
						}
					}
				}
				return true
			}
			client := func(fd int) bool {
				k, err := syscall.Read(fd, buf)
				if err == syscall.EAGAIN {
					return true
				}
				if err != nil || k == 0 {
					return false
				}
				for _, c := range buf[:k] {
					if c == '\n' {
						done.Add(1)
					}
				}
				if sent.Add(1) <= total {
					if _, err := syscall.Write(fd, submit); err != nil {
						return false
					}
				}
				return true
			}
			cpu0 := processCPU()
			b.ResetTimer()
			start := time.Now()
			errc := make(chan error, 2)
			go loop(servers, server, errc)
			go loop(clients, client, errc)
			for _, c := range clients {
				if sent.Add(1) > total {
					break
				}
				if _, err := syscall.Write(c, submit); err != nil {
					b.Fatal(err)
				}
			}
			for range 2 {
				if err := <-errc; err != nil {
					b.Fatal(err)
				}
			}
			elapsed := time.Since(start)
			cpu := processCPU() - cpu0
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "shares/s")
			b.ReportMetric(cpu.Seconds()*1e6/float64(b.N), "cpu-µs/share")
		})
	}
}

// processCPU is the user and system CPU the process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
