package stratum

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"testing"
)

// chunkReader returns its data in pieces whose sizes come from the fuzzer,
// so a line can be split across reads anywhere.
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

// FuzzLineReader checks that however the input is split across reads, the
// reader yields exactly the lines a plain split yields, and refuses lines
// over the limit.
func FuzzLineReader(f *testing.F) {
	f.Add([]byte("{\"id\":1}\n{\"id\":2}\r\n"), []byte{1, 2, 3})
	f.Add([]byte("\n\n   \nabc\n"), []byte{0})
	f.Add(bytes.Repeat([]byte("x"), 300), []byte{7, 200})
	f.Fuzz(func(t *testing.T, data, sizes []byte) {
		const max = 64
		lr := NewLineReader(&chunkReader{data: data, sizes: sizes}, max, 16)
		var want [][]byte
		rest := data
		for {
			i := bytes.IndexByte(rest, '\n')
			if i < 0 {
				break
			}
			line := bytes.TrimSuffix(rest[:i], []byte("\r"))
			rest = rest[i+1:]
			want = append(want, line)
		}
		for _, w := range want {
			if len(w) > max {
				if _, err := lr.ReadLine(); !errors.Is(err, ErrLineTooLong) {
					t.Fatalf("line of %d bytes: err %v", len(w), err)
				}
				return
			}
			if len(bytes.TrimSpace(w)) == 0 {
				continue
			}
			got, err := lr.ReadLine()
			if err != nil || !bytes.Equal(got, w) {
				t.Fatalf("got %q %v, want %q", got, err, w)
			}
		}
		if _, err := lr.ReadLine(); err == nil {
			t.Fatal("a line after the last newline")
		}
	})
}

// FuzzParse feeds arbitrary lines to the message parsers: they may refuse,
// never panic, and what they accept re-encodes.
func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"id":1,"method":"mining.submit","params":["w","1","00000000","5f5e1000","00000000"]}`))
	f.Add([]byte(`{"id":null,"method":"mining.notify","params":["1","` + string(bytes.Repeat([]byte("0"), 64)) + `","01","02",[],"20000000","1d00ffff","5f5e1000",true]}`))
	f.Add([]byte(`{"id":2,"result":null,"error":[21,"stale",null]}`))
	f.Add([]byte(`{"id":2,"result":null,"error":{"code":1}}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		m, err := Parse(line)
		if err != nil {
			return
		}
		m.IsNotification()
		m.ResponseError()
		if s, err := ParseSubmit(m.Params); err == nil {
			if _, err := json.Marshal(s.Params()); err != nil {
				t.Fatal(err)
			}
		}
		if n, err := ParseNotify(m.Params); err == nil {
			if _, err := n.MarshalJSON(); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// FuzzLineSplitter checks that however the input is cut into reads, the
// splitter yields exactly the lines a plain split yields (as LineReader
// does), and refuses a line over the limit.
func FuzzLineSplitter(f *testing.F) {
	f.Add([]byte("{\"id\":1}\n{\"id\":2}\r\n"), []byte{1, 2, 3})
	f.Add([]byte("\n\n   \nabc\n"), []byte{0})
	f.Add(bytes.Repeat([]byte("x"), 300), []byte{7, 200})
	f.Add([]byte("0123456789012345678901234567890123456789012345678901234567890123\r\nx\n"), []byte{63, 1})
	f.Fuzz(func(t *testing.T, data, sizes []byte) {
		const max = 64
		var want [][]byte
		tooLong := false
		rest := data
		for {
			i := bytes.IndexByte(rest, '\n')
			if i < 0 {
				// An unfinished line over the limit is refused as soon
				// as it is seen.
				tooLong = len(rest) > max+1
				break
			}
			line := bytes.TrimSuffix(rest[:i], []byte("\r"))
			rest = rest[i+1:]
			if len(line) > max {
				tooLong = true
				break
			}
			if len(bytes.TrimSpace(line)) > 0 {
				want = append(want, append([]byte(nil), line...))
			}
		}
		ls := NewLineSplitter(max)
		var got [][]byte
		var err error
		cr := &chunkReader{data: data, sizes: sizes}
		buf := make([]byte, 16)
		for err == nil {
			n, rerr := cr.Read(buf)
			if rerr != nil {
				break
			}
			_, err = ls.Feed(buf[:n], func(line []byte) bool {
				got = append(got, append([]byte(nil), line...))
				return true
			})
		}
		if tooLong != (err != nil) || (err != nil && !errors.Is(err, ErrLineTooLong)) {
			t.Fatalf("err %v, want too long %v", err, tooLong)
		}
		if len(got) != len(want) {
			t.Fatalf("%d lines %q, want %d %q", len(got), got, len(want), want)
		}
		for i := range want {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("line %d: %q, want %q", i, got[i], want[i])
			}
		}
		if err == nil && ls.Pending() != len(rest) {
			t.Fatalf("pending %d bytes, want %d", ls.Pending(), len(rest))
		}
	})
}
