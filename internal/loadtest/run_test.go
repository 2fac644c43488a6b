package loadtest

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestRun(t *testing.T) {
	addr, st, coord := startPool(t, 1e-9, 1e-5)
	rep, err := Run(context.Background(), Config{Addr: addr, Sessions: 60, PerSourceIP: 25, SharesPerSecond: 600, Duration: time.Second, Blocks: 2})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Sessions != 60 || rep.ConnectErrors != 0 {
		t.Fatalf("sessions %d, failed %d; want 60, 0", rep.Sessions, rep.ConnectErrors)
	}
	// How many shares a second the generator manages depends on the
	// machine; that every one sent is accounted for does not.
	if rep.Accepted < 10 || rep.Accepted != rep.Submitted-rep.Rejected {
		t.Fatalf("shares: %d sent, %d accepted, %d rejected", rep.Submitted, rep.Accepted, rep.Rejected)
	}
	n, err := st.ShareCount(context.Background())
	if err != nil || n < rep.Accepted {
		t.Fatalf("ledger has %d shares, loadtest saw %d accepted (%v)", n, rep.Accepted, err)
	}
	if rep.BlocksMeasured != 2 || rep.NotifySamples != 120 || rep.NotifyMissing != 0 {
		t.Fatalf("notify: %d blocks, %d samples, %d missing; want 2, 120, 0", rep.BlocksMeasured, rep.NotifySamples, rep.NotifyMissing)
	}
	if !(rep.NotifyP50 > 0 && rep.NotifyP50 <= rep.NotifyP99 && rep.NotifyP99 <= rep.NotifyMax) {
		t.Fatalf("latencies p50 %v p99 %v max %v", rep.NotifyP50, rep.NotifyP99, rep.NotifyMax)
	}
	if !strings.Contains(rep.String(), "sessions held:        60") {
		t.Fatalf("report:\n%s", rep)
	}
	if coord.SessionCount() != 0 {
		// Run closes its sessions before returning; the server notices
		// asynchronously, so only check it does within a deadline.
		deadline := time.Now().Add(10 * time.Second)
		for coord.SessionCount() != 0 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond) // polling with a deadline
		}
		if n := coord.SessionCount(); n != 0 {
			t.Fatalf("%d sessions left after Run", n)
		}
	}
}

func TestRunRejectsNonLoopback(t *testing.T) {
	_, err := Run(context.Background(), Config{Addr: "192.0.2.1:3333", Sessions: 1})
	if err == nil || !strings.Contains(err.Error(), "192.0.2.1:3333") {
		t.Fatalf("error %v, want a refusal naming the address", err)
	}
}

func TestSourceIP(t *testing.T) {
	for _, tc := range []struct {
		i    int
		want string
	}{{0, "127.0.0.1"}, {19999, "127.0.0.1"}, {20000, "127.0.0.2"}, {99999, "127.0.0.5"}, {20000 * 255, "127.0.1.0"}} {
		if got := sourceIP(tc.i, 20000); got != tc.want {
			t.Errorf("sourceIP(%d) = %s, want %s", tc.i, got, tc.want)
		}
	}
}
