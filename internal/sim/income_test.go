package sim

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestIncome: solo and PPLNS income of the same blocks, per 6-block bin.
func TestIncome(t *testing.T) {
	plan, err := ParsePlan(0, false, "1x,3x", "")
	if err != nil {
		t.Fatal(err)
	}
	plan.SetBaseRate(1000)
	s := New(plan, 10*time.Second) // bins of 60 s
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s.start = t0
	if sum := s.Summary(t0.Add(time.Second)); sum.Income != nil {
		t.Fatalf("income before any payment: %+v", sum.Income)
	}
	for _, p := range []struct {
		at     int
		finder string
		a1, a2 int64
	}{{10, "agent2", 25, 75}, {30, "agent2", 30, 70}, {70, "agent1", 20, 80}, {125, "agent2", 25, 75}} {
		s.Paid(t0.Add(time.Duration(p.at)*time.Second), p.finder, 100, map[string]int64{"agent1": p.a1, "agent2": p.a2})
	}
	in := s.Summary(t0.Add(130 * time.Second)).Income
	if in == nil || !in.PPLNS || in.BinSeconds != 60 || in.Bins != 2 || len(in.Agents) != 2 {
		t.Fatalf("income %+v", in)
	}
	a1, a2 := in.Agents[0], in.Agents[1]
	if a1.Solo != (IncomeStat{Total: 100, PerBin: 50, SD: 50}) || a1.PPLNS != (IncomeStat{Total: 100, PerBin: 37.5, SD: 17.5}) {
		t.Errorf("agent1: solo %+v pplns %+v", a1.Solo, a1.PPLNS)
	}
	if a2.Solo != (IncomeStat{Total: 300, PerBin: 100, SD: 100}) || a2.PPLNS != (IncomeStat{Total: 300, PerBin: 112.5, SD: 32.5}) {
		t.Errorf("agent2: solo %+v pplns %+v", a2.Solo, a2.PPLNS)
	}
	if got := fmt.Sprint(a1.Curve); got != "[{10 0 25} {30 0 55} {70 100 75} {125 100 100}]" {
		t.Errorf("agent1's curve %s", got)
	}
	text := in.Format()
	for _, want := range []string{
		"income per agent per 6 blocks' time (60s bins, 2 complete), in BTC",
		"agent1           0.0000       0.0000       0.0000   1.00         0.0000       0.0000       0.0000   0.47",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("income table lacks %q:\n%s", want, text)
		}
	}
	// A solo run: only solo income.
	s2 := New(plan, 10*time.Second)
	s2.start = t0
	s2.Paid(t0.Add(10*time.Second), "agent1", 5e9, nil)
	in2 := s2.Summary(t0.Add(61 * time.Second)).Income
	if in2.PPLNS || in2.Agents[0].Solo.Total != 5e9 || in2.Agents[0].PPLNS.Total != 0 || strings.Contains(in2.Format(), "pplns") {
		t.Errorf("solo run: %+v\n%s", in2, in2.Format())
	}
}
