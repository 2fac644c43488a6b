package sv2

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// chunkReader returns its data in pieces whose sizes come from sizes, so a
// frame can be split across reads anywhere.
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

func allFrames(t testing.TB) []byte {
	var b []byte
	for _, c := range messageCases() {
		var err error
		if b, err = AppendFrame(b, c.msg); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

func TestFrameReaderSplitReads(t *testing.T) {
	stream := allFrames(t)
	cases := messageCases()
	for _, split := range [][]byte{nil, {0}, {1, 2, 3, 4, 5, 6, 7}, {5, 0, 200, 1}} {
		fr := NewFrameReader(&chunkReader{data: stream, sizes: bytes.Repeat(split, 1000)}, UniformCaps(MaxU24))
		for i, c := range cases {
			h, p, err := fr.Next()
			if err != nil {
				t.Fatalf("split %v frame %d: %v", split, i, err)
			}
			m, err := Decode(h, p)
			if err != nil {
				t.Fatalf("frame %d: %v", i, err)
			}
			if !reflect.DeepEqual(normalize(m), normalize(c.msg)) {
				t.Fatalf("frame %d: %+v", i, m)
			}
		}
		if _, _, err := fr.Next(); err != io.EOF {
			t.Fatalf("after last frame: %v, want io.EOF", err)
		}
	}
}

func TestFrameReaderCapAndTruncation(t *testing.T) {
	// msg_length 0x000101 = 257 over a 256-byte cap: refused before reading.
	big := fixture(t, `0080 1a 010100 | SubmitSharesStandard claiming 257 bytes`)
	fr := NewFrameReader(bytes.NewReader(big), UniformCaps(256))
	if _, _, err := fr.Next(); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("257 over 256: %v", err)
	}
	// The largest length msg_length can carry, with the default cap.
	fr = NewFrameReader(bytes.NewReader(fixture(t, `0000 00 ffffff | 16 MiB - 1`)), nil)
	if _, _, err := fr.Next(); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("16 MiB: %v", err)
	}
	// A header cut short and a payload cut short.
	fr = NewFrameReader(bytes.NewReader([]byte{0, 0, 0}), nil)
	if _, _, err := fr.Next(); err != io.ErrUnexpectedEOF {
		t.Fatalf("3-byte header: %v", err)
	}
	fr = NewFrameReader(bytes.NewReader(fixture(t, `0080 1a 180000 | 24 bytes
	                                                   0100 | only 2`)), nil)
	if _, _, err := fr.Next(); err != io.ErrUnexpectedEOF {
		t.Fatalf("short payload: %v", err)
	}
}

// FuzzFrameReader checks that however a byte stream is split across reads
// the reader yields the frames a direct parse of the bytes yields, never a
// payload over its type's cap from a miner, and that every payload that decodes re-encodes to a
// message that decodes to the same value.
func FuzzFrameReader(f *testing.F) {
	f.Add(allFrames(f), []byte{3, 1, 4, 1, 5})
	f.Add(fixture(f, `0080 1a 180000`), []byte{0})
	f.Add(fixture(f, `0000 00 ffffff`), []byte{})
	f.Fuzz(func(t *testing.T, data, sizes []byte) {
		caps := FromMiner()
		fr := NewFrameReader(&chunkReader{data: data, sizes: sizes}, caps)
		rest := data
		for {
			h, p, err := fr.Next()
			if len(rest) < HeaderSize {
				if len(rest) == 0 && err != io.EOF || len(rest) > 0 && err != io.ErrUnexpectedEOF {
					t.Fatalf("%d bytes left: err %v", len(rest), err)
				}
				return
			}
			want, _ := ParseHeader(rest)
			if want != h {
				t.Fatalf("header %+v, want %+v", h, want)
			}
			if int(want.Length) > caps.Limit(want) {
				if !errors.Is(err, ErrFrameTooLarge) {
					t.Fatalf("length %d: err %v", want.Length, err)
				}
				return
			}
			if len(rest)-HeaderSize < int(want.Length) {
				if err != io.ErrUnexpectedEOF {
					t.Fatalf("short payload: err %v", err)
				}
				return
			}
			if err != nil || !bytes.Equal(p, rest[HeaderSize:HeaderSize+int(want.Length)]) {
				t.Fatalf("payload %x err %v", p, err)
			}
			rest = rest[HeaderSize+int(want.Length):]
			m, err := Decode(h, p)
			if err != nil || m == nil {
				continue
			}
			again, err := AppendPayload(nil, m)
			if err != nil {
				t.Fatalf("re-encode %s: %v", MessageName(h.MsgType), err)
			}
			m2, err := Decode(h, again)
			if err != nil {
				t.Fatalf("re-decode %s: %v", MessageName(h.MsgType), err)
			}
			// Compared as bytes: a NaN F32 is not DeepEqual to itself.
			if third, _ := AppendPayload(nil, m2); !bytes.Equal(third, again) {
				t.Fatalf("round trip %s: %x then %x", MessageName(h.MsgType), again, third)
			}
		}
	})
}

// TestWriteSeedCorpus writes testdata/fuzz seeds when SV2_WRITE_CORPUS is
// set; the normal run replays the files it wrote.
func TestWriteSeedCorpus(t *testing.T) {
	if os.Getenv("SV2_WRITE_CORPUS") == "" {
		t.Skip("set SV2_WRITE_CORPUS=1 to rewrite the seed corpus")
	}
	write := func(target, name string, args ...[]byte) {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		s := "go test fuzz v1\n"
		for _, a := range args {
			s += fmt.Sprintf("[]byte(%q)\n", a)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range messageCases() {
		b, _ := AppendFrame(nil, c.msg)
		name := ""
		for _, r := range c.name {
			if r == ' ' || r == '.' {
				r = '-'
			}
			name += string(r)
		}
		write("FuzzFrameReader", name, b, []byte{1, 7, 2})
	}
	write("FuzzFrameReader", "over-cap", fixture(t, `0080 1a 010400`), nil)
	write("FuzzFrameReader", "bad-option", fixture(t, `0080 15 2d0000 01000000 02000000 02`), []byte{0})
	write("FuzzFrameReader", "extension-frame", fixture(t, `01c0 07 030000 010203`), nil)
	write("FuzzFrameReader", "SubmitSharesExtended-over-type-cap", fixture(t, `0080 1b 3a0000`), nil)
	write("FuzzFrameReader", "SetupConnection-at-cap", AppendHeader(nil, Header{Length: maxSetupConnection}), nil)
	b, _ := AppendFrame(nil, maximal(TypeSubmitSharesExtended))
	write("FuzzFrameReader", "SubmitSharesExtended-largest", b, []byte{0, 9, 1})
	writeTransportSeeds(t, write)
}
