package main

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/powcoord/powcoord/internal/agent"
	"github.com/powcoord/powcoord/internal/clustertest"
)

// TestFrontendListenerSurface: a cluster front-end takes the listener
// flags of a coordinator (internal/listen), here from a --config file: it
// serves Stratum V2 beside V1 with the cluster's extranonce1 prefix, a V2
// agent's shares are accepted there, and --auth allowlist refuses a V1
// miner not on the list. Before the one listener surface a front-end had
// no V2, TLS, auth, limits or --config.
func TestFrontendListenerSurface(t *testing.T) {
	c := clustertest.StartNATSCluster(t, 1)
	urls := strings.Join(c.URLs(), ",")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	dataDir := t.TempDir()
	conf := filepath.Join(t.TempDir(), "frontend.toml")
	if err := os.WriteFile(conf, []byte(`stratum2 = "127.0.0.1:0"
auth = "allowlist"
allow-users = "v2ok,v1ok"
ban-min-shares = -1
`), 0o600); err != nil {
		t.Fatal(err)
	}
	start := commands(t, ctx)
	start(io.Discard, "coordinator", "--cluster", urls, "--replicas", "1", "--http", freeAddr(t),
		"--block-difficulty", "1000", "--block-time", "10s")
	feHTTP := freeAddr(t)
	out := &lockedBuffer{}
	start(out, "frontend", "--config", conf, "--cluster", urls, "--replicas", "1", "--id", "feV2", "--stratum", "127.0.0.1:0",
		"--http", feHTTP, "--data", dataDir, "--share-difficulty", "0.0001", "--shares-per-minute", "0", "--wait", "60s")
	reV1 := regexp.MustCompile(`frontend feV2: Stratum on (\S+), extranonce1 prefix (\d+)/8 bits`)
	reV2 := regexp.MustCompile(`frontend feV2: Stratum V2 at (\S+)`)
	var v1Addr, v2URL string
	for v1Addr == "" || v2URL == "" {
		if m := reV1.FindStringSubmatch(out.String()); m != nil {
			v1Addr = m[1]
		}
		if m := reV2.FindStringSubmatch(out.String()); m != nil {
			v2URL = m[1]
		}
		select {
		case <-ctx.Done():
			t.Fatalf("front-end did not start with V2; output:\n%s", out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}

	// --auth allowlist from the config file applies to V1.
	conn, r, _, err := stratumSubscribe(v1Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(conn, `{"id":2,"method":"mining.authorize","params":["mallory","x"]}`+"\n")
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			t.Fatalf("reading the authorize answer: %v", err)
		}
		var m struct {
			ID     *int            `json:"id"`
			Result json.RawMessage `json:"result"`
		}
		json.Unmarshal(line, &m)
		if m.ID != nil && *m.ID == 2 {
			if string(m.Result) != "false" {
				t.Fatalf("mallory authorized on an allowlist front-end: %s", line)
			}
			break
		}
	}

	// A V2 agent mines through the front-end.
	a, err := agent.New(agent.Config{URLs: []string{v2URL}, User: "v2ok", Pass: "x", Threads: 1, Logger: quietLogger(), PrimaryRetry: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	actx, stopAgent := context.WithCancel(ctx)
	defer stopAgent()
	go a.Run(actx)
	for {
		var st struct {
			Coordinator *struct {
				Workers []struct {
					Name     string `json:"name"`
					Accepted uint64 `json:"accepted"`
				} `json:"workers"`
			} `json:"coordinator"`
		}
		if err := getJSON("http://"+feHTTP+"/api/status", &st); err == nil && st.Coordinator != nil {
			for _, w := range st.Coordinator.Workers {
				if w.Name == "v2ok" && w.Accepted >= 3 {
					t.Logf("V2 worker on the front-end: %d shares accepted", w.Accepted)
					return
				}
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no V2 shares accepted by the front-end; output:\n%s", out.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
