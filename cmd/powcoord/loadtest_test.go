package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
)

// TestMain lets the test binary stand in for powcoord as the child of
// "loadtest --procs" (which starts itself as "loadtest --child ...").
func TestMain(m *testing.M) {
	if len(os.Args) > 2 && os.Args[1] == "loadtest" && os.Args[2] == "--child" {
		if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
			os.Stderr.WriteString("child: " + err.Error() + "\n")
			os.Exit(2)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestLoadtestProcs runs "powcoord loadtest --procs 2" against a
// coordinator: two child processes, one report over both.
func TestLoadtestProcs(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := testFlags(t.TempDir())
	f.http, f.shareDiff, f.blockDiff = "", 1e-9, 1e-5
	inst, err := startCoordinator(ctx, f, quietLogger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer inst.close()
	var out, errOut bytes.Buffer
	err = run(ctx, []string{"loadtest", "--url", "stratum+tcp://" + inst.lns.V1.Addr().String(), "--sessions", "41", "--procs", "2",
		"--rate", "300", "--duration", "200ms", "--blocks", "2", "--log-level", "warn"}, &out, &errOut)
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut.String())
	}
	for _, want := range []string{"sessions held:        41 (0 failed)", "load generator:       2 process(es)", "(82 samples over 2 blocks, 0 missing)", "notify spread:"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report without %q:\n%s", want, out.String())
		}
	}
	if !strings.Contains(out.String(), " 0 rejected") {
		t.Errorf("shares rejected:\n%s", out.String())
	}
}
