package sim

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// BlocksPerIncomeBin is how many target block intervals one income bin
// spans: 6, an hour of blocks on Bitcoin's 10-minute schedule, so that
// the spread of income per bin is the spread per hour a miner would see.
const BlocksPerIncomeBin = 6

// payment is what one block paid each agent: solo (its finder took the
// whole value) and PPLNS (nil when the block was not a PPLNS block).
type payment struct {
	at     time.Time
	finder string
	value  int64
	pplns  map[string]int64
}

// Paid records what the block found by finder at time at paid: value in
// full to its finder under solo, and pplns (agent name → satoshis; nil
// when the run is solo) under PPLNS. Both are kept so that the summary
// can set the two side by side for the same blocks and hash rates.
func (s *Simulation) Paid(at time.Time, finder string, value int64, pplns map[string]int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.payments = append(s.payments, payment{at: at, finder: finder, value: value, pplns: pplns})
}

// IncomeSummary is each agent's income over the run under solo and, when
// the run paid PPLNS, under PPLNS, with its spread per bin.
type IncomeSummary struct {
	PPLNS      bool          `json:"pplns"`       // the run paid PPLNS (else only solo is known)
	BinSeconds float64       `json:"bin_seconds"` // BlocksPerIncomeBin target intervals
	Bins       int           `json:"bins"`        // complete bins the spread is taken over
	Agents     []AgentIncome `json:"agents"`      // in plan order
}

// AgentIncome is one agent's income.
type AgentIncome struct {
	Name  string       `json:"name"`
	Solo  IncomeStat   `json:"solo"`
	PPLNS IncomeStat   `json:"pplns"`
	Curve []IncomeStep `json:"curve"` // cumulative income after each block that paid it
}

// IncomeStat is income in satoshis: the total, and the mean and standard
// deviation of the income per complete bin.
type IncomeStat struct {
	Total  int64   `json:"total"`
	PerBin float64 `json:"per_bin_mean"`
	SD     float64 `json:"per_bin_sd"`
}

// CV is the standard deviation over the mean (0 without income).
func (s IncomeStat) CV() float64 {
	if s.PerBin == 0 {
		return 0
	}
	return s.SD / s.PerBin
}

// IncomeStep is an agent's cumulative income at Seconds since the start.
type IncomeStep struct {
	Seconds float64 `json:"t"`
	Solo    int64   `json:"solo"`
	PPLNS   int64   `json:"pplns"`
}

// income computes the IncomeSummary as of now. s.mu is held.
func (s *Simulation) income(now time.Time) *IncomeSummary {
	if len(s.payments) == 0 || s.start.IsZero() {
		return nil
	}
	bin := BlocksPerIncomeBin * s.target.Seconds()
	out := &IncomeSummary{BinSeconds: bin}
	bins := 0
	if bin > 0 {
		bins = int(now.Sub(s.start).Seconds() / bin)
	}
	out.Bins = bins
	for _, p := range s.payments {
		out.PPLNS = out.PPLNS || p.pplns != nil
	}
	for _, a := range s.plan {
		ai := AgentIncome{Name: a.Name}
		solo := make([]float64, bins)
		pp := make([]float64, bins)
		for _, p := range s.payments {
			sv := int64(0)
			if p.finder == a.Name {
				sv = p.value
			}
			pv := p.pplns[a.Name]
			if sv == 0 && pv == 0 {
				continue
			}
			ai.Solo.Total += sv
			ai.PPLNS.Total += pv
			t := p.at.Sub(s.start).Seconds()
			ai.Curve = append(ai.Curve, IncomeStep{Seconds: t, Solo: ai.Solo.Total, PPLNS: ai.PPLNS.Total})
			if i := int(t / bin); t >= 0 && i < bins {
				solo[i] += float64(sv)
				pp[i] += float64(pv)
			}
		}
		ai.Solo.PerBin, ai.Solo.SD = meanSD(solo)
		ai.PPLNS.PerBin, ai.PPLNS.SD = meanSD(pp)
		out.Agents = append(out.Agents, ai)
	}
	return out
}

// meanSD returns the mean and the (population) standard deviation of xs.
func meanSD(xs []float64) (float64, float64) {
	if len(xs) == 0 {
		return 0, 0
	}
	var m float64
	for _, x := range xs {
		m += x
	}
	m /= float64(len(xs))
	var v float64
	for _, x := range xs {
		v += (x - m) * (x - m)
	}
	return m, math.Sqrt(v / float64(len(xs)))
}

// Format renders the income table for a terminal.
func (in *IncomeSummary) Format() string {
	var b strings.Builder
	fmt.Fprintf(&b, "\nincome per agent per %d blocks' time (%gs bins, %d complete), in BTC\n", BlocksPerIncomeBin, in.BinSeconds, in.Bins)
	if in.PPLNS {
		fmt.Fprintf(&b, "%-10s %12s %12s %12s %6s   %12s %12s %12s %6s\n", "agent", "solo total", "solo mean", "solo sd", "cv", "pplns total", "pplns mean", "pplns sd", "cv")
	} else {
		fmt.Fprintf(&b, "%-10s %12s %12s %12s %6s\n", "agent", "solo total", "solo mean", "solo sd", "cv")
	}
	rows := slices.Clone(in.Agents)
	slices.SortStableFunc(rows, func(x, y AgentIncome) int {
		return cmp.Or(cmp.Compare(len(x.Name), len(y.Name)), strings.Compare(x.Name, y.Name))
	})
	btc := func(v float64) string { return fmt.Sprintf("%.4f", v/1e8) }
	for _, a := range rows {
		fmt.Fprintf(&b, "%-10s %12s %12s %12s %6.2f", a.Name, btc(float64(a.Solo.Total)), btc(a.Solo.PerBin), btc(a.Solo.SD), a.Solo.CV())
		if in.PPLNS {
			fmt.Fprintf(&b, "   %12s %12s %12s %6.2f", btc(float64(a.PPLNS.Total)), btc(a.PPLNS.PerBin), btc(a.PPLNS.SD), a.PPLNS.CV())
		}
		b.WriteByte('\n')
	}
	if in.PPLNS {
		b.WriteString("(solo: what each block would have paid its finder; pplns: what it paid. cv = sd / mean: lower is steadier)\n")
	}
	return b.String()
}
