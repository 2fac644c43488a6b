package loadtest

import (
	"testing"

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
