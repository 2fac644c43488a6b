// Package proxyproto reads the PROXY protocol header (versions 1 and 2,
// as HAProxy's send-proxy and send-proxy-v2 write it) that a TCP proxy
// puts in front of a client's bytes, and wraps a listener so that the
// connections of trusted proxies report the client's address as their
// remote address. docs/proxy-protocol.md says how powcoord uses it.
package proxyproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
)

// Header is a decoded PROXY header.
type Header struct {
	// Version is 1 (text) or 2 (binary).
	Version int
	// Source is the client's address and port, Destination the address
	// it connected to. Both are invalid (the zero value) for a header
	// that carries no TCP address: v1 UNKNOWN, v2 LOCAL (a proxy's own
	// health check) or a v2 family other than TCP over IPv4 or IPv6. The
	// connection's own addresses apply then.
	Source, Destination netip.AddrPort
}

// Limits of the format.
const (
	// MaxV1 is the longest version 1 header, CRLF included.
	MaxV1 = 107
	// v2Fixed is the version 2 signature, version/command, family and
	// length bytes.
	v2Fixed = 16
)

// v2Signature starts every version 2 header.
var v2Signature = []byte("\r\n\r\n\x00\r\nQUIT\n")

// ErrNotProxy reports a stream that does not start with a PROXY header.
var ErrNotProxy = errors.New("not a PROXY protocol header")

// ErrInvalid reports a PROXY header that starts right but is malformed.
var ErrInvalid = errors.New("invalid PROXY protocol header")

// StartsWithHeader reports whether b starts with a PROXY header's
// signature: "PROXY " (version 1) or the 12-byte version 2 signature.
func StartsWithHeader(b []byte) bool {
	return bytes.HasPrefix(b, []byte("PROXY ")) || bytes.HasPrefix(b, v2Signature)
}

// Read reads one PROXY header from r, version 1 or 2, and not a byte
// more: what follows it in r is the client's. Reads are sized so that
// they never pass the header's end, however r splits its input.
func Read(r io.Reader) (Header, error) {
	var buf [MaxV1]byte
	if _, err := io.ReadFull(r, buf[:12]); err != nil {
		return Header{}, fmt.Errorf("proxyproto: reading the first 12 bytes: %w", err)
	}
	if bytes.Equal(buf[:12], v2Signature) {
		return readV2(r, &buf)
	}
	if string(buf[:6]) != "PROXY " {
		return Header{}, fmt.Errorf("proxyproto: stream starts %q: %w", buf[:12], ErrNotProxy)
	}
	return readV1(r, &buf)
}

// readV1 reads the rest of a text header whose first 12 bytes are in buf.
func readV1(r io.Reader, buf *[MaxV1]byte) (Header, error) {
	n := 12
	// The shortest header of each protocol: reading up to it cannot
	// pass the CRLF.
	shortest := 15 // "PROXY UNKNOWN\r\n"
	switch string(buf[6:11]) {
	case "TCP4 ":
		shortest = len("PROXY TCP4 0.0.0.0 0.0.0.0 0 0\r\n")
	case "TCP6 ":
		shortest = len("PROXY TCP6 :: :: 0 0\r\n")
	}
	for {
		if n >= 2 && buf[n-2] == '\r' && buf[n-1] == '\n' {
			break
		}
		if n >= MaxV1 {
			return Header{}, fmt.Errorf("proxyproto: v1 header %q: no CRLF within %d bytes: %w", buf[:n], MaxV1, ErrInvalid)
		}
		// Up to the shortest header, then two bytes at a time (the CRLF
		// cannot end within them unless the last byte is CR: then one).
		want := max(shortest-n, 2)
		if buf[n-1] == '\r' {
			want = 1
		}
		want = min(want, MaxV1-n)
		k, err := io.ReadFull(r, buf[n:n+want])
		n += k
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return Header{}, fmt.Errorf("proxyproto: v1 header %q cut short: %w", buf[:n], err)
		}
	}
	return parseV1(string(buf[:n-2]))
}

// parseV1 parses a text header line without its CRLF.
func parseV1(line string) (Header, error) {
	bad := func(why string) (Header, error) {
		return Header{}, fmt.Errorf("proxyproto: v1 header %q: %s: %w", line, why, ErrInvalid)
	}
	if i := strings.IndexAny(line, "\r\n"); i >= 0 {
		return bad("CR or LF inside the line")
	}
	f := strings.Split(line, " ")
	if len(f) < 2 || f[0] != "PROXY" {
		return bad("not PROXY <protocol>")
	}
	if f[1] == "UNKNOWN" {
		return Header{Version: 1}, nil // the rest is ignored, as the specification says
	}
	if f[1] != "TCP4" && f[1] != "TCP6" {
		return bad(fmt.Sprintf("protocol %q, want TCP4, TCP6 or UNKNOWN", f[1]))
	}
	if len(f) != 6 {
		return bad(fmt.Sprintf("%d fields, want 6", len(f)))
	}
	var addrs [2]netip.Addr
	for i, s := range f[2:4] {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" || a.Is4() != (f[1] == "TCP4") || a.Is4In6() {
			return bad(fmt.Sprintf("address %q is not an %s address", s, map[string]string{"TCP4": "IPv4", "TCP6": "IPv6"}[f[1]]))
		}
		addrs[i] = a
	}
	var ports [2]uint16
	for i, s := range f[4:6] {
		p, err := strconv.ParseUint(s, 10, 16)
		if err != nil || s != strconv.FormatUint(p, 10) {
			return bad(fmt.Sprintf("port %q is not a number 0..65535", s))
		}
		ports[i] = uint16(p)
	}
	return Header{Version: 1, Source: netip.AddrPortFrom(addrs[0], ports[0]), Destination: netip.AddrPortFrom(addrs[1], ports[1])}, nil
}

// readV2 reads the rest of a binary header whose signature is in buf.
func readV2(r io.Reader, buf *[MaxV1]byte) (Header, error) {
	if _, err := io.ReadFull(r, buf[12:v2Fixed]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return Header{}, fmt.Errorf("proxyproto: v2 header cut short: %w", err)
	}
	verCmd, fam := buf[12], buf[13]
	length := int(binary.BigEndian.Uint16(buf[14:16]))
	if verCmd>>4 != 2 {
		return Header{}, fmt.Errorf("proxyproto: v2 header version %d, want 2: %w", verCmd>>4, ErrInvalid)
	}
	cmd := verCmd & 0xf
	if cmd > 1 {
		return Header{}, fmt.Errorf("proxyproto: v2 command 0x%x, want LOCAL (0) or PROXY (1): %w", cmd, ErrInvalid)
	}
	var addrLen int
	switch fam {
	case 0x11: // TCP over IPv4
		addrLen = 12
	case 0x21: // TCP over IPv6
		addrLen = 36
	}
	if length < addrLen {
		return Header{}, fmt.Errorf("proxyproto: v2 family 0x%02x needs %d address bytes, length is %d: %w", fam, addrLen, length, ErrInvalid)
	}
	h := Header{Version: 2}
	if addrLen > 0 {
		var a [36]byte
		if _, err := io.ReadFull(r, a[:addrLen]); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return Header{}, fmt.Errorf("proxyproto: v2 addresses cut short: %w", err)
		}
		if cmd == 1 {
			if fam == 0x11 {
				h.Source = netip.AddrPortFrom(netip.AddrFrom4([4]byte(a[0:4])), binary.BigEndian.Uint16(a[8:10]))
				h.Destination = netip.AddrPortFrom(netip.AddrFrom4([4]byte(a[4:8])), binary.BigEndian.Uint16(a[10:12]))
			} else {
				h.Source = netip.AddrPortFrom(netip.AddrFrom16([16]byte(a[0:16])), binary.BigEndian.Uint16(a[32:34]))
				h.Destination = netip.AddrPortFrom(netip.AddrFrom16([16]byte(a[16:32])), binary.BigEndian.Uint16(a[34:36]))
			}
		}
	}
	// TLVs (and the addresses of families powcoord does not use) are
	// skipped without being kept.
	if rest := int64(length - addrLen); rest > 0 {
		if n, err := io.CopyN(io.Discard, r, rest); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return Header{}, fmt.Errorf("proxyproto: v2 header of %d bytes cut short after %d: %w", v2Fixed+length, v2Fixed+int64(addrLen)+n, err)
		}
	}
	return h, nil
}
