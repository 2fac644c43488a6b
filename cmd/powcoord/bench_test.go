package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/powcoord/powcoord/internal/hasher"
)

// TestBenchPicksFastest: bench --json names as its pick the kernel with
// the highest rate at the first thread count, says why with that rate,
// and measures every available kernel at every thread count asked for.
func TestBenchPicksFastest(t *testing.T) {
	var out, errb bytes.Buffer
	err := run(context.Background(), []string{"bench", "--json", "--duration", "5ms", "--runs", "1", "--threads", "1,2"}, &out, &errb)
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, errb.String())
	}
	var rep benchReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("bench --json output %q: %v", out.String(), err)
	}
	if want := 2 * len(hasher.Available()); len(rep.Results) != want {
		t.Fatalf("%d results, want %d (every kernel at 1 and 2 threads)", len(rep.Results), want)
	}
	best := benchResult{}
	for _, r := range rep.Results {
		if r.Threads == 1 && r.rate() > best.rate() {
			best = r
		}
		if r.MHs <= 0 {
			t.Errorf("%s at %d threads: %v MH/s", r.Kernel, r.Threads, r.MHs)
		}
	}
	if rep.Default != best.Kernel {
		t.Errorf("bench picked %s, the fastest at 1 thread is %s (%.2f MH/s)", rep.Default, best.Kernel, best.rate())
	}
	if !strings.HasPrefix(rep.Why, "measured fastest: ") {
		t.Errorf("why %q is not a measurement", rep.Why)
	}
}

func TestBenchTableSaysFastest(t *testing.T) {
	var out, errb bytes.Buffer
	err := run(context.Background(), []string{"bench", "--kernel", "generic", "--duration", "5ms", "--runs", "1", "--threads", "1"}, &out, &errb)
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, errb.String())
	}
	if !strings.Contains(out.String(), "\nfastest kernel measured: ") || strings.Contains(out.String(), "agent") {
		t.Errorf("bench --kernel table does not say which of the two measured is fastest, or claims it is the agent's pick:\n%s", out.String())
	}
}
