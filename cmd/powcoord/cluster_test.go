package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

func TestCoordinatorClusterBadFlags(t *testing.T) {
	for _, tc := range []struct{ args, want string }{
		{"--cluster http://h:1", `--cluster "http://h:1": bus: NATS server URL "http://h:1": scheme "http"`},
		{"--cluster nats://127.0.0.1:1", `--cluster "nats://127.0.0.1:1": bus: connecting to NATS at nats://127.0.0.1:1`},
		{"--cluster nats://127.0.0.1:1 --leader-ttl 100ms", "--leader-ttl 100ms: must be at least 1s"},
		{"--cluster nats://127.0.0.1:1 --wait 0s", "--wait 0s: must be positive"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		var out, errb bytes.Buffer
		err := run(ctx, append([]string{"coordinator", "--http", ""}, strings.Fields(tc.args)...), &out, &errb)
		cancel()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("coordinator %s: error %v, want it to say %s", tc.args, err, tc.want)
		}
	}
}
