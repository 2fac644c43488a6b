package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/powcoord/powcoord/internal/agent"
)

func TestAgentStatusText(t *testing.T) {
	st := agent.Stats{Hashrate: 12_345_678, Accepted: 42, Rejected: 3, Difficulty: 0.00125, Pool: "stratum+tcp://127.0.0.1:3333", Connected: true}
	got := agentStatusText(st, 95*time.Second+400*time.Millisecond)
	want := "12.35 MH/s | accepted 42 rejected 3 | diff 0.00125 | stratum+tcp://127.0.0.1:3333 | up 1m35s"
	if got != want {
		t.Errorf("status line\n got %q\nwant %q", got, want)
	}
	st.Connected = false
	if got := agentStatusText(st, 0); !strings.Contains(got, "connecting to stratum+tcp://127.0.0.1:3333") {
		t.Errorf("disconnected status line %q does not say it is connecting", got)
	}
}

func TestStatusLineKeepsLogsAbove(t *testing.T) {
	var buf bytes.Buffer
	s := &statusLine{w: &buf}
	s.set("STATUS 1")
	s.Write([]byte("a log line\n"))
	s.set("STATUS 2")
	want := "\r\x1b[KSTATUS 1" + "\r\x1b[Ka log line\nSTATUS 1" + "\r\x1b[KSTATUS 2"
	if buf.String() != want {
		t.Errorf("terminal output\n got %q\nwant %q", buf.String(), want)
	}
	// run draws at once and ends with a newline when its context ends.
	buf.Reset()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s.run(ctx, func() agent.Stats { return agent.Stats{Pool: "p", Connected: true} }, time.Now())
	if out := buf.String(); !strings.HasPrefix(out, "\r\x1b[K0.00 H/s | accepted 0") || !strings.HasSuffix(out, "\n") {
		t.Errorf("run output %q", out)
	}
}

func TestIsTerminal(t *testing.T) {
	if isTerminal(&bytes.Buffer{}) {
		t.Error("a buffer is not a terminal")
	}
	f, err := os.CreateTemp(t.TempDir(), "log")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if isTerminal(f) {
		t.Error("a regular file is not a terminal")
	}
}
