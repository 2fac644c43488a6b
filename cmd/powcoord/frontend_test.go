package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

func TestFrontendBadCluster(t *testing.T) {
	for _, tc := range []struct{ args, want string }{
		{"", "--cluster is required"},
		{"--cluster http://h:1", `--cluster "http://h:1": bus: NATS server URL "http://h:1": scheme "http"`},
		{"--cluster nats://h", `--cluster "nats://h"`},
		{"--cluster nats://127.0.0.1:1 --wait 2s", `--cluster "nats://127.0.0.1:1": bus: connecting to NATS at nats://127.0.0.1:1`},
		{"--cluster nats://127.0.0.1:1 --share-difficulty 0", "--share-difficulty 0"},
		{"--cluster nats://127.0.0.1:1 --ledger mysql", `--ledger "mysql": want sharelog or sqlite`},
		{"--cluster nats://127.0.0.1:1 --lease-ttl 10ms", "--lease-ttl 10ms: must be at least 1s"},
		{"--cluster nats://127.0.0.1:1 --id a.b", `--id "a.b": letters, digits`},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		var out, errb bytes.Buffer
		err := run(ctx, append([]string{"frontend"}, strings.Fields(tc.args)...), &out, &errb)
		cancel()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("frontend %s: error %v, want it to say %s", tc.args, err, tc.want)
		}
	}
}

func TestFrontendHelp(t *testing.T) {
	var out, errb bytes.Buffer
	err := run(context.Background(), []string{"frontend", "--help"}, &out, &errb)
	if err == nil {
		t.Fatal("--help returned nil, want flag.ErrHelp")
	}
	help := errb.String()
	for _, want := range []string{"Examples:", "powcoord frontend --cluster nats://", "-cluster", "-stratum", "-data", "-share-difficulty", "-shares-per-minute", "-wait", "-log-level", "-http", "-ledger", "-id", "-replicas", "-lease-ttl", "/api/status", "/metrics", "powcoord-prefixes", "powcoord-members", "--ledger sqlite"} {
		if !strings.Contains(help, want) {
			t.Errorf("frontend --help does not mention %q:\n%s", want, help)
		}
	}
}
