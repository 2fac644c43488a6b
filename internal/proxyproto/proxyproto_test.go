package proxyproto

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// chunkReader hands out its data in pieces whose sizes come from sizes,
// so a header can be split across reads anywhere.
type chunkReader struct {
	data  []byte
	sizes []byte
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := len(r.data)
	if len(r.sizes) > 0 {
		n = int(r.sizes[0])%len(r.data) + 1
		r.sizes = r.sizes[1:]
	}
	n = min(n, len(p))
	copy(p, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// v2 builds a binary header: signature, version/command, family, length,
// then body (addresses and TLVs), annotated hex.
func v2(t testing.TB, annotated string) []byte {
	t.Helper()
	var h strings.Builder
	for _, line := range strings.Split(annotated, "\n") {
		if i := strings.Index(line, "|"); i >= 0 {
			line = line[:i]
		}
		h.WriteString(strings.Join(strings.Fields(line), ""))
	}
	b, err := hex.DecodeString(h.String())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type vector struct {
	name string
	in   []byte
	want Header
}

func vectors(t testing.TB) []vector {
	return []vector{
		{"v1-tcp4", []byte("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"),
			Header{Version: 1, Source: ap("192.168.0.1:56324"), Destination: ap("192.168.0.11:443")}},
		{"v1-tcp6", []byte("PROXY TCP6 2001:db8::1 2001:db8::2 65535 3333\r\n"),
			Header{Version: 1, Source: ap("[2001:db8::1]:65535"), Destination: ap("[2001:db8::2]:3333")}},
		{"v1-unknown", []byte("PROXY UNKNOWN\r\n"), Header{Version: 1}},
		{"v1-unknown-longest", []byte("PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"), Header{Version: 1}},
		{"v2-tcp4", v2(t, `0d0a0d0a000d0a515549540a | signature
			21 | version 2, command PROXY
			11 | AF_INET, STREAM
			000c | 12 bytes follow
			0a010203 | source 10.1.2.3
			7f000001 | destination 127.0.0.1
			d431 | source port 54321
			0d05 | destination port 3333`),
			Header{Version: 2, Source: ap("10.1.2.3:54321"), Destination: ap("127.0.0.1:3333")}},
		{"v2-tcp6-tlv", v2(t, `0d0a0d0a000d0a515549540a | signature
			21 | version 2, PROXY
			21 | AF_INET6, STREAM
			002b | 36 address bytes + 7 of TLV
			20010db8000000000000000000000001 | source 2001:db8::1
			00000000000000000000000000000001 | destination ::1
			0050 | source port 80
			0d06 | destination port 3334
			04 0004 00000000 | PP2_TYPE_NOOP, 4 bytes`),
			Header{Version: 2, Source: ap("[2001:db8::1]:80"), Destination: ap("[::1]:3334")}},
		{"v2-local", v2(t, `0d0a0d0a000d0a515549540a | signature
			20 | version 2, command LOCAL (a health check)
			00 | AF_UNSPEC
			0000 | nothing follows`), Header{Version: 2}},
		{"v2-local-inet", v2(t, `0d0a0d0a000d0a515549540a | signature
			20 | LOCAL: the addresses are ignored
			11 | AF_INET, STREAM
			000c | 12
			0a010203 7f000001 d431 0d05`), Header{Version: 2}},
		{"v2-unix", v2(t, `0d0a0d0a000d0a515549540a 21
			31 | AF_UNIX, STREAM: no TCP address
			0004 | 4 bytes (short, but not read as addresses)
			2f746d70`), Header{Version: 2}},
	}
}

// TestReadHeaders reads each vector followed by client bytes, whole and
// split into 1-byte reads: the header decodes to the expected addresses
// and the client's bytes are all left in the stream.
func TestReadHeaders(t *testing.T) {
	for _, v := range vectors(t) {
		for _, sizes := range [][]byte{nil, bytes.Repeat([]byte{0}, 200)} {
			r := &chunkReader{data: append(append([]byte(nil), v.in...), `{"id":1}`...), sizes: sizes}
			h, err := Read(r)
			if err != nil || h != v.want {
				t.Fatalf("%s (split %v): %+v %v, want %+v", v.name, sizes != nil, h, err, v.want)
			}
			if rest, _ := io.ReadAll(r); string(rest) != `{"id":1}` {
				t.Fatalf("%s: the client's bytes after the header are %q", v.name, rest)
			}
		}
	}
}

// TestReadRefusesBadHeaders: each malformed header is refused with an
// error that names what was wrong and the value.
func TestReadRefusesBadHeaders(t *testing.T) {
	for _, c := range []struct {
		in      string
		is      error
		mention string
	}{
		{`{"id":1,"method":"mining.subscribe"}` + "\n", ErrNotProxy, `stream starts "{\"id\":1,\"met"`},
		{"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", ErrInvalid, `protocol "TCP5"`},
		{"PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n", ErrInvalid, `port "65536"`},
		{"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", ErrInvalid, `port "01"`},
		{"PROXY TCP4 2001:db8::1 5.6.7.8 1 2\r\n", ErrInvalid, `address "2001:db8::1" is not an IPv4 address`},
		{"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", ErrInvalid, `address "1.2.3.4" is not an IPv6 address`},
		{"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", ErrInvalid, "7 fields, want 6"},
		{"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n\r\n", ErrInvalid, "CR or LF inside"},
		{"PROXY UNKNOWN " + strings.Repeat("x", 100) + "\r\n", ErrInvalid, "no CRLF within 107 bytes"},
		{"PROXY TCP4 1.2.3.4 5.6.7.8 1 2", io.ErrUnexpectedEOF, "cut short"},
		{"PROX", io.ErrUnexpectedEOF, "first 12 bytes"},
		{string(v2(t, `0d0a0d0a000d0a515549540a 11 11 000c`)), ErrInvalid, "version 1, want 2"},
		{string(v2(t, `0d0a0d0a000d0a515549540a 22 11 000c`)), ErrInvalid, "command 0x2"},
		{string(v2(t, `0d0a0d0a000d0a515549540a 21 21 000c`)), ErrInvalid, "family 0x21 needs 36 address bytes, length is 12"},
		{string(v2(t, `0d0a0d0a000d0a515549540a 21 11 000c 0a010203`)), io.ErrUnexpectedEOF, "addresses cut short"},
		{string(v2(t, `0d0a0d0a000d0a515549540a 21 11 0010 0a010203 7f000001 d431 0d05 01`)), io.ErrUnexpectedEOF, "v2 header of 32 bytes cut short after 29"},
	} {
		_, err := Read(strings.NewReader(c.in))
		if !errors.Is(err, c.is) || !strings.Contains(err.Error(), c.mention) {
			t.Errorf("%q: %v, want %v mentioning %q", c.in, err, c.is, c.mention)
		}
	}
}

func TestStartsWithHeader(t *testing.T) {
	for in, want := range map[string]bool{
		"PROXY TCP4 ":                      true,
		"PROXY ":                           true,
		"PROXY":                            false,
		"\r\n\r\n\x00\r\nQUIT\n!":          true,
		"\r\n\r\n\x00\r\nQUIT":             false,
		`{"id":1}`:                         false,
		"":                                 false,
		"\x16\x03\x01 (a TLS ClientHello)": false,
	} {
		if StartsWithHeader([]byte(in)) != want {
			t.Errorf("StartsWithHeader(%q) = %v", in, !want)
		}
	}
}

// FuzzRead: however the input is split across reads, Read gives the same
// header or error as on the whole input, and leaves the same bytes
// unread: it never reads past a header's end.
func FuzzRead(f *testing.F) {
	for _, v := range vectors(f) {
		f.Add(append(v.in, "tail"...), []byte{3, 0, 7})
	}
	f.Add([]byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r"), []byte{0})
	f.Fuzz(func(t *testing.T, data, sizes []byte) {
		whole := bytes.NewReader(data)
		hw, errw := Read(whole)
		split := &chunkReader{data: append([]byte(nil), data...), sizes: sizes}
		hs, errs := Read(split)
		if hw != hs || (errw == nil) != (errs == nil) {
			t.Fatalf("whole: %+v %v; split: %+v %v", hw, errw, hs, errs)
		}
		if errw != nil {
			if !errors.Is(errw, ErrNotProxy) && !errors.Is(errw, ErrInvalid) && !errors.Is(errw, io.ErrUnexpectedEOF) && !(errors.Is(errw, io.EOF) && len(data) == 0) {
				t.Fatalf("unclassified error: %v", errw)
			}
			return
		}
		if whole.Len() != len(split.data) {
			t.Fatalf("%d bytes left after the whole read, %d after the split one", whole.Len(), len(split.data))
		}
		if hw.Version != 1 && hw.Version != 2 || hw.Source.IsValid() != hw.Destination.IsValid() {
			t.Fatalf("header %+v", hw)
		}
		if hw.Version == 1 && hw.Source.IsValid() {
			// A v1 header with addresses is exactly its canonical text.
			proto := "TCP4"
			if hw.Source.Addr().Is6() {
				proto = "TCP6"
			}
			canon := fmt.Sprintf("PROXY %s %s %s %d %d\r\n", proto, hw.Source.Addr(), hw.Destination.Addr(), hw.Source.Port(), hw.Destination.Port())
			if h2, err := Read(strings.NewReader(canon)); err != nil || h2 != hw {
				t.Fatalf("%q read as %+v; its canonical form %q reads %+v %v", data[:len(data)-whole.Len()], hw, canon, h2, err)
			}
		}
	})
}

// TestWriteSeedCorpus writes testdata/fuzz seeds when
// PROXYPROTO_WRITE_CORPUS is set; the normal run replays them.
func TestWriteSeedCorpus(t *testing.T) {
	if os.Getenv("PROXYPROTO_WRITE_CORPUS") == "" {
		t.Skip("set PROXYPROTO_WRITE_CORPUS=1 to rewrite the seed corpus")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzRead")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name string, data, sizes []byte) {
		s := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n[]byte(%q)\n", data, sizes)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, v := range vectors(t) {
		write(v.name, append(v.in, `{"id":1}`...), []byte{1, 5, 0, 9})
	}
	write("v1-no-crlf", []byte("PROXY UNKNOWN "+strings.Repeat("y", 120)), []byte{2})
	write("v1-bare-lf", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"), nil)
	write("v2-cut-in-tlv", v2(t, `0d0a0d0a000d0a515549540a 21 11 0020 0a010203 7f000001 d431 0d05 04`), []byte{0, 0, 0})
	write("stratum-line", []byte(`{"id":1,"method":"mining.subscribe","params":[]}`+"\n"), nil)
}
