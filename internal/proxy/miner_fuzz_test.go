package proxy

import (
	"bytes"
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/powcoord/powcoord/internal/sv2"
)

// fuzzProxy is a proxy with a channel attached by hand (no upstream
// connection; its zero target keeps every share local) and one job.
func fuzzProxy(t testing.TB) *Proxy {
	p, err := New(Config{Upstreams: []string{sv2.URL("127.0.0.1:1", [32]byte{1})}, User: "fuzz", SharesPerMinute: -1, HandshakeTimeout: time.Second, MaxLine: 512})
	if err != nil {
		t.Fatal(err)
	}
	ch := &channel{url: p.ups[0].url, prefix: []byte{1, 2, 3, 4}, size: 6, upJobs: map[uint32]*sv2.NewExtendedMiningJob{}, pending: map[uint32]*forwarded{}}
	p.attach(ch)
	p.mu.Lock()
	ch.nbits, ch.hasPrev = 0x207fffff, true
	p.newJobLocked(ch, &sv2.NewExtendedMiningJob{JobID: 7, Version: 0x20000000, VersionRollingAllowed: true,
		CoinbaseTxPrefix: bytes.Repeat([]byte{0xaa}, 42), CoinbaseTxSuffix: bytes.Repeat([]byte{0xbb}, 60)}, 0x6b000000, true)
	p.mu.Unlock()
	return p
}

// FuzzMinerLines feeds a miner connection arbitrary bytes, written in
// pieces cut at split: the proxy answers or closes, never panics, and
// never forwards a share its channel's target (zero) does not allow.
func FuzzMinerLines(f *testing.F) {
	f.Add([]byte(`{"id":1,"method":"mining.configure","params":[["version-rolling"],{"version-rolling.mask":"1fffe000"}]}
{"id":2,"method":"mining.subscribe","params":["x"]}
{"id":3,"method":"mining.authorize","params":["w.1","x"]}
{"id":4,"method":"mining.submit","params":["w.1","1","00000000","6b000000","00000001","00002000"]}
{"id":4,"method":"mining.submit","params":["w.1","1","00000000","6b000000","00000001","00002000"]}
`), uint8(7))
	f.Fuzz(func(t *testing.T, data []byte, split uint8) {
		p := fuzzProxy(t)
		cli, srv := net.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			p.serveMiner(context.Background(), srv)
		}()
		go io.Copy(io.Discard, cli)
		step := int(split)%64 + 1
		for i := 0; i < len(data); i += step {
			cli.SetWriteDeadline(time.Now().Add(time.Second))
			if _, err := cli.Write(data[i:min(i+step, len(data))]); err != nil {
				break // the proxy closed the connection
			}
		}
		cli.Close()
		<-done
		st := p.Stats()
		if st.Forwarded != 0 {
			t.Fatalf("%d shares forwarded past a zero target", st.Forwarded)
		}
		if n := uint64(bytes.Count(data, []byte("mining.submit"))); st.Accepted+st.Rejected > n {
			t.Fatalf("%d shares judged from %d submits", st.Accepted+st.Rejected, n)
		}
	})
}
