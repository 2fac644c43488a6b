package sim

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// Summary is what a simulation shows: the end summary the demo prints
// and the JSON of the dashboard's GET /api/simulation and of the
// "simulation" member of its status events. The JSON names are the
// dashboard's; change them only together with internal/web/static/app.js.
type Summary struct {
	Text               string      `json:"text"`                  // the terminal rendering (Format)
	ElapsedSeconds     float64     `json:"elapsed_seconds"`       // since Run started; 0 before
	TargetBlockSeconds float64     `json:"target_block_seconds"`  // the block interval the chain aims for
	Blocks             int         `json:"blocks"`                // block intervals counted
	MeanInterval       float64     `json:"mean_interval_seconds"` // their mean; 0 without blocks
	StartDifficulty    float64     `json:"start_difficulty"`
	Difficulty         float64     `json:"difficulty"` // the last reading of the chain's difficulty
	Histogram          Histogram   `json:"histogram"`
	Agents             []AgentStat `json:"agents"` // in plan order
	// Income is each agent's income under solo and PPLNS; nil before
	// the first payment is recorded (Paid).
	Income *IncomeSummary `json:"income,omitempty"`
}

// HistogramBins is the number of bins of a Histogram.
const HistogramBins = 9

// Histogram counts block intervals in HistogramBins bins of BinSeconds,
// the last one holding everything beyond, next to what an exponential
// distribution with the target as its mean predicts for the same number
// of intervals.
type Histogram struct {
	BinSeconds float64   `json:"bin_seconds"` // half the target: the last bin starts at 4× the target
	Counts     []int     `json:"counts"`      // intervals observed per bin
	Expected   []float64 `json:"expected"`    // intervals an exponential predicts per bin
}

// AgentStat is one agent's line of the summary.
type AgentStat struct {
	Name          string  `json:"name"`
	Speed         string  `json:"speed"`          // as planned ("2x", "150k") or "full"
	Limit         float64 `json:"limit"`          // hashes/s; 0: unthrottled
	Online        bool    `json:"online"`         // mining now
	OnlineSeconds float64 `json:"online_seconds"` // total time mined
	Hashes        uint64  `json:"hashes"`
	Hashrate      float64 `json:"hashrate"`       // mean while online, H/s
	HashrateShare float64 `json:"hashrate_share"` // of all agents' hashes, 0..1
	Blocks        int     `json:"blocks"`         // blocks it found
	BlockShare    float64 `json:"block_share"`    // of all blocks counted, 0..1
}

// NewHistogram bins intervals (seconds) against an exponential with mean
// target seconds: bins of target/2, the last one open-ended at 4×target.
func NewHistogram(intervals []float64, target float64) Histogram {
	const bins = HistogramBins
	w := target / 2
	h := Histogram{BinSeconds: w, Counts: make([]int, bins), Expected: make([]float64, bins)}
	for _, v := range intervals {
		h.Counts[max(0, min(bins-1, int(v/w)))]++
	}
	n := float64(len(intervals))
	for i := range bins {
		a := float64(i) * w
		p := math.Exp(-a / target)
		if i < bins-1 {
			p -= math.Exp(-(a + w) / target)
		}
		h.Expected[i] = n * p
	}
	return h
}

// Summary reports the simulation as of now.
func (s *Simulation) Summary(now time.Time) Summary {
	s.mu.Lock()
	intervals := slices.Clone(s.intervals)
	blocks := make(map[string]int, len(s.blocks))
	for k, v := range s.blocks {
		blocks[k] = v
	}
	s.readDifficulty()
	start := s.start
	income := s.income(now)
	sum := Summary{
		TargetBlockSeconds: s.target.Seconds(), StartDifficulty: s.startDiff, Difficulty: s.lastDiff,
	}
	s.mu.Unlock()

	sum.Histogram = NewHistogram(intervals, sum.TargetBlockSeconds)
	if !start.IsZero() {
		sum.ElapsedSeconds = now.Sub(start).Seconds()
	}
	for _, v := range intervals {
		sum.MeanInterval += v
	}
	sum.Blocks = len(intervals)
	if sum.Blocks > 0 {
		sum.MeanInterval /= float64(sum.Blocks)
	}
	var totalHashes uint64
	sum.Agents = make([]AgentStat, 0, len(s.plan))
	for _, a := range s.plan {
		st := AgentStat{Name: a.Name, Speed: a.Speed, Limit: a.Rate, Online: a.Online(), Blocks: blocks[a.Name]}
		st.OnlineSeconds = a.OnlineFor(now).Seconds()
		if m := a.getMiner(); m != nil {
			st.Hashes = m.Stats().Hashes
		}
		if st.OnlineSeconds > 0 {
			st.Hashrate = float64(st.Hashes) / st.OnlineSeconds
		}
		if st.Speed == "" {
			st.Speed = "full"
		}
		totalHashes += st.Hashes
		sum.Agents = append(sum.Agents, st)
	}
	for i := range sum.Agents {
		a := &sum.Agents[i]
		if totalHashes > 0 {
			a.HashrateShare = float64(a.Hashes) / float64(totalHashes)
		}
		if sum.Blocks > 0 {
			a.BlockShare = float64(a.Blocks) / float64(sum.Blocks)
		}
	}
	sum.Income = income
	sum.Text = sum.Format()
	return sum
}

// Format renders the summary for a terminal: the totals, the interval
// histogram against the exponential, and a table of the agents (their
// share of blocks over their share of hashes tends to 1).
func (s *Summary) Format() string {
	var b strings.Builder
	T := s.TargetBlockSeconds
	fmt.Fprintf(&b, "\nsimulation summary: %s, %d blocks, mean interval %.2fs (target %gs), difficulty %.4g -> %.4g\n",
		(time.Duration(math.Round(s.ElapsedSeconds)) * time.Second).String(), s.Blocks, s.MeanInterval, T, s.StartDifficulty, s.Difficulty)
	fmt.Fprintf(&b, "\nblock intervals      observed  exponential (mean %gs)\n", T)
	h := s.Histogram
	peak := 1.0
	for i := range h.Counts {
		peak = max(peak, float64(h.Counts[i]), h.Expected[i])
	}
	for i, c := range h.Counts {
		lo := float64(i) * h.BinSeconds
		label := fmt.Sprintf("%5.1fs-%5.1fs", lo, lo+h.BinSeconds)
		if i == len(h.Counts)-1 {
			label = fmt.Sprintf("%5.1fs and up ", lo)
		}
		bar := strings.Repeat("#", int(math.Round(float64(c)/peak*30)))
		fmt.Fprintf(&b, "  %s %6d  %9.1f  %s\n", label, c, h.Expected[i], bar)
	}
	fmt.Fprintf(&b, "\n%-10s %-6s %12s %10s %9s %7s %9s %7s\n", "agent", "speed", "hashrate", "online", "hashes %", "blocks", "blocks %", "ratio")
	rows := slices.Clone(s.Agents)
	// agent2 before agent10: shorter names first, then by name.
	slices.SortStableFunc(rows, func(x, y AgentStat) int {
		return cmp.Or(cmp.Compare(len(x.Name), len(y.Name)), strings.Compare(x.Name, y.Name))
	})
	for _, a := range rows {
		ratio := "-"
		if a.HashrateShare > 0 && s.Blocks > 0 {
			ratio = fmt.Sprintf("%.2f", a.BlockShare/a.HashrateShare)
		}
		fmt.Fprintf(&b, "%-10s %-6s %12s %9.0fs %8.1f%% %7d %8.1f%% %7s\n", a.Name, a.Speed, FormatRate(a.Hashrate),
			a.OnlineSeconds, 100*a.HashrateShare, a.Blocks, 100*a.BlockShare, ratio)
	}
	b.WriteString("(ratio = share of blocks / share of hashes; it tends to 1 as blocks accumulate)\n")
	if s.Income != nil {
		b.WriteString(s.Income.Format())
	}
	return b.String()
}
