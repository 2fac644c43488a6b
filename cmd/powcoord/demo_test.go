package main

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/powcoord/powcoord/internal/coordinator"
)

func TestPlanAgents(t *testing.T) {
	plan, err := planAgents(3, false, "1x, 2.5x,150k,2M", "2:30s-2m,4:1m")
	if err != nil {
		t.Fatal(err)
	}
	if len(plan) != 4 {
		t.Fatalf("%d agents, want 4 (one per rate)", len(plan))
	}
	want := []struct {
		name        string
		mult, rate  float64
		join, leave time.Duration
	}{
		{"agent1", 1, 0, 0, 0},
		{"agent2", 2.5, 0, 30 * time.Second, 2 * time.Minute},
		{"agent3", 0, 150e3, 0, 0},
		{"agent4", 0, 2e6, time.Minute, 0},
	}
	for i, w := range want {
		d := plan[i]
		if d.name != w.name || d.mult != w.mult || d.rate != w.rate || d.join != w.join || d.leave != w.leave {
			t.Errorf("agent %d = %s mult %v rate %v join %v leave %v, want %+v", i+1, d.name, d.mult, d.rate, d.join, d.leave, w)
		}
	}
	if plan, err := planAgents(5, true, "", ""); err != nil || len(plan) != 5 || plan[4].name != "agent5" {
		t.Errorf("--agents 5: %d agents, err %v", len(plan), err)
	}
}

func TestPlanAgentsErrorsNameTheValue(t *testing.T) {
	for _, tc := range []struct {
		n               int
		nGiven          bool
		rates, schedule string
		want            string
	}{
		{3, true, "1x,2x", "", `--agents 3 but --agent-rates "1x,2x" has 2 entries`},
		{0, false, "1x,fast", "", `entry 2 "fast"`},
		{0, false, "0x", "", `entry 1 "0x"`},
		{0, false, "-5k", "", `entry 1 "-5k"`},
		{2, false, "", "3:10s", `"3:10s"`},
		{2, false, "", "1:soon", `join time "soon"`},
		{2, false, "", "1:1m-30s", `leave time "30s"`},
		{2, false, "", "1:1s,1:2s", `agent 1 appears twice`},
		{1001, false, "", "", `--agents 1001`},
	} {
		_, err := planAgents(tc.n, tc.nGiven, tc.rates, tc.schedule)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("planAgents(%d, %q, %q): err = %v, want it to contain %q", tc.n, tc.rates, tc.schedule, err, tc.want)
		}
	}
}

func TestHistogramAgainstExponential(t *testing.T) {
	// 10 intervals against a 10 s target: bins of 5 s, the last open.
	h := histogram([]float64{0.5, 1, 4.9, 5, 7, 12, 19.99, 20, 39.9, 400}, 10)
	wantCounts := []int{3, 2, 1, 1, 1, 0, 0, 1, 1}
	if h.BinSeconds != 5 || len(h.Counts) != len(wantCounts) {
		t.Fatalf("bins of %v s, %d bins", h.BinSeconds, len(h.Counts))
	}
	var sum float64
	for i, c := range wantCounts {
		if h.Counts[i] != c {
			t.Errorf("bin %d: %d intervals, want %d (counts %v)", i, h.Counts[i], c, h.Counts)
		}
		sum += h.Expected[i]
	}
	// First bin: 10·(1 − e^−0.5) = 3.9347; last: 10·e^−4 = 0.18316.
	if math.Abs(h.Expected[0]-3.934693) > 1e-5 || math.Abs(h.Expected[8]-0.183156) > 1e-5 {
		t.Errorf("expected first %.6f last %.6f, want 3.934693 and 0.183156", h.Expected[0], h.Expected[8])
	}
	if math.Abs(sum-10) > 1e-9 {
		t.Errorf("expected counts sum to %v, want 10", sum)
	}
}

func TestSimulationSummary(t *testing.T) {
	plan, err := planAgents(0, false, "1x,3x", "")
	if err != nil {
		t.Fatal(err)
	}
	s := newSimulation(plan, 10*time.Second)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s.start = t0
	plan[0].onFor, plan[1].onFor = 100*time.Second, 100*time.Second
	for i, f := range []string{"agent2", "agent2", "agent1", "agent2"} {
		s.block(coordinator.BlockEvent{Finder: f, Time: t0.Add(time.Duration(i+1) * 8 * time.Second), Accepted: true})
	}
	sum := s.summary(t0.Add(100 * time.Second))
	if sum.Blocks != 4 || sum.MeanInterval != 8 || sum.ElapsedSeconds != 100 {
		t.Errorf("blocks %d mean %v elapsed %v, want 4, 8, 100", sum.Blocks, sum.MeanInterval, sum.ElapsedSeconds)
	}
	if sum.Agents[0].Blocks != 1 || sum.Agents[1].Blocks != 3 || sum.Agents[1].BlockShare != 0.75 {
		t.Errorf("agents %+v, want 1 and 3 blocks (75%%)", sum.Agents)
	}
	for _, want := range []string{"4 blocks, mean interval 8.00s (target 10s)", "agent2", "3x", "75.0%"} {
		if !strings.Contains(sum.Text, want) {
			t.Errorf("summary text lacks %q:\n%s", want, sum.Text)
		}
	}
}
