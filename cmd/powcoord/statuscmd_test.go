package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/powcoord/powcoord/internal/coordinator"
	"github.com/powcoord/powcoord/internal/work"
)

// TestStatusCommandHealthCheck: `powcoord status` (the container's health
// check) passes against a running coordinator and prints its height and
// sessions, and fails, naming the reason, against a stopped one, a
// non-200 answer and an unhealthy work source.
func TestStatusCommandHealthCheck(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	inst, err := startCoordinator(ctx, testFlags(t.TempDir()), quietLogger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := inst.httpLn.Addr().String()
	want := fmt.Sprintf("powcoord at %s: mining height %d, 0 sessions, source embedded healthy\n", addr, inst.coord.Status().Height)

	var out, errb bytes.Buffer
	if err := run(ctx, []string{"status", "--http", addr}, &out, &errb); err != nil {
		t.Fatalf("status against a running coordinator: %v", err)
	}
	if out.String() != want {
		t.Errorf("status printed %q, want %q", out.String(), want)
	}
	cancel()
	if err := <-inst.done; err != nil {
		t.Fatal(err)
	}
	inst.close()
	err = run(context.Background(), []string{"status", "--http", addr}, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "http://"+addr+"/api/status") {
		t.Errorf("status against a stopped coordinator: err = %v, want it to name http://%s/api/status", err, addr)
	}

	// A real HTTP server answering what a coordinator whose node is down
	// answers, then a 503.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var broken atomic.Bool
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/status" {
			http.NotFound(w, r)
			return
		}
		if broken.Load() {
			http.Error(w, "starting up", http.StatusServiceUnavailable)
			return
		}
		json.NewEncoder(w).Encode(coordinator.Status{Height: 812, Sessions: 3,
			Source: work.Status{Kind: "node", Healthy: false, Error: "connection refused"}})
	})}
	go srv.Serve(ln)
	defer srv.Close()
	out.Reset()
	err = run(context.Background(), []string{"status", "--http", ln.Addr().String()}, &out, &errb)
	if err == nil || err.Error() != "status: the work source (node) is unhealthy: connection refused" {
		t.Errorf("unhealthy source: err = %v", err)
	}
	if got, w := out.String(), "powcoord at "+ln.Addr().String()+": mining height 812, 3 sessions, source node unhealthy\n"; got != w {
		t.Errorf("unhealthy source printed %q, want %q", got, w)
	}
	broken.Store(true)
	err = run(context.Background(), []string{"status", "--http", ln.Addr().String()}, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "503 Service Unavailable") || !strings.Contains(err.Error(), "starting up") {
		t.Errorf("503 answer: err = %v, want the status and the body", err)
	}

	for _, bad := range [][]string{{"--http", ""}, {"--http", "host:1/x"}, {"--timeout", "0s"}, {"extra"}} {
		err := run(context.Background(), append([]string{"status"}, bad...), &out, &errb)
		if err == nil || !strings.Contains(err.Error(), bad[len(bad)-1]) && bad[len(bad)-1] != "" {
			t.Errorf("status %q: err = %v, want it to name the value", bad, err)
		}
		if err == nil {
			t.Errorf("status %q: no error", bad)
		}
	}
}
