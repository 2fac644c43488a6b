package sim

import (
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestParsePlan(t *testing.T) {
	plan, err := ParsePlan(3, false, "1x, 2.5x,150k,2M", "2:30s-2m,4:1m")
	if err != nil {
		t.Fatal(err)
	}
	if len(plan) != 4 {
		t.Fatalf("%d agents, want 4 (one per rate)", len(plan))
	}
	want := []struct {
		name, speed string
		mult, rate  float64
		join, leave time.Duration
	}{
		{"agent1", "1x", 1, 0, 0, 0},
		{"agent2", "2.5x", 2.5, 0, 30 * time.Second, 2 * time.Minute},
		{"agent3", "150k", 0, 150e3, 0, 0},
		{"agent4", "2M", 0, 2e6, time.Minute, 0},
	}
	for i, w := range want {
		a := plan[i]
		if a.Name != w.name || a.Speed != w.speed || a.Mult != w.mult || a.Rate != w.rate || a.Join != w.join || a.Leave != w.leave {
			t.Errorf("agent %d = %s %q mult %v rate %v join %v leave %v, want %+v", i+1, a.Name, a.Speed, a.Mult, a.Rate, a.Join, a.Leave, w)
		}
	}
	if !plan.NeedsBaseRate() {
		t.Error("NeedsBaseRate = false with 1x and 2.5x agents")
	}
	plan.SetBaseRate(200e3)
	if plan[0].Rate != 200e3 || plan[1].Rate != 500e3 || plan[2].Rate != 150e3 || plan[3].Rate != 2e6 {
		t.Errorf("rates after SetBaseRate(200k): %v %v %v %v, want 200000 500000 150000 2000000", plan[0].Rate, plan[1].Rate, plan[2].Rate, plan[3].Rate)
	}

	plan, err = ParsePlan(5, true, "", "")
	if err != nil || len(plan) != 5 || plan[4].Name != "agent5" || plan[4].Speed != "" || plan.NeedsBaseRate() {
		t.Errorf("--agents 5: %d agents, err %v", len(plan), err)
	}
	if plan, err := ParsePlan(0, true, "", ""); err != nil || len(plan) != 0 {
		t.Errorf("--agents 0: %d agents, err %v; want none and no error", len(plan), err)
	}
}

func TestParsePlanErrorsNameTheValue(t *testing.T) {
	for _, tc := range []struct {
		n               int
		nGiven          bool
		rates, schedule string
		want            string
	}{
		{3, true, "1x,2x", "", `--agents 3 but --agent-rates "1x,2x" has 2 entries`},
		{0, false, "1x,fast", "", `--agent-rates: entry 2 "fast": want a positive rate like 150k or a multiple like 2x`},
		{0, false, "0x", "", `--agent-rates: entry 1 "0x": want a positive multiple`},
		{0, false, "-5k", "", `--agent-rates: entry 1 "-5k"`},
		{0, false, "1x,,2x", "", `--agent-rates: entry 2 ""`},
		{0, false, "infx", "", `entry 1 "infx"`},
		{2, false, "", "3:10s", `--agent-schedule: entry "3:10s": want N:JOIN[-LEAVE] with N an agent number 1..2`},
		{2, false, "", "10s", `--agent-schedule: entry "10s"`},
		{2, false, "", "1:soon", `join time "soon" is not a duration`},
		{2, false, "", "1:-5s", `join time "" is not a duration`},
		{2, false, "", "1:1m-30s", `leave time "30s" must be a duration after the join time`},
		{2, false, "", "1:1s,1:2s", `--agent-schedule: agent 1 appears twice`},
		{1001, false, "", "", `--agents 1001: must be 0..1000`},
		{-1, true, "", "", `--agents -1: must be 0..1000`},
	} {
		plan, err := ParsePlan(tc.n, tc.nGiven, tc.rates, tc.schedule)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParsePlan(%d, %q, %q): err = %v, want it to contain %q", tc.n, tc.rates, tc.schedule, err, tc.want)
		}
		if plan != nil {
			t.Errorf("ParsePlan(%d, %q, %q): a plan of %d with the error", tc.n, tc.rates, tc.schedule, len(plan))
		}
	}
}

func TestParseRate(t *testing.T) {
	for in, want := range map[string]float64{
		"250000": 250e3, "250k": 250e3, "250K": 250e3, "1.5M": 1.5e6, "2G": 2e9, "150kH/s": 150e3, "7h/s": 7, "0.5": 0.5,
	} {
		if got, err := ParseRate(in); err != nil || got != want {
			t.Errorf("ParseRate(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "k", "0", "-1k", "fast", "1.5m", "NaN", "Inf", "1e308G", "2x"} {
		got, err := ParseRate(in)
		if err == nil || !strings.Contains(err.Error(), `rate "`+in+`"`) {
			t.Errorf("ParseRate(%q) = %v, %v; want an error naming the value", in, got, err)
		}
	}
}

func TestFormatRate(t *testing.T) {
	for in, want := range map[float64]string{
		0: "0.00 H/s", 999: "999.00 H/s", 1500: "1.50 kH/s", 2.5e6: "2.50 MH/s", 3e9: "3.00 GH/s", 4e15: "4.00 PH/s", 5e18: "5000.00 PH/s",
	} {
		if got := FormatRate(in); got != want {
			t.Errorf("FormatRate(%v) = %q, want %q", in, got, want)
		}
	}
}

// TestNewMinersThreads checks how the cores are shared: unthrottled
// agents split them, throttled ones get them all, an explicit count wins.
func TestNewMinersThreads(t *testing.T) {
	cpus := runtime.NumCPU()
	for _, tc := range []struct {
		rates   string
		threads int
		want    int
	}{
		{"", 0, max(1, cpus/2)},
		{"150k,300k", 0, cpus},
		{"150k,300k", 3, 3},
		{"", 1, 1},
	} {
		plan, err := ParsePlan(2, tc.rates == "", tc.rates, "")
		if err != nil {
			t.Fatal(err)
		}
		s := New(plan, 10*time.Second)
		if err := s.NewMiners("stratum+tcp://127.0.0.1:1", tc.threads, discard()); err != nil {
			t.Fatalf("rates %q threads %d: %v", tc.rates, tc.threads, err)
		}
		for _, a := range plan {
			if got := a.getMiner().Stats().Threads; got != tc.want {
				t.Errorf("rates %q threads %d: %s has %d threads, want %d", tc.rates, tc.threads, a.Name, got, tc.want)
			}
		}
	}
	plan, _ := ParsePlan(1, true, "", "")
	if err := New(plan, time.Second).NewMiners("stratum+tcp://127.0.0.1:1", -2, discard()); err == nil || !strings.Contains(err.Error(), "-2 threads") {
		t.Errorf("NewMiners with -2 threads: err = %v, want one naming -2", err)
	}
}
