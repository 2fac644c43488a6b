package coordinator_test

import (
	"net"
	"sync"
)

// pipeListener is a net.Listener of in-memory connections (net.Pipe):
// inside a testing/synctest bubble its reads, writes and deadlines run on
// the bubble's virtual clock.
type pipeListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

// dial returns the client end of a new connection the listener accepts.
func (l *pipeListener) dial() net.Conn { return l.dialFrom("") }

// dialFrom is dial with the server end's remote address set to ip (port
// 1), for the per-address rules; "" leaves net.Pipe's own address.
func (l *pipeListener) dialFrom(ip string) net.Conn {
	var server net.Conn
	server, client := net.Pipe()
	if ip != "" {
		server = addrConn{server, &net.TCPAddr{IP: net.ParseIP(ip), Port: 1}}
	}
	select {
	case l.conns <- server:
	case <-l.done:
		server.Close()
	}
	return client
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

// addrConn is a connection with a given remote address.
type addrConn struct {
	net.Conn
	remote net.Addr
}

func (c addrConn) RemoteAddr() net.Addr { return c.remote }
