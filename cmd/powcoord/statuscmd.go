package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

const statusUsage = `Usage: powcoord status [flags]

Asks a running coordinator (or cluster coordinator, or front-end) for
GET /api/status on its --http address and prints one line. It exits with
status 0 when the answer is 200 and the work source (if the answer names
one) is healthy and not stale, otherwise non-zero with the reason: a
container health check or a monitoring probe needs nothing else.

Example:
  powcoord status --http 127.0.0.1:8080

Flags:
`

// statusAnswer is the part of GET /api/status the status command judges:
// the single coordinator's and the cluster coordinator's shapes both fit.
type statusAnswer struct {
	Height   *int64 `json:"height"`
	Sessions *int   `json:"sessions"`
	Role     string `json:"role"`
	Source   *struct {
		Kind    string `json:"kind"`
		Healthy bool   `json:"healthy"`
		Stale   bool   `json:"stale"`
		Error   string `json:"error"`
	} `json:"source"`
}

// runStatus checks a running powcoord over its HTTP API.
func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("http", "127.0.0.1:8080", "HTTP `address` (host:port) of the powcoord to ask, as given to its --http")
	timeout := fs.Duration("timeout", 5*time.Second, "give up after this `duration`")
	fs.Usage = func() { fmt.Fprint(fs.Output(), statusUsage); fs.PrintDefaults() }
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("status: unexpected argument %q", fs.Arg(0))
	}
	if *timeout <= 0 {
		return fmt.Errorf("status: --timeout %v: must be positive", *timeout)
	}
	host := strings.TrimPrefix(strings.TrimPrefix(*addr, "http://"), "https://")
	host = strings.TrimSuffix(host, "/")
	if host == "" || strings.Contains(host, "/") {
		return fmt.Errorf("status: --http %q: want host:port", *addr)
	}
	url := "http://" + host + "/api/status"
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("status: --http %q: %w", *addr, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("status: GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("status: GET %s: reading the answer: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status: GET %s: %s: %q", url, resp.Status, firstLine(body))
	}
	var st statusAnswer
	if err := json.Unmarshal(body, &st); err != nil {
		return fmt.Errorf("status: GET %s: not a powcoord status (%v): %q", url, err, firstLine(body))
	}
	line := "powcoord at " + host + ":"
	if st.Role != "" {
		line += " " + st.Role
	}
	if st.Height != nil {
		line += fmt.Sprintf(" mining height %d", *st.Height)
	}
	if st.Sessions != nil {
		line += fmt.Sprintf(", %d sessions", *st.Sessions)
	}
	if st.Source != nil {
		line += ", source " + st.Source.Kind
		switch {
		case !st.Source.Healthy:
			line += " unhealthy"
		case st.Source.Stale:
			line += " stale"
		default:
			line += " healthy"
		}
	}
	fmt.Fprintln(stdout, line)
	if st.Source != nil && (!st.Source.Healthy || st.Source.Stale) {
		reason := "unhealthy"
		if st.Source.Healthy {
			reason = "stale (no fresh work)"
		}
		if st.Source.Error != "" {
			reason += ": " + st.Source.Error
		}
		return errors.New("status: the work source (" + st.Source.Kind + ") is " + reason)
	}
	return nil
}

// firstLine is the start of a body for an error message.
func firstLine(b []byte) string {
	s, _, _ := strings.Cut(string(b), "\n")
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}
