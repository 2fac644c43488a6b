package coordinator

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"testing"
	"time"
)

// BenchmarkBroadcast measures one clean job written to every session, the
// coordinator's side of the new-block notify: from the new epoch to the
// last mining.notify handed to the kernel. Sessions are real loopback TCP
// connections whose clients drain what they get. One op is one broadcast;
// ns/session is its cost per session.
func BenchmarkBroadcast(b *testing.B) {
	for _, n := range []int{1000, 5000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			c := fuzzCoordinator(b)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- c.Serve(ctx, ln) }()
			defer func() { cancel(); <-done }()
			for i := range n {
				conn, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					b.Fatal(err)
				}
				defer conn.Close()
				fmt.Fprintf(conn, "{\"id\":1,\"method\":\"mining.subscribe\",\"params\":[]}\n{\"id\":2,\"method\":\"mining.authorize\",\"params\":[\"user%d\",\"x\"]}\n", i%100)
				r := bufio.NewReader(conn)
				for k := 0; k < 4; k++ { // two replies, set_difficulty, notify
					if _, err := r.ReadString('\n'); err != nil {
						b.Fatal(err)
					}
				}
				go io.Copy(io.Discard, r)
			}
			b.ResetTimer()
			start := time.Now()
			for i := range b.N {
				// A new previous hash each time: a clean job.
				t := *c.cfg.Source.Current()
				t.PrevHash[0] ^= byte(i%255 + 1)
				if _, err := c.jobs.update(&t); err != nil {
					b.Fatal(err)
				}
				c.broadcast()
			}
			b.ReportMetric(float64(time.Since(start).Nanoseconds())/float64(b.N*n), "ns/session")
		})
	}
}
