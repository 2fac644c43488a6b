package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"math"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/powcoord/powcoord/internal/agent"
)

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// fakeMiner hashes at a fixed rate of the clock (synctest's fake one in
// the tests that run it) while Run runs; hashes is added to what it did.
type fakeMiner struct {
	rate float64 // hashes/s while running

	mu      sync.Mutex
	hashes  uint64
	running bool
	since   time.Time
	runs    int
}

func (m *fakeMiner) Run(ctx context.Context) error {
	m.mu.Lock()
	m.running, m.since = true, time.Now()
	m.runs++
	m.mu.Unlock()
	<-ctx.Done()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.hashes += uint64(m.rate * time.Since(m.since).Seconds())
	m.running = false
	return nil
}

func (m *fakeMiner) Stats() agent.Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := agent.Stats{Hashes: m.hashes}
	if m.running {
		st.Hashes += uint64(m.rate * time.Since(m.since).Seconds())
		st.Hashrate = m.rate
	}
	return st
}

func TestHistogramAgainstExponential(t *testing.T) {
	// 11 intervals against a 10 s target: bins of 5 s, the last open; a
	// negative one (a clock stepping back) counts in the first bin.
	h := NewHistogram([]float64{0.5, 1, 4.9, 5, 7, 12, 19.99, 20, 39.9, 400, -3}, 10)
	wantCounts := []int{4, 2, 1, 1, 1, 0, 0, 1, 1}
	if h.BinSeconds != 5 || len(h.Counts) != len(wantCounts) || len(h.Expected) != len(wantCounts) {
		t.Fatalf("bins of %v s, %d bins, %d expected", h.BinSeconds, len(h.Counts), len(h.Expected))
	}
	var sum float64
	for i, c := range wantCounts {
		if h.Counts[i] != c {
			t.Errorf("bin %d: %d intervals, want %d (counts %v)", i, h.Counts[i], c, h.Counts)
		}
		sum += h.Expected[i]
	}
	// First bin: 11·(1 − e^−0.5) = 4.328162; last: 11·e^−4 = 0.201472.
	if math.Abs(h.Expected[0]-4.328162) > 1e-6 || math.Abs(h.Expected[8]-0.201472) > 1e-6 {
		t.Errorf("expected first %.6f last %.6f, want 4.328162 and 0.201472", h.Expected[0], h.Expected[8])
	}
	if math.Abs(sum-11) > 1e-9 {
		t.Errorf("expected counts sum to %v, want 11", sum)
	}
	if h := NewHistogram(nil, 10); h.Counts[0] != 0 || h.Expected[0] != 0 {
		t.Errorf("no intervals: counts %v expected %v, want zeros", h.Counts, h.Expected)
	}
}

// TestSummaryFromBlocks feeds a hand-made sequence of blocks and checks
// every number of the summary and its rendering.
func TestSummaryFromBlocks(t *testing.T) {
	plan, err := ParsePlan(0, false, "1x,3x", "")
	if err != nil {
		t.Fatal(err)
	}
	plan.SetBaseRate(1000)
	s := New(plan, 10*time.Second)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s.start = t0
	plan[0].miner, plan[1].miner = &fakeMiner{hashes: 100_000}, &fakeMiner{hashes: 300_000}
	plan[0].onFor, plan[1].onFor = 100*time.Second, 100*time.Second
	diff := 0.0625
	s.TrackDifficulty(0.05, func() float64 { return diff })
	for i, f := range []string{"agent2", "agent2", "agent1", "agent2"} {
		s.Block(f, t0.Add(time.Duration(i+1)*8*time.Second)) // 8 s apart
	}
	sum := s.Summary(t0.Add(100 * time.Second))
	if sum.Blocks != 4 || sum.MeanInterval != 8 || sum.ElapsedSeconds != 100 || sum.TargetBlockSeconds != 10 ||
		sum.StartDifficulty != 0.05 || sum.Difficulty != 0.0625 {
		t.Errorf("blocks %d mean %v elapsed %v target %v difficulty %v -> %v, want 4, 8, 100, 10, 0.05 -> 0.0625",
			sum.Blocks, sum.MeanInterval, sum.ElapsedSeconds, sum.TargetBlockSeconds, sum.StartDifficulty, sum.Difficulty)
	}
	if want := []int{0, 4, 0, 0, 0, 0, 0, 0, 0}; !equal(sum.Histogram.Counts, want) {
		t.Errorf("histogram counts %v, want %v", sum.Histogram.Counts, want)
	}
	wantAgents := []AgentStat{
		{Name: "agent1", Speed: "1x", Limit: 1000, OnlineSeconds: 100, Hashes: 100_000, Hashrate: 1000, HashrateShare: 0.25, Blocks: 1, BlockShare: 0.25},
		{Name: "agent2", Speed: "3x", Limit: 3000, OnlineSeconds: 100, Hashes: 300_000, Hashrate: 3000, HashrateShare: 0.75, Blocks: 3, BlockShare: 0.75},
	}
	if len(sum.Agents) != 2 || sum.Agents[0] != wantAgents[0] || sum.Agents[1] != wantAgents[1] {
		t.Errorf("agents\n %+v\nwant\n %+v", sum.Agents, wantAgents)
	}
	wantText := `
simulation summary: 1m40s, 4 blocks, mean interval 8.00s (target 10s), difficulty 0.05 -> 0.0625

block intervals      observed  exponential (mean 10s)
    0.0s-  5.0s      0        1.6  
    5.0s- 10.0s      4        1.0  ##############################
   10.0s- 15.0s      0        0.6  
   15.0s- 20.0s      0        0.4  
   20.0s- 25.0s      0        0.2  
   25.0s- 30.0s      0        0.1  
   30.0s- 35.0s      0        0.1  
   35.0s- 40.0s      0        0.0  
   40.0s and up       0        0.1  

agent      speed      hashrate     online  hashes %  blocks  blocks %   ratio
agent1     1x        1.00 kH/s       100s     25.0%       1     25.0%    1.00
agent2     3x        3.00 kH/s       100s     75.0%       3     75.0%    1.00
(ratio = share of blocks / share of hashes; it tends to 1 as blocks accumulate)
`
	if sum.Text != wantText {
		t.Errorf("summary text:\n%s\nwant:\n%s", sum.Text, wantText)
	}

	// The difficulty is read at every summary until it is frozen.
	diff = 0.07
	if d := s.Summary(t0).Difficulty; d != 0.07 {
		t.Errorf("difficulty %v after it moved, want 0.07", d)
	}
	s.FreezeDifficulty()
	diff = 0.09
	if d := s.Summary(t0).Difficulty; d != 0.07 {
		t.Errorf("difficulty %v after FreezeDifficulty, want the last reading 0.07", d)
	}
}

// TestSummaryBeforeRun: a summary before anything ran has no elapsed
// time, no intervals (a block before the start counts only for its
// finder) and full-speed agents.
func TestSummaryBeforeRun(t *testing.T) {
	plan, _ := ParsePlan(2, true, "", "")
	s := New(plan, 5*time.Second)
	s.Block("agent2", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	sum := s.Summary(time.Now())
	if sum.ElapsedSeconds != 0 || sum.Blocks != 0 || sum.MeanInterval != 0 || sum.Difficulty != 0 {
		t.Errorf("elapsed %v blocks %d mean %v difficulty %v, want zeros", sum.ElapsedSeconds, sum.Blocks, sum.MeanInterval, sum.Difficulty)
	}
	if a := sum.Agents[1]; a.Speed != "full" || a.Blocks != 1 || a.BlockShare != 0 || a.Hashrate != 0 || a.Online {
		t.Errorf("agent2 %+v, want speed full, 1 block, no share, no hashrate, offline", a)
	}
	if !strings.Contains(sum.Text, "agent2     full       0.00 H/s         0s      0.0%       1      0.0%       -") {
		t.Errorf("summary text lacks agent2's row:\n%s", sum.Text)
	}
}

// TestRunSchedule runs a plan with a join/leave schedule on synctest's
// clock: three simulated minutes take no real time.
func TestRunSchedule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		plan, err := ParsePlan(0, false, "1x,3x,2k", "2:30s-2m,3:4m")
		if err != nil {
			t.Fatal(err)
		}
		plan.SetBaseRate(1000)
		miners := []*fakeMiner{{rate: 1000}, {rate: 3000}, {rate: 2000}}
		for i, a := range plan {
			a.miner = miners[i]
		}
		var logs bytes.Buffer
		log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{
			ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
				if a.Key == slog.TimeKey {
					return slog.Attr{}
				}
				return a
			},
		}))
		s := New(plan, 10*time.Second)
		diff := 1.0
		var diffMu sync.Mutex
		s.TrackDifficulty(1, func() float64 { diffMu.Lock(); defer diffMu.Unlock(); return diff })
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		start := time.Now()
		go func() { defer close(done); s.Run(ctx, log) }()

		time.Sleep(20 * time.Second)
		s.Block("agent1", time.Now())
		time.Sleep(40 * time.Second) // 1m: agent2 joined at 30s
		s.Block("agent2", time.Now())
		synctest.Wait()
		mid := s.Summary(time.Now())
		if mid.ElapsedSeconds != 60 || !mid.Agents[0].Online || !mid.Agents[1].Online || mid.Agents[2].Online {
			t.Errorf("at 1m: elapsed %v, online %v %v %v; want 60, agent1 and agent2 online", mid.ElapsedSeconds,
				mid.Agents[0].Online, mid.Agents[1].Online, mid.Agents[2].Online)
		}
		if a := mid.Agents[1]; a.OnlineSeconds != 30 || a.Hashes != 90_000 || a.Hashrate != 3000 {
			t.Errorf("agent2 at 1m: online %vs, %d hashes, %v H/s; want 30s, 90000, 3000", a.OnlineSeconds, a.Hashes, a.Hashrate)
		}
		if plan[1].Hashrate() != 3000 || plan[2].Hashrate() != 0 {
			t.Errorf("current hashrates at 1m: agent2 %v agent3 %v, want 3000 and 0", plan[1].Hashrate(), plan[2].Hashrate())
		}

		time.Sleep(2 * time.Minute) // 3m: agent2 left at 2m
		diffMu.Lock()
		diff = 2
		diffMu.Unlock()
		cancel()
		<-done
		if time.Since(start) != 3*time.Minute {
			t.Errorf("Run returned %v after the start, want 3m", time.Since(start))
		}
		s.FreezeDifficulty()
		sum := s.Summary(start.Add(3 * time.Minute))
		want := []struct {
			online float64
			hashes uint64
			runs   int
			hShare float64
			blocks int
		}{
			{180, 180_000, 1, 0.4, 1},
			{90, 270_000, 1, 0.6, 1},
			{0, 0, 0, 0, 0},
		}
		for i, w := range want {
			a := sum.Agents[i]
			if a.OnlineSeconds != w.online || a.Hashes != w.hashes || miners[i].runs != w.runs || a.HashrateShare != w.hShare ||
				a.Blocks != w.blocks || a.Online {
				t.Errorf("%s: online %vs, %d hashes, %d runs, hash share %v, %d blocks, online %v; want %+v",
					a.Name, a.OnlineSeconds, a.Hashes, miners[i].runs, a.HashrateShare, a.Blocks, a.Online, w)
			}
		}
		if sum.Blocks != 2 || sum.MeanInterval != 30 || sum.ElapsedSeconds != 180 || sum.Difficulty != 2 {
			t.Errorf("blocks %d mean %v elapsed %v difficulty %v; want 2, 30 (20 s and 40 s), 180, 2 (read when Run ended)",
				sum.Blocks, sum.MeanInterval, sum.ElapsedSeconds, sum.Difficulty)
		}
		for _, line := range []string{
			`level=INFO msg="agent joins" agent=agent2 at=30s`,
			`level=INFO msg="agent leaves" agent=agent2 at=2m0s`,
		} {
			if !strings.Contains(logs.String(), line) {
				t.Errorf("logs lack %q:\n%s", line, logs.String())
			}
		}
		if strings.Contains(logs.String(), "agent3") {
			t.Errorf("agent3 (joining at 4m, after the end) was logged:\n%s", logs.String())
		}
	})
}

// TestSummaryJSON pins the JSON names the dashboard (internal/web/static/app.js) reads.
func TestSummaryJSON(t *testing.T) {
	sum := Summary{
		Text: "x", ElapsedSeconds: 1, TargetBlockSeconds: 2, Blocks: 3, MeanInterval: 4, StartDifficulty: 5, Difficulty: 6,
		Histogram: Histogram{BinSeconds: 7, Counts: []int{8}, Expected: []float64{9}},
		Agents: []AgentStat{{Name: "agent1", Speed: "2x", Limit: 10, Online: true, OnlineSeconds: 11, Hashes: 12,
			Hashrate: 13, HashrateShare: 0.5, Blocks: 14, BlockShare: 0.25}},
	}
	b, err := json.Marshal(sum)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"text":"x","elapsed_seconds":1,"target_block_seconds":2,"blocks":3,"mean_interval_seconds":4,` +
		`"start_difficulty":5,"difficulty":6,"histogram":{"bin_seconds":7,"counts":[8],"expected":[9]},` +
		`"agents":[{"name":"agent1","speed":"2x","limit":10,"online":true,"online_seconds":11,"hashes":12,` +
		`"hashrate":13,"hashrate_share":0.5,"blocks":14,"block_share":0.25}]}`
	if string(b) != want {
		t.Errorf("JSON\n%s\nwant\n%s", b, want)
	}
}

func equal(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
