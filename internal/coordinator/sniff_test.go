package coordinator

import (
	"io"
	"net"
	"runtime"
	"testing"
	"time"
)

// TestSniffV1Table: what counts as V1 (a JSON object starting with a
// key, whitespace allowed) and what is left undecided.
func TestSniffV1Table(t *testing.T) {
	for _, tc := range []struct {
		in          string
		v1, decided bool
	}{
		{`{"id":1}`, true, true},
		{" \r\n\t{ \"id\"", true, true},
		{"{", false, false},
		{"  ", false, false},
		{"", false, false},
		{"{}", false, true},
		{"{x", false, true},
		{"\x00{\"", false, true},
		{"PROXY TCP4", false, true},
		{"GET /", false, true},
	} {
		v1, decided := sniffV1([]byte(tc.in))
		if v1 != tc.v1 || decided != tc.decided {
			t.Errorf("sniffV1(%q) = %v, %v; want %v, %v", tc.in, v1, decided, tc.v1, tc.decided)
		}
	}
}

// TestSniffPeeksTCPWithoutReading: over TCP on Unix the detection peeks
// (the connection handed on is the TCP connection itself, so a V1
// session can go on the event loop) and the session still reads every
// byte; elsewhere the bytes are replayed.
func TestSniffPeeksTCPWithoutReading(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	const line = `{"id":1,"method":"mining.subscribe","params":[]}` + "\n"
	io.WriteString(nc, line)
	nc.(*net.TCPConn).CloseWrite()
	sc.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, v1, err := sniff(sc)
	if err != nil || !v1 {
		t.Fatalf("sniff: v1 %v, err %v", v1, err)
	}
	if _, replayed := got.(*replayConn); replayed == (runtime.GOOS != "windows" && runtime.GOOS != "plan9") {
		t.Fatalf("connection handed on is %T", got)
	}
	all, err := io.ReadAll(got)
	if err != nil || string(all) != line {
		t.Fatalf("session read %q (%v), want %q", all, err, line)
	}
}

// FuzzSniffSplit: whatever the first bytes and however they are split
// across reads, sniff decides as sniffV1 does on them all, and the
// connection handed on yields every byte once, in order.
func FuzzSniffSplit(f *testing.F) {
	for _, s := range []string{`{"id":1}` + "\n", " {", "\t{\r\n\"", "{}", "GET / HTTP/1.0\r\n\r\n", "\xff\x00{\"abc", "                    "} {
		f.Add([]byte(s), uint8(1))
	}
	f.Fuzz(func(t *testing.T, data []byte, cut uint8) {
		a, b := net.Pipe()
		defer a.Close()
		defer b.Close()
		at := min(int(cut), len(data))
		go func() {
			a.Write(data[:at])
			a.Write(data[at:])
			a.Close()
		}()
		got, v1, err := sniff(b)
		want, decided := sniffV1(data[:min(len(data), sniffMax)])
		if err != nil {
			if decided && len(data) > 0 {
				t.Fatalf("sniff(%q) failed though decidable: %v", data, err)
			}
			return
		}
		if v1 != (want && decided) {
			t.Fatalf("sniff(%q) v1 %v, sniffV1 %v decided %v", data, v1, want, decided)
		}
		rest, _ := io.ReadAll(got)
		if string(rest) != string(data) {
			t.Fatalf("handed on %q, want %q", rest, data)
		}
	})
}
