package stratum

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"testing"
)

// jsonSubmit is the reference reading of a line: Parse, then ParseSubmit
// when the method is mining.submit.
func jsonSubmit(line []byte) (id []byte, sub *Submit, ok bool) {
	m, err := Parse(line)
	if err != nil || m.Method != "mining.submit" {
		return nil, nil, false
	}
	s, err := ParseSubmit(m.Params)
	if err != nil {
		return nil, nil, false
	}
	return m.ID, s, true
}

// checkSubmitLine fails t when the fast path reads line differently from
// encoding/json.
func checkSubmitLine(t *testing.T, line []byte) bool {
	t.Helper()
	var fast Submit
	id, ok := ParseSubmitLine(line, &fast)
	if !ok {
		return false
	}
	wid, want, wok := jsonSubmit(line)
	if !wok {
		t.Fatalf("fast path accepted %q, encoding/json does not", line)
	}
	if !bytes.Equal(id, wid) || (id == nil) != (wid == nil) {
		t.Fatalf("line %q: id %q (nil %v), encoding/json %q (nil %v)", line, id, id == nil, wid, wid == nil)
	}
	if fast != *want {
		t.Fatalf("line %q: fast %+v, encoding/json %+v", line, fast, *want)
	}
	return true
}

func TestParseSubmitLine(t *testing.T) {
	for _, tc := range []struct {
		line string
		want Submit
		id   string
	}{
		{`{"id":4,"method":"mining.submit","params":["w.1","1a","00000001","5f5e1000","deadbeef"]}`,
			Submit{"w.1", "1a", "00000001", "5f5e1000", "deadbeef", ""}, "4"},
		{` { "params" : [ "w", "2", "0000000000000002", "5f5e1000", "00000000", "00002000" ] , "method" : "mining.submit", "id" : "abc" } `,
			Submit{"w", "2", "0000000000000002", "5f5e1000", "00000000", "00002000"}, `"abc"`},
		{`{"id":-1.5e+3,"method":"mining.submit","params":["","","","",""]}`, Submit{}, "-1.5e+3"},
		{`{"id":null,"method":"mining.submit","params":["a","b","c","d","e"]}`, Submit{"a", "b", "c", "d", "e", ""}, "null"},
		{`{"method":"mining.submit","params":["a","b","c","d","e"]}`, Submit{"a", "b", "c", "d", "e", ""}, ""},
	} {
		var got Submit
		id, ok := ParseSubmitLine([]byte(tc.line), &got)
		if !ok || got != tc.want || string(id) != tc.id {
			t.Errorf("%s: got %+v id %q ok %v, want %+v id %q", tc.line, got, id, ok, tc.want, tc.id)
		}
		checkSubmitLine(t, []byte(tc.line))
	}
	// Left to encoding/json: other methods, escapes, odd keys, wrong
	// arity, trailing bytes, duplicate keys.
	for _, line := range []string{
		`{"id":1,"method":"mining.subscribe","params":[]}`,
		`{"id":1,"method":"mining.submit","params":["a\u0041","b","c","d","e"]}`,
		`{"ID":1,"method":"mining.submit","params":["a","b","c","d","e"]}`,
		`{"id":1,"method":"mining.submit","params":["a","b","c","d"]}`,
		`{"id":1,"method":"mining.submit","params":["a","b","c","d","e","f","g"]}`,
		`{"id":1,"method":"mining.submit","params":["a","b","c","d","e"]}x`,
		`{"id":1,"id":2,"method":"mining.submit","params":["a","b","c","d","e"]}`,
		`{"id":01,"method":"mining.submit","params":["a","b","c","d","e"]}`,
		`{"id":1,"method":"mining.submit","params":["a",null,"c","d","e"]}`,
		`{"id":1,"method":"mining.submit","params":["a","b","c","d","e"],"jsonrpc":"2.0"}`,
		`{"id":1,"method":"mining.submit"}`,
	} {
		var got Submit
		if _, ok := ParseSubmitLine([]byte(line), &got); ok {
			t.Errorf("%s: fast path took it (%+v)", line, got)
		}
	}
}

// FuzzSubmitLine checks that the hand-written mining.submit parser reads
// every line it accepts exactly as encoding/json does (Parse and
// ParseSubmit), whole and with the input split across reads anywhere
// through a LineReader.
func FuzzSubmitLine(f *testing.F) {
	f.Add([]byte(`{"id":4,"method":"mining.submit","params":["w.1","1a","00000001","5f5e1000","deadbeef"]}`+"\n"), []byte{3, 40})
	f.Add([]byte(`{"params":["w","2","00000002","5f5e1000","00000000","00002000"],"method":"mining.submit","id":"x"}`+"\r\n"+`{"id":5,"method":"mining.submit","params":["a","b","c","d","e"]}`+"\n"), []byte{1})
	f.Add([]byte(`{"id":1e5,"method":"mining.submit","params":["a\"","b","c","d","e"]}`+"\n"), []byte{})
	f.Add([]byte(`{"id":1,"method":"mining.authorize","params":["a","b"]}`+"\n"), []byte{2, 2})
	f.Fuzz(func(t *testing.T, data, sizes []byte) {
		checkSubmitLine(t, data)
		lr := NewLineReader(&chunkReader{data: data, sizes: sizes}, 4096, 16)
		for {
			line, err := lr.ReadLine()
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, ErrLineTooLong) {
					t.Fatal(err)
				}
				return
			}
			checkSubmitLine(t, line)
		}
	})
}

// referenceResponse is AppendResponse as written with encoding/json
// throughout: what the reflection-free writer must reproduce.
func referenceResponse(id json.RawMessage, result any, e *Error) []byte {
	if len(id) == 0 {
		id = json.RawMessage("null")
	}
	res, _ := json.Marshal(result)
	buf := append([]byte(`{"id":`), id...)
	buf = append(buf, `,"result":`...)
	buf = append(buf, res...)
	buf = append(buf, `,"error":`...)
	if e == nil {
		buf = append(buf, "null"...)
	} else {
		msg, _ := json.Marshal(e.Message)
		buf = append(buf, "["+strconv.Itoa(e.Code)+","+string(msg)+",null]"...)
	}
	return append(buf, "}\n"...)
}

// FuzzAppendResult checks the reflection-free reply writer byte for byte
// against encoding/json, for every result the share path sends and any
// error message.
func FuzzAppendResult(f *testing.F) {
	f.Add([]byte("4"), uint8(0), false, 0, "")
	f.Add([]byte(`"x"`), uint8(1), true, CodeDuplicate, "duplicate share")
	f.Add([]byte(""), uint8(2), true, -7, "<&>\"\\\n\r\t\b\f\x01\x7f\xff\u2028\u2029é")
	f.Fuzz(func(t *testing.T, id []byte, which uint8, hasErr bool, code int, msg string) {
		result := []any{true, false, nil}[which%3]
		var e *Error
		if hasErr {
			e = &Error{Code: code, Message: msg}
		}
		want := referenceResponse(id, result, e)
		got, err := AppendResponse([]byte("prefix"), id, result, e)
		if err != nil || !bytes.Equal(got, append([]byte("prefix"), want...)) {
			t.Fatalf("AppendResponse(%q, %v, %v) = %q, %v; encoding/json %q", id, result, e, got, err, want)
		}
		if e != nil {
			mj, _ := e.MarshalJSON()
			if !bytes.Equal(mj, want[bytes.Index(want, []byte(`,"error":`))+9:len(want)-2]) {
				t.Fatalf("MarshalJSON %q, want inside %q", mj, want)
			}
		}
	})
}

func ExampleParseSubmitLine() {
	var s Submit
	id, ok := ParseSubmitLine([]byte(`{"id":7,"method":"mining.submit","params":["alice","3","0000002a","5f5e1000","00c0ffee"]}`), &s)
	fmt.Println(string(id), ok, s.Worker, s.JobID, s.Extranonce2, s.NTime, s.Nonce)
	// Output: 7 true alice 3 0000002a 5f5e1000 00c0ffee
}

// FuzzAppendSubmit checks the reflection-free submit writer byte for byte
// against AppendRequest (encoding/json), and that the fast parser reads
// its line back.
func FuzzAppendSubmit(f *testing.F) {
	f.Add(uint64(4), "w.1", "1a", "00000001", "5f5e1000", "deadbeef", "")
	f.Add(uint64(1<<63), "<é\"\\\x00\xff>", "", "", "", "", "1fffe000")
	f.Fuzz(func(t *testing.T, id uint64, w, j, en2, ntime, nonce, vbits string) {
		s := &Submit{w, j, en2, ntime, nonce, vbits}
		want, err := AppendRequest([]byte("x"), id, "mining.submit", s.Params())
		if err != nil {
			t.Fatal(err)
		}
		got := AppendSubmit([]byte("x"), id, s)
		if !bytes.Equal(got, want) {
			t.Fatalf("AppendSubmit %q, AppendRequest %q", got, want)
		}
		checkSubmitLine(t, bytes.TrimSuffix(got[1:], []byte("\n")))
	})
}
