package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// windowDownload is a small window download: one miner paid the whole
// 1,000 satoshis of a block for the work of its two shares.
const windowDownload = `{"format":"powcoord-pplns-window/1","block":{"hash":"` + "00000000000000000000000000000000000000000000000000000000000000aa" + `","height":7,"mode":"pplns","cutoff":2,"window_size":"8589804543984497068464","value":1000,"rules":{"window_blocks":1e12,"bits":"207fffff","fee_basis_points":0,"dust":546,"max_outputs":39},"outputs":[{"script":"51","address":"alice","amount":1000,"work":"36893488147419103232"}]}}
{"id":2,"worker":"alice.a","address":"alice","script":"51","difficulty":1}
{"id":1,"worker":"alice.b","address":"alice","script":"51","difficulty":1}
{"end":true,"shares":2}
`

// TestPayoutsVerifyCommand: powcoord payouts verify reads a file or, for
// "-", standard input, and prints the recomputed outputs; a download
// whose share difficulty was changed is an error naming the output; a
// missing file, subcommand or argument is an error naming it.
func TestPayoutsVerifyCommand(t *testing.T) {
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "window.jsonl")
	if err := os.WriteFile(file, []byte(windowDownload), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := run(ctx, []string{"payouts", "verify", file}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	want := "block 7 00000000000000000000000000000000000000000000000000000000000000aa: 1 outputs recomputed from 2 shares (0 skipped) match what it paid, to the satoshi\n  output 0: 1000 sat to 51 (miner)\n"
	if out.String() != want {
		t.Fatalf("payouts verify printed\n%s\nwant\n%s", out.String(), want)
	}

	// "-": standard input.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stdin := os.Stdin
	os.Stdin = r
	defer func() { os.Stdin = stdin }()
	go func() { io.WriteString(w, windowDownload); w.Close() }()
	out.Reset()
	if err := run(ctx, []string{"payouts", "verify", "-"}, &out, io.Discard); err != nil || out.String() != want {
		t.Fatalf("payouts verify - : %v, printed %q", err, out.String())
	}
	r.Close()

	tampered := strings.Replace(windowDownload, `"difficulty":1}`, `"difficulty":3}`, 1)
	os.WriteFile(file, []byte(tampered), 0o644)
	err = run(ctx, []string{"payouts", "verify", file}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), `output 0 (address alice): the block pays 1000 sat for work "36893488147419103232", the window's shares give 1000 sat for work "73786976294838206464"`) {
		t.Fatalf("tampered download: %v", err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"payouts"}, "payouts: missing subcommand verify"},
		{[]string{"payouts", "check"}, `payouts: unknown subcommand "check": want verify`},
		{[]string{"payouts", "verify"}, "payouts verify: want one FILE (or - for stdin), have 0 arguments"},
		{[]string{"payouts", "verify", filepath.Join(t.TempDir(), "nope")}, "no such file"},
	} {
		if err := run(ctx, c.args, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.args, err, c.want)
		}
	}
}
