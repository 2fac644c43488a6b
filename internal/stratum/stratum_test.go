package stratum

import (
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestResponseEncoding(t *testing.T) {
	b, err := AppendResponse(nil, json.RawMessage("4"), true, nil)
	if err != nil || string(b) != `{"id":4,"result":true,"error":null}`+"\n" {
		t.Fatalf("%s %v", b, err)
	}
	b, _ = AppendResponse(nil, json.RawMessage(`"x"`), nil, &Error{CodeDuplicate, "Duplicate share"})
	if string(b) != `{"id":"x","result":null,"error":[22,"Duplicate share",null]}`+"\n" {
		t.Fatalf("%s", b)
	}
	m, err := Parse(b[:len(b)-1])
	if err != nil {
		t.Fatal(err)
	}
	if e := m.ResponseError(); e == nil || e.Code != 22 || e.Message != "Duplicate share" {
		t.Fatalf("error round trip %+v", e)
	}
	m, _ = Parse([]byte(`{"id":1,"result":null,"error":{"code":21,"message":"stale"}}`))
	if e := m.ResponseError(); e == nil || e.Code != 21 {
		t.Fatalf("object error form %+v", e)
	}
}

func TestNotifyRoundTrip(t *testing.T) {
	n := &Notify{JobID: "1f", PrevHash: strings.Repeat("ab", 32), Coinb1: "01", Coinb2: "02", Version: "20000000", NBits: "1d00ffff", NTime: "5f5e1000", Clean: true}
	line, err := AppendRequest(nil, nil, "mining.notify", n)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":null,"method":"mining.notify","params":["1f","` + strings.Repeat("ab", 32) + `","01","02",[],"20000000","1d00ffff","5f5e1000",true]}` + "\n"
	if string(line) != want {
		t.Fatalf("notify\n got %s\nwant %s", line, want)
	}
	m, err := Parse(line)
	if err != nil || !m.IsNotification() {
		t.Fatalf("%v %+v", err, m)
	}
	back, err := ParseNotify(m.Params)
	if err != nil || back.JobID != "1f" || !back.Clean || len(back.Branch) != 0 || back.NTime != "5f5e1000" {
		t.Fatalf("%+v %v", back, err)
	}
	if _, err := ParseNotify(json.RawMessage(`["1"]`)); err == nil {
		t.Fatal("short notify accepted")
	}
}

func TestSubmitParse(t *testing.T) {
	s, err := ParseSubmit(json.RawMessage(`["w","1","00000001","5f5e1000","deadbeef","00002000"]`))
	if err != nil || s.VersionBits != "00002000" || s.Nonce != "deadbeef" {
		t.Fatalf("%+v %v", s, err)
	}
	for _, bad := range []string{`["a"]`, `{}`, `[1,2,3,4,5]`, `["1","2","3","4","5","6","7"]`} {
		if _, err := ParseSubmit(json.RawMessage(bad)); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
	if v, err := ParseHex32("ntime", "5f5e1000"); err != nil || v != 0x5f5e1000 {
		t.Fatal(v, err)
	}
	for _, bad := range []string{"5f5e100", "5f5e10000", "zzzzzzzz"} {
		if _, err := ParseHex32("ntime", bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if Hex32(0x0000abcd) != "0000abcd" {
		t.Fatal(Hex32(0xabcd))
	}
}

func TestLineReader(t *testing.T) {
	in := "{\"a\":1}\r\n\n{\"b\":2}\n" + strings.Repeat("x", 300) + "\n"
	lr := NewLineReader(iotest.OneByteReader(strings.NewReader(in)), 200, 16)
	for _, want := range []string{`{"a":1}`, `{"b":2}`} {
		got, err := lr.ReadLine()
		if err != nil || string(got) != want {
			t.Fatalf("got %q %v want %q", got, err, want)
		}
	}
	if _, err := lr.ReadLine(); !errors.Is(err, ErrLineTooLong) {
		t.Fatalf("oversized line: %v", err)
	}
	lr = NewLineReader(strings.NewReader("abc"), 200, 16)
	if _, err := lr.ReadLine(); err != io.ErrUnexpectedEOF {
		t.Fatalf("partial line at EOF: %v", err)
	}
}

func TestParseRejects(t *testing.T) {
	for _, bad := range []string{`{`, `[]`, `{"id":1}`, `nonsense`} {
		if _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
