package main

import (
	"bytes"
	"context"
	"flag"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/txscript/v2"
	"github.com/btcsuite/btcd/wire/v2"
	"github.com/powcoord/powcoord/internal/agent"
)

// TestPoolFlagsRefusedAtStart: coordinator and frontend refuse the same
// bad values of the shared flags before they start anything, naming the
// flag, the value and (for the coinbase tag) the byte budget.
func TestPoolFlagsRefusedAtStart(t *testing.T) {
	long := strings.Repeat("x", 83)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--coinbase-tag", long}, "--coinbase-tag: coinbase tag \"" + long + "\" is 83 bytes, over its budget of 82"},
		{[]string{"--coinbase-tag", ""}, "--coinbase-tag: must not be empty"},
		{[]string{"--ban-exempt", "10.0.0.0/8,10.0.0.0/33"}, `--ban-exempt: network "10.0.0.0/33"`},
		{[]string{"--ban-ip-after", "0"}, "--ban-ip-after 0"},
		{[]string{"--ban-window", "-1s"}, "--ban-window -1s"},
		{[]string{"--max-difficulty", "-2"}, "--max-difficulty -2"},
		{[]string{"--ban-reject-ratio", "1.5"}, "--ban-reject-ratio 1.5"},
	} {
		for _, cmd := range [][]string{{"coordinator", "--data", t.TempDir()}, {"frontend", "--cluster", "nats://127.0.0.1:1", "--wait", "1s"}} {
			var out, errb bytes.Buffer
			err := run(context.Background(), append(cmd, tc.args...), &out, &errb)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s %q: error %v, want it to say %s", cmd[0], tc.args, err, tc.want)
			}
		}
	}
	var out, errb bytes.Buffer
	err := run(context.Background(), []string{"coordinator", "--min-difficulty", "0.1", "--max-difficulty", "0.01"}, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "--max-difficulty 0.01 is below --min-difficulty 0.1") {
		t.Errorf("ceiling below the floor: %v", err)
	}
	// A cluster coordinator serves no miners: the flags belong to the
	// front-ends, and are refused rather than ignored.
	err = run(context.Background(), []string{"coordinator", "--cluster", "nats://127.0.0.1:1", "--coinbase-tag", "/x/", "--max-difficulty", "8"}, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "--coinbase-tag, --max-difficulty with --cluster") {
		t.Errorf("pool flags with --cluster: %v", err)
	}
}

// TestPoolFlagsHelpOnce: both commands document every shared flag, each
// once (it is registered in one place).
func TestPoolFlagsHelpOnce(t *testing.T) {
	for _, cmd := range []string{"coordinator", "frontend"} {
		var out, errb bytes.Buffer
		run(context.Background(), []string{cmd, "--help"}, &out, &errb)
		for _, f := range []string{"ban-min-shares", "ban-reject-ratio", "ban-duration", "ban-ip-after", "ban-window", "ban-exempt", "max-difficulty", "coinbase-tag", "admin-token", "admin-http"} {
			if n := strings.Count(errb.String(), "  -"+f+" "); n != 1 {
				t.Errorf("%s --help lists -%s %d times, want once", cmd, f, n)
			}
		}
	}
}

// TestPoolFlagsCoordinator: `powcoord coordinator` with --coinbase-tag,
// --max-difficulty, --admin-token and --admin-http: every block of the
// embedded chain carries the tag, the miner mines at the ceiling, the ban
// list is served on both listeners and only the admin ones lift bans.
func TestPoolFlagsCoordinator(t *testing.T) {
	const tag = "/flag tag 7/"
	fs := flag.NewFlagSet("coordinator", flag.ContinueOnError)
	var f coordFlags
	f.register(fs, false)
	if err := fs.Parse([]string{"--stratum", "127.0.0.1:0", "--http", "127.0.0.1:0", "--data", t.TempDir(),
		"--share-difficulty", "2e-5", "--block-difficulty", "1e-4", "--shares-per-minute", "0",
		"--coinbase-tag", tag, "--max-difficulty", "1e-5", "--admin-token", "tok", "--admin-http", "127.0.0.1:0"}); err != nil {
		t.Fatal(err)
	}
	if err := f.check(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	inst, err := startCoordinator(ctx, &f, quietLogger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(agent.Config{URLs: []string{"stratum+tcp://" + inst.lns.V1.Addr().String()}, User: "ann", Pass: "x", Threads: 1, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { a.Run(ctx) })
	deadline := time.Now().Add(2 * time.Minute)
	for {
		n, err := inst.store.BlockCount(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n >= 4 { // genesis and three found
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d blocks after 2 minutes", n)
		}
		<-time.After(50 * time.Millisecond) // polling with a deadline
	}
	for _, w := range inst.coord.Status().Workers {
		if w.Name == "ann" && w.Difficulty != 1e-5 {
			t.Errorf("ann mines at difficulty %v, want the --max-difficulty 1e-05", w.Difficulty)
		}
	}
	get := func(method, url, token string) (int, string) {
		req, _ := http.NewRequest(method, url, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(b))
	}
	admin := "http://" + inst.adminLn.Addr().String()
	for _, base := range []string{inst.httpURL(), admin + "/"} {
		if code, body := get("GET", base+"api/bans", ""); code != 200 || body != "[]" {
			t.Errorf("GET %sapi/bans: %d %s", base, code, body)
		}
	}
	if code, _ := get("DELETE", inst.httpURL()+"api/bans/127.0.0.1", ""); code != http.StatusForbidden {
		t.Errorf("DELETE on --http without the token: %d, want 403", code)
	}
	if code, _ := get("DELETE", inst.httpURL()+"api/bans/127.0.0.1", "tok"); code != http.StatusNotFound {
		t.Errorf("DELETE on --http with the token, nothing banned: %d, want 404", code)
	}
	if code, _ := get("DELETE", admin+"/api/bans/127.0.0.1", ""); code != http.StatusNotFound {
		t.Errorf("DELETE on --admin-http, nothing banned: %d, want 404", code)
	}
	cancel()
	wg.Wait()
	if err := inst.wait(); err != nil {
		t.Fatal(err)
	}
	// The blocks, read back from the closed store's file.
	blocks, _ := revalidate(t, f.data)
	push, _ := txscript.NewScriptBuilder().AddData([]byte(tag)).Script()
	for _, b := range blocks[1:] {
		var blk wire.MsgBlock
		if err := blk.Deserialize(bytes.NewReader(b.Raw)); err != nil {
			t.Fatalf("block %d: %v", b.Height, err)
		}
		if sig := blk.Transactions[0].TxIn[0].SignatureScript; !bytes.HasSuffix(sig, push) {
			t.Fatalf("block %d: scriptSig %x does not end with the tag %q", b.Height, sig, tag)
		}
	}
	if len(blocks) < 4 {
		t.Fatalf("%d blocks read back, want at least 4", len(blocks))
	}
}
