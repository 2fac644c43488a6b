package loadtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// TestMain lets the test binary be a child of a several-process run
// (TestRunProcs starts it with LOADTEST_CHILD=1).
func TestMain(m *testing.M) {
	if os.Getenv("LOADTEST_CHILD") == "1" {
		if err := ServeChild(context.Background(), os.Stdin, os.Stdout, nil); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// childCommand runs this test binary as a child.
func childCommand(ctx context.Context) *exec.Cmd {
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "LOADTEST_CHILD=1")
	cmd.Stderr = os.Stderr
	return cmd
}

// checkReport asserts what every run must get exactly: the sessions,
// every share sent answered true and recorded, and every session's
// notify of every block.
func checkReport(t *testing.T, rep *Report, sessions, blocks int, ledger int64) {
	t.Helper()
	if rep.Sessions != sessions || rep.ConnectErrors != 0 {
		t.Fatalf("sessions %d, failed %d; want %d, 0", rep.Sessions, rep.ConnectErrors, sessions)
	}
	// How many shares a second the generator manages depends on the
	// machine; that every one sent is answered true and stored does not.
	if rep.Submitted < 10 || rep.Accepted != rep.Submitted || rep.Rejected != 0 {
		t.Fatalf("shares: %d sent, %d accepted, %d rejected", rep.Submitted, rep.Accepted, rep.Rejected)
	}
	// The ledger holds the share phase's shares and each block's share.
	if want := rep.Accepted + int64(blocks); ledger != want {
		t.Fatalf("ledger has %d shares, want %d (%d accepted + %d blocks)", ledger, want, rep.Accepted, blocks)
	}
	if rep.BlocksMeasured != blocks || rep.NotifySamples != sessions*blocks || rep.NotifyMissing != 0 {
		t.Fatalf("notify: %d blocks, %d samples, %d missing; want %d, %d, 0", rep.BlocksMeasured, rep.NotifySamples, rep.NotifyMissing, blocks, sessions*blocks)
	}
	if !(rep.NotifyP50 > 0 && rep.NotifyP50 <= rep.NotifyP99 && rep.NotifyP99 <= rep.NotifyMax) {
		t.Fatalf("latencies p50 %v p99 %v max %v", rep.NotifyP50, rep.NotifyP99, rep.NotifyMax)
	}
	// The spread starts at the first byte, after the submit: never longer.
	if !(rep.SpreadP50 >= 0 && rep.SpreadP50 <= rep.SpreadP99 && rep.SpreadP99 <= rep.SpreadMax && rep.SpreadMax <= rep.NotifyMax) {
		t.Fatalf("spread p50 %v p99 %v max %v (from submit max %v)", rep.SpreadP50, rep.SpreadP99, rep.SpreadMax, rep.NotifyMax)
	}
	if runtime.GOOS != "windows" && rep.LoadgenCPU <= 0 {
		t.Fatalf("load generator CPU %v, want it measured", rep.LoadgenCPU)
	}
	for _, s := range []string{fmt.Sprintf("sessions held:        %d", sessions), "notify spread:", "from the block's submit"} {
		if !strings.Contains(rep.String(), s) {
			t.Fatalf("report without %q:\n%s", s, rep)
		}
	}
}

func TestRun(t *testing.T) {
	for _, readers := range []string{"epoll", "goroutines"} {
		t.Run(readers, func(t *testing.T) {
			addr, st, coord := startPool(t, 1e-9, 1e-5)
			rep, err := Run(context.Background(), Config{Addr: addr, Sessions: 60, PerSourceIP: 25, SharesPerSecond: 600,
				Duration: 300 * time.Millisecond, Blocks: 2, Readers: readers})
			if err != nil {
				t.Fatal(err)
			}
			n, err := st.ShareCount(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			checkReport(t, rep, 60, 2, n)
			want := readers
			if runtime.GOOS != "linux" {
				want = "goroutines"
			}
			if rep.Procs != 1 || rep.Readers != want {
				t.Fatalf("procs %d readers %q; want 1, %q", rep.Procs, rep.Readers, want)
			}
			waitNoSessions(t, coord.SessionCount)
		})
	}
}

// TestRunProcs runs the sessions in two child processes: an odd count,
// so the children hold 31 and 30.
func TestRunProcs(t *testing.T) {
	addr, st, coord := startPool(t, 1e-9, 1e-5)
	rep, err := Run(context.Background(), Config{Addr: addr, Sessions: 61, PerSourceIP: 25, SharesPerSecond: 600,
		Duration: 300 * time.Millisecond, Blocks: 3, Procs: 2, Command: childCommand})
	if err != nil {
		t.Fatal(err)
	}
	n, err := st.ShareCount(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	checkReport(t, rep, 61, 3, n)
	if rep.Procs != 2 {
		t.Fatalf("procs %d, want 2", rep.Procs)
	}
	waitNoSessions(t, coord.SessionCount)
}

// TestRunProcsAddrs spreads three children over two pools, as over a
// cluster's front-ends: children 0 and 2 on the first, child 1 on the
// second. Each pool's ledger holds exactly the shares its children had
// accepted, so no child went to the wrong address and none was left out.
func TestRunProcsAddrs(t *testing.T) {
	addrA, stA, coordA := startPool(t, 1e-9, 1e-5)
	addrB, stB, coordB := startPool(t, 1e-9, 1e-5)
	rep, err := Run(context.Background(), Config{Addrs: []string{addrA, addrB}, Sessions: 30, PerSourceIP: 25, SharesPerSecond: 600,
		Duration: 300 * time.Millisecond, Procs: 3, Command: childCommand})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Sessions != 30 || rep.Accepted != rep.Submitted || rep.Rejected != 0 {
		t.Fatalf("sessions %d, shares %d sent %d accepted %d rejected", rep.Sessions, rep.Submitted, rep.Accepted, rep.Rejected)
	}
	nA, err := stA.ShareCount(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	nB, err := stB.ShareCount(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if nA == 0 || nB == 0 || nA+nB != rep.Accepted {
		t.Fatalf("pool A stored %d, pool B %d; want both above 0 and %d in all", nA, nB, rep.Accepted)
	}
	waitNoSessions(t, coordA.SessionCount)
	waitNoSessions(t, coordB.SessionCount)
}

func TestRunAddrsChecked(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{Addrs: []string{"127.0.0.1:1", "127.0.0.1:2"}, Sessions: 4, Procs: 1, Command: childCommand}, "2 addresses with procs 1"},
		{Config{Addrs: []string{"127.0.0.1:1", "192.0.2.1:3333"}, Sessions: 4, Procs: 2, Command: childCommand}, "192.0.2.1:3333"},
		{Config{Addrs: []string{"127.0.0.1:1", "127.0.0.1"}, Sessions: 4, Procs: 2, Command: childCommand}, `address "127.0.0.1"`},
	} {
		_, err := Run(context.Background(), c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want one with %q", c.cfg.Addrs, err, c.want)
		}
	}
}

func TestRunProcsNeedsCommand(t *testing.T) {
	_, err := Run(context.Background(), Config{Addr: "127.0.0.1:1", Sessions: 4, Procs: 2})
	if err == nil || !strings.Contains(err.Error(), "command") {
		t.Fatalf("error %v, want one about the missing command", err)
	}
}

// waitNoSessions checks the coordinator has seen every session close:
// Run closes them before returning, the server notices asynchronously.
func waitNoSessions(t *testing.T, count func() int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for count() != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // polling with a deadline
	}
	if n := count(); n != 0 {
		t.Fatalf("%d sessions left after Run", n)
	}
}

func TestRunRejectsNonLoopback(t *testing.T) {
	_, err := Run(context.Background(), Config{Addr: "192.0.2.1:3333", Sessions: 1})
	if err == nil || !strings.Contains(err.Error(), "192.0.2.1:3333") {
		t.Fatalf("error %v, want a refusal naming the address", err)
	}
}

func TestSourceIP(t *testing.T) {
	for _, tc := range []struct {
		i    int
		want string
	}{{0, "127.0.0.1"}, {19999, "127.0.0.1"}, {20000, "127.0.0.2"}, {99999, "127.0.0.5"}, {20000 * 255, "127.0.1.0"}} {
		if got := sourceIP(tc.i, 20000); got != tc.want {
			t.Errorf("sourceIP(%d) = %s, want %s", tc.i, got, tc.want)
		}
	}
}

func TestSplit(t *testing.T) {
	var got []int
	for k := range 3 {
		got = append(got, split(11, 3, k))
	}
	if fmt.Sprint(got) != "[4 4 3]" {
		t.Fatalf("split(11, 3) = %v, want [4 4 3]", got)
	}
}

// TestNotifyStats merges two processes' samples of two blocks: the
// spread is from the earliest first byte over both processes.
func TestNotifyStats(t *testing.T) {
	var s notifyStats
	const ms = int64(time.Millisecond)
	// Block 1, submitted at 1000 ms: process A's first byte at 1010 ms.
	got, first, last, spread := s.add(1000*ms, []roundResult{
		{First: []int64{1010 * ms, 1012 * ms}, At: []int64{1011 * ms, 1015 * ms}, CPU: 3000, SysCPU: 2000},
		{First: []int64{1020 * ms}, At: []int64{1030 * ms}, Missing: 1, CPU: 1000},
	})
	if got != 3 || first != 11*time.Millisecond || last != 30*time.Millisecond || spread != 20*time.Millisecond {
		t.Fatalf("block 1: got %d first %v last %v spread %v; want 3 11ms 30ms 20ms", got, first, last, spread)
	}
	// Block 2, submitted at 2000 ms.
	s.add(2000*ms, []roundResult{{First: []int64{2002 * ms}, At: []int64{2004 * ms}}, {First: []int64{2003 * ms}, At: []int64{2009 * ms}}})
	var rep Report
	s.fill(&rep)
	// From submit: 4 9 11 15 30 ms; spread: 1 2 5 7 20 ms.
	if rep.NotifySamples != 5 || rep.BlocksMeasured != 2 || rep.NotifyMissing != 1 || rep.LoadgenCPU != 4000 || rep.LoadgenSysCPU != 2000 {
		t.Fatalf("samples %d blocks %d missing %d cpu %v (kernel %v); want 5 2 1 4µs (2µs)", rep.NotifySamples, rep.BlocksMeasured, rep.NotifyMissing, rep.LoadgenCPU, rep.LoadgenSysCPU)
	}
	if rep.NotifyP50 != 11*time.Millisecond || rep.NotifyP99 != 30*time.Millisecond || rep.NotifyMax != 30*time.Millisecond {
		t.Fatalf("from submit p50 %v p99 %v max %v; want 11ms 30ms 30ms", rep.NotifyP50, rep.NotifyP99, rep.NotifyMax)
	}
	if rep.SpreadP50 != 5*time.Millisecond || rep.SpreadP99 != 20*time.Millisecond || rep.SpreadMax != 20*time.Millisecond {
		t.Fatalf("spread p50 %v p99 %v max %v; want 5ms 20ms 20ms", rep.SpreadP50, rep.SpreadP99, rep.SpreadMax)
	}
	if rep.LoadgenCPUPerNotify() != 800 {
		t.Fatalf("cpu per notify %v, want 800ns", rep.LoadgenCPUPerNotify())
	}
}

func TestRunBlockDelayChecked(t *testing.T) {
	_, err := Run(context.Background(), Config{Addr: "127.0.0.1:1", Sessions: 1, BlockDelay: -time.Second})
	if err == nil || !strings.Contains(err.Error(), "block delay -1s: want 0 or more") {
		t.Fatalf("error %v, want the negative delay named", err)
	}
}

// TestBlockDelay: the notify phase starts BlockDelay after the share
// phase, at once when no block is to be mined, and early when ctx ends.
func TestBlockDelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		if err := blockDelay(context.Background(), Config{Blocks: 2, BlockDelay: 10 * time.Second}); err != nil || time.Since(start) != 10*time.Second {
			t.Fatalf("waited %v (%v), want 10s", time.Since(start), err)
		}
		start = time.Now()
		if err := blockDelay(context.Background(), Config{Blocks: 0, BlockDelay: 10 * time.Second}); err != nil || time.Since(start) != 0 {
			t.Fatalf("no blocks: waited %v (%v), want none", time.Since(start), err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		start = time.Now()
		if err := blockDelay(ctx, Config{Blocks: 1, BlockDelay: 10 * time.Second}); err == nil || time.Since(start) != 3*time.Second {
			t.Fatalf("ctx ending after 3s: waited %v (%v), want 3s and its error", time.Since(start), err)
		}
	})
}
