package sv2

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// The client side shared by every V2 client of ours (the agent's
// standard channel, the proxy's extended channel): the pool URL and the
// connection setup after the Noise handshake.

// ParseURL splits a pool URL "stratum2+tcp://host:port/AUTHORITYKEY" into
// host:port and the pool's x-only authority key. The error names the URL
// and what is wrong with it.
func ParseURL(raw string) (hostport string, authority [32]byte, err error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return "", authority, fmt.Errorf("pool URL %q: %v", raw, err)
	}
	if u.Scheme != "stratum2+tcp" {
		return "", authority, fmt.Errorf("pool URL %q: scheme %q, want stratum2+tcp", raw, u.Scheme)
	}
	key := strings.TrimPrefix(u.Path, "/")
	if key == "" {
		return "", authority, fmt.Errorf("pool URL %q: stratum2+tcp needs the pool authority key as the path: stratum2+tcp://host:port/KEY", raw)
	}
	if u.RawQuery != "" || u.User != nil || u.Fragment != "" {
		return "", authority, fmt.Errorf("pool URL %q: want only stratum2+tcp://host:port/KEY", raw)
	}
	if authority, err = ParseAuthorityKey(key); err != nil {
		return "", authority, fmt.Errorf("pool URL %q: %v", raw, err)
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil {
		return "", authority, fmt.Errorf("pool URL %q: want host:port: %v", raw, err)
	}
	if host == "" {
		return "", authority, fmt.Errorf("pool URL %q: missing host", raw)
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return "", authority, fmt.Errorf("pool URL %q: port %q is not a number in 1..65535", raw, port)
	}
	return net.JoinHostPort(host, port), authority, nil
}

// Setup runs SetupConnection on a connection fresh from ClientHandshake:
// it fills in the endpoint from raw's remote address when m leaves it
// empty, sends m and reads the answer. A SetupConnection.Error comes back
// as an error naming its code and flags.
func Setup(conn *Conn, raw net.Conn, m *SetupConnection) error {
	if m.EndpointHost == "" && raw != nil {
		if host, port, err := net.SplitHostPort(raw.RemoteAddr().String()); err == nil {
			pn, _ := strconv.Atoi(port)
			m.EndpointHost, m.EndpointPort = host, uint16(pn)
		}
	}
	if err := conn.WriteMessages(m); err != nil {
		return err
	}
	_, ans, err := conn.ReadMessage()
	if err != nil {
		return err
	}
	switch a := ans.(type) {
	case *SetupConnectionSuccess:
		return nil
	case *SetupConnectionError:
		return fmt.Errorf("SetupConnection refused: %s (flags %#x)", a.ErrorCode, a.Flags)
	}
	return fmt.Errorf("SetupConnection answered with %T", ans)
}
