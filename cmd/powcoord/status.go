package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/powcoord/powcoord/internal/agent"
	"github.com/powcoord/powcoord/internal/sim"
)

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	return isatty.IsTerminal(f.Fd())
}

// statusLine keeps one status line at the bottom of a terminal: log lines
// written through it print above the line, which is then redrawn.
type statusLine struct {
	mu   sync.Mutex
	w    io.Writer
	line string
}

// Write clears the status line, writes p (whole log lines) and redraws
// the status line after it.
func (s *statusLine) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	b.WriteString("\r\x1b[K")
	b.Write(p)
	b.WriteString(s.line)
	if _, err := io.WriteString(s.w, b.String()); err != nil {
		return 0, err
	}
	return len(p), nil
}

// set replaces the status line.
func (s *statusLine) set(line string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.line = line
	io.WriteString(s.w, "\r\x1b[K"+line)
}

// run redraws the line from stats every second until ctx ends, then
// leaves the last line in place and moves to a new line.
func (s *statusLine) run(ctx context.Context, stats func() agent.Stats, started time.Time) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		s.set(agentStatusText(stats(), time.Since(started)))
		select {
		case <-ctx.Done():
			s.mu.Lock()
			io.WriteString(s.w, "\n")
			s.line = ""
			s.mu.Unlock()
			return
		case <-t.C:
		}
	}
}

// agentStatusText is the one-line summary of an agent.
func agentStatusText(st agent.Stats, up time.Duration) string {
	state := st.Pool
	if !st.Connected {
		state = "connecting to " + st.Pool
	}
	return fmt.Sprintf("%s | accepted %d rejected %d | diff %.4g | %s | up %s",
		sim.FormatRate(st.Hashrate), st.Accepted, st.Rejected, st.Difficulty, state, up.Truncate(time.Second))
}
