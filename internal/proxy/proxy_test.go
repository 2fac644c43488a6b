package proxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/powcoord/powcoord/internal/sv2"
)

// TestNewRefusesBadConfig: each bad setting is refused with an error
// naming it and its value.
func TestNewRefusesBadConfig(t *testing.T) {
	good := sv2.URL("127.0.0.1:3336", [32]byte{1})
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{User: "u"}, "no upstream"},
		{Config{Upstreams: []string{good}}, "user identity is empty"},
		{Config{Upstreams: []string{"stratum+tcp://127.0.0.1:3333"}, User: "u"}, `"stratum+tcp://127.0.0.1:3333"`},
		{Config{Upstreams: []string{good}, User: "u", VersionMask: 0xffffffff}, "version mask ffffffff"},
		{Config{Upstreams: []string{good}, User: "u", MinDifficulty: 2, MaxDifficulty: 1}, "max difficulty 1 is below min difficulty 2"},
		{Config{Upstreams: []string{good}, User: "u", StartDifficulty: -1}, "start -1"},
	} {
		if _, err := New(c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%+v): %v, want an error with %q", c.cfg, err, c.want)
		}
	}
}

// TestExtranonceSlices: a miner's extranonce1 is the channel's prefix,
// its two slot bytes and, when the channel leaves more than 8 bytes,
// zero padding; its extranonce2 is the rest, at most 8 bytes.
func TestExtranonceSlices(t *testing.T) {
	p := &Proxy{}
	for _, c := range []struct {
		size    int
		slot    uint16
		en1     []byte
		en2Size int
	}{
		{4, 0x0102, []byte{0xa, 0xb, 0xc, 0xd, 1, 2}, 2},
		{10, 0xfffe, []byte{0xa, 0xb, 0xc, 0xd, 0xff, 0xfe}, 8},
		{16, 7, []byte{0xa, 0xb, 0xc, 0xd, 0, 7, 0, 0, 0, 0, 0, 0}, 8},
	} {
		en1, n := p.extranonceFor(&channel{prefix: []byte{0xa, 0xb, 0xc, 0xd}, size: c.size}, c.slot)
		if !bytes.Equal(en1, c.en1) || n != c.en2Size || len(en1)+n != 4+c.size {
			t.Errorf("channel extranonce %d, slot %#x: extranonce1 %x, extranonce2 %d bytes; want %x, %d", c.size, c.slot, en1, n, c.en1, c.en2Size)
		}
	}
}

// TestStatusAPI: GET /api/status is the Stats as JSON, with the open
// upstream and a miner's local verdicts.
func TestStatusAPI(t *testing.T) {
	p := fuzzProxy(t)
	cli, srv := net.Pipe()
	done := make(chan struct{})
	go func() { defer close(done); p.serveMiner(context.Background(), srv) }()
	r := bufio.NewReader(cli)
	for _, l := range []string{
		`{"id":1,"method":"mining.subscribe","params":[]}`,
		`{"id":2,"method":"mining.authorize","params":["w.1","x"]}`,
		`{"id":3,"method":"mining.submit","params":["w.1","nosuchjob","00000000","6b000000","00000001"]}`,
	} {
		fmt.Fprintln(cli, l)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(line, `"method"`) {
				break // the answer; notifications skipped
			}
		}
	}
	rec := httptest.NewRecorder()
	p.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/api/status", nil))
	var st Stats
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil || rec.Code != 200 {
		t.Fatalf("status %d %s: %v", rec.Code, rec.Body, err)
	}
	if st.Upstream != p.ups[0].url || len(st.Miners) != 1 || st.Miners[0].Worker != "w.1" || st.Miners[0].Extranonce1 != "010203040000" ||
		st.Rejected != 1 || st.Miners[0].Rejected[21] != 1 {
		t.Fatalf("status %s", rec.Body)
	}
	cli.Close()
	<-done
}
