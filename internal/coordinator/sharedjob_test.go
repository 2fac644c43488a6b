package coordinator

import (
	"io"
	"net"
	"testing"
)

// TestSharedJobs: sessions with the same payout, difficulty and coinbase
// variant get the same job of an epoch (one job state per template, not per session);
// each names it by its own id, and only the exact id it was sent under
// finds it.
func TestSharedJobs(t *testing.T) {
	c := fuzzCoordinator(t)
	script, _ := c.cfg.Source.PayoutScript("alice")
	var sessions []*session
	for range 3 {
		server, client := net.Pipe()
		go io.Copy(io.Discard, client)
		t.Cleanup(func() { server.Close(); client.Close() })
		s, reason := c.newSession(server, nil)
		if s == nil {
			t.Fatal(reason)
		}
		s.subscribed, s.user, s.payout = true, "alice", script
		sessions = append(sessions, s)
	}
	for _, s := range sessions {
		for range 17 { // ids 1 .. 11 (hex)
			s.sendWork(c.jobs.current(), true)
		}
	}
	// The n-th job of each session is the same coinbase variant: shared.
	// Its first job is another variant (a re-issue is new work).
	j := sessions[0].findJob("11")
	if j == nil || j != sessions[1].findJob("11") || j != sessions[2].findJob("11") {
		t.Fatalf("jobs not shared: %p %p %p", j, sessions[1].findJob("11"), sessions[2].findJob("11"))
	}
	if first := sessions[2].findJob("1"); first == nil || first == j || first.cb == j.cb {
		t.Fatalf("the first and the 17th job of a session share work: %p %p", first, j)
	}
	for _, id := range []string{"011", "0x11", "B", "", "12", "11 ", "10000000000000011"} {
		if sessions[0].findJob(id) != nil {
			t.Errorf("job id %q found a job", id)
		}
	}
	if got, want := sessions[0].findJob("b"), sessions[1].findJob("b"); got == nil || got != want {
		t.Errorf("job b: %p, want the shared %p", got, want)
	}
}
