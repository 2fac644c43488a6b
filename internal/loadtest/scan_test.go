package loadtest

import (
	"fmt"
	"testing"
	"time"

	"github.com/powcoord/powcoord/internal/stratum"
)

func TestScanNotify(t *testing.T) {
	prev := "00000000440b921e1b77c6c0487ae5616de67f788f44ae2a5af6e2194d16b6f8"
	for _, clean := range []bool{true, false} {
		n := &stratum.Notify{JobID: "1f", PrevHash: prev, Coinb1: "01", Coinb2: "02", Branch: []string{}, Version: "20000000", NBits: "1d00ffff", NTime: "504e86b9", Clean: clean}
		line, err := stratum.AppendRequest(nil, nil, "mining.notify", n)
		if err != nil {
			t.Fatal(err)
		}
		got, gotClean, ok := scanNotify(line)
		if !ok || string(got) != prev || gotClean != clean {
			t.Fatalf("scanNotify(%s) = %q, %v, %v; want %q, %v, true", line, got, gotClean, ok, prev, clean)
		}
	}
	for _, line := range []string{
		`{"id":3,"result":true,"error":null}` + "\n",
		`{"id":null,"method":"mining.set_difficulty","params":[0.001]}` + "\n",
		`{"id":null,"method":"mining.notify","params":["1f","short",true]}` + "\n",
		`{"id":null,"method":"mining.notify","params":["1f","00000000440b921e1b77c6c0487ae5616de67f788f44ae2a5af6e2194d16b6f8",1]}` + "\n",
	} {
		if _, _, ok := scanNotify([]byte(line)); ok {
			t.Errorf("scanNotify(%s) ok, want a fallback to the parser", line)
		}
	}
}

func TestScanResult(t *testing.T) {
	for _, tc := range []struct {
		line      string
		ok, known bool
	}{
		{`{"id":17,"result":true,"error":null}`, true, true},
		{`{"id":17,"result":true,"error":null}` + "\r", true, true},
		{`{"id":17,"result":false,"error":[23,"low difficulty share",null]}`, false, false},
		{`{"id":null,"result":true,"error":null}`, false, false},
		{`{"id":"17","result":true,"error":null}`, false, false},
		{`{"id":17,"result":true,"error":null,"x":1}`, false, false},
	} {
		ok, known := scanResult([]byte(tc.line))
		if ok != tc.ok || known != tc.known {
			t.Errorf("scanResult(%s) = %v, %v; want %v, %v", tc.line, ok, known, tc.ok, tc.known)
		}
	}
}

// TestFeedTimes: a notify's first-byte time is that of the read holding
// its first byte, however the lines are cut across reads.
func TestFeedTimes(t *testing.T) {
	prev := "00000000440b921e1b77c6c0487ae5616de67f788f44ae2a5af6e2194d16b6f8"
	n := &stratum.Notify{JobID: "1f", PrevHash: prev, Coinb1: "01", Coinb2: "02", Branch: []string{}, Version: "20000000", NBits: "1d00ffff", NTime: "504e86b9", Clean: true}
	line, err := stratum.AppendRequest(nil, nil, "mining.notify", n)
	if err != nil {
		t.Fatal(err)
	}
	m := &Miner{lines: stratum.NewLineSplitter(maxLine), handshook: 2, workCh: make(chan struct{})}
	type got struct{ first, at int64 }
	var seen []got
	m.OnNotify = func(p []byte, clean bool, first, at time.Time) {
		if string(p) != prev || !clean {
			t.Errorf("notify %q clean %v", p, clean)
		}
		seen = append(seen, got{first.UnixNano(), at.UnixNano()})
	}
	ts := func(i int64) time.Time { return time.Unix(0, i) }
	feed := func(b []byte, at int64) {
		if err := m.feed(b, ts(at)); err != nil {
			t.Fatal(err)
		}
	}
	feed(line, 1)        // whole
	feed(line[:10], 2)   // split in three
	feed(line[10:20], 3) //
	feed(line[20:], 4)   //
	two := append(append([]byte(nil), line...), line[:30]...)
	feed(two, 5)       // one whole, the next begun
	feed(line[30:], 6) //
	want := []got{{1, 1}, {2, 4}, {5, 5}, {5, 6}}
	if fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Fatalf("(first, at) = %v, want %v", seen, want)
	}
}
