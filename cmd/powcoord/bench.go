package main

import (
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/hasher"
)

// benchResult is one kernel at one thread count: the median of the runs.
type benchResult struct {
	Kernel  string  `json:"kernel"`
	Threads int     `json:"threads"`
	MHs     float64 `json:"mhs"`     // per second of wall-clock time
	MHsCPU  float64 `json:"mhs_cpu"` // per second of CPU time each thread got, summed; 0 where unknown
}

// rate is what the ratios and the pick use: per CPU second if known.
func (r benchResult) rate() float64 {
	if r.MHsCPU > 0 {
		return r.MHsCPU
	}
	return r.MHs
}

// benchReport is what `bench --json` prints.
type benchReport struct {
	Default string        `json:"default"` // the fastest kernel measured (with every kernel measured, what the agent's --kernel auto picks)
	Why     string        `json:"why"`     // why: its rate against the next fastest
	Results []benchResult `json:"results"`
}

const benchUsage = `Usage: powcoord bench [flags]

Measures every hashing kernel this CPU supports (sha256d nonces per second)
at each thread count, and prints the median of several runs. The runs of
all kernels are interleaved, so background load affects them alike. It
ends with the fastest kernel at the first thread count and why; the agent's
--kernel auto (its default) picks by the same measurement, shorter, at start.

Examples:
  powcoord bench
  powcoord bench --kernel avx512 --threads 1,2,4 --runs 5
  powcoord bench --json --duration 1s

Flags:
`

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := addConfigFlag(fs)
	fs.Usage = func() {
		fmt.Fprint(stderr, benchUsage)
		fs.PrintDefaults()
	}
	asJSON := fs.Bool("json", false, `print one JSON object {"default": kernel, "why": reason, "results": [{"kernel", "threads", "mhs", "mhs_cpu"}, ...]} instead of a table`)
	duration := fs.Duration("duration", 2*time.Second, "length of one measurement (one kernel, one thread count, one run)")
	runs := fs.Int("runs", 3, "measurements per kernel and thread count; the median is reported")
	threads := fs.String("threads", "1,2", "comma-separated thread counts to measure, each ≥ 1")
	kernel := fs.String("kernel", "", "measure only this kernel (and stdlib, the baseline); default: every available kernel ("+strings.Join(hasher.Names(), ", ")+")")
	if err := parseArgs(fs, args, configPath); err != nil {
		return err
	}
	if *duration <= 0 {
		return fmt.Errorf("bench: --duration %v: must be positive", *duration)
	}
	if *runs < 1 {
		return fmt.Errorf("bench: --runs %d: must be at least 1", *runs)
	}
	tcounts, err := parseThreads(*threads)
	if err != nil {
		return err
	}
	kernels := hasher.Available()
	if *kernel != "" {
		k, err := hasher.ByName(*kernel)
		if err != nil {
			return fmt.Errorf("bench: --kernel: %w", err)
		}
		kernels = []hasher.Kernel{kernels[0]}
		if k.Name() != kernels[0].Name() {
			kernels = append(kernels, k)
		}
	}

	samples := make([][][]hasher.Rate, len(kernels)) // [kernel][thread count][run]
	for i := range samples {
		samples[i] = make([][]hasher.Rate, len(tcounts))
	}
	job := benchJob()
	for r := 0; r < *runs; r++ {
		for ki, k := range kernels {
			for ti, t := range tcounts {
				mhs, err := hasher.Measure(ctx, k, job, t, *duration)
				if err != nil {
					return fmt.Errorf("bench: %w", err)
				}
				samples[ki][ti] = append(samples[ki][ti], mhs)
				if !*asJSON {
					fmt.Fprintf(stderr, "run %d/%d  %-9s %d thread(s)  %8.2f MH/s  %8.2f MH/s per CPU second\n", r+1, *runs, k.Name(), t, mhs.Wall, mhs.CPU)
				}
			}
		}
	}
	var rep benchReport
	var ranked []hasher.Rated
	for ki, k := range kernels {
		for ti, t := range tcounts {
			var wall, cpu []float64
			for _, s := range samples[ki][ti] {
				wall, cpu = append(wall, s.Wall), append(cpu, s.CPU)
			}
			rep.Results = append(rep.Results, benchResult{Kernel: k.Name(), Threads: t, MHs: hasher.Median(wall), MHsCPU: hasher.Median(cpu)})
		}
		ranked = append(ranked, hasher.Rated{Kernel: k, MHs: rep.Results[len(rep.Results)-len(tcounts)].rate()})
	}
	slices.SortStableFunc(ranked, func(a, b hasher.Rated) int { return cmp.Compare(b.MHs, a.MHs) })
	rep.Default, rep.Why = ranked[0].Kernel.Name(), hasher.Why(ranked)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		return enc.Encode(rep)
	}
	return printBenchTable(stdout, rep, *runs, *duration, *kernel == "")
}

// printBenchTable prints rep; all says every available kernel was
// measured, so that the pick is the agent's too.
func printBenchTable(w io.Writer, rep benchReport, runs int, d time.Duration, all bool) error {
	base := map[int]float64{}
	one := map[string]float64{}
	for _, r := range rep.Results {
		if r.Kernel == "stdlib" {
			base[r.Threads] = r.rate()
		}
		if r.Threads == 1 {
			one[r.Kernel] = r.rate()
		}
	}
	fmt.Fprintf(w, "median of %d runs of %v; MH/s per CPU second is the rate with a core to each thread (the ratios use it)\n", runs, d)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "kernel\tthreads\tMH/s\tMH/s per CPU s\t× stdlib\t× 1 thread\t")
	for _, r := range rep.Results {
		vs, scale, cpu := "-", "-", "-"
		if b := base[r.Threads]; b > 0 {
			vs = fmt.Sprintf("%.2f", r.rate()/b)
		}
		if o := one[r.Kernel]; o > 0 {
			scale = fmt.Sprintf("%.2f", r.rate()/o)
		}
		if r.MHsCPU > 0 {
			cpu = fmt.Sprintf("%.2f", r.MHsCPU)
		}
		fmt.Fprintf(tw, "%s\t%d\t%.2f\t%s\t%s\t%s\t\n", r.Kernel, r.Threads, r.MHs, cpu, vs, scale)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if !all {
		_, err := fmt.Fprintf(w, "fastest kernel measured: %s; %s\n", rep.Default, rep.Why)
		return err
	}
	_, err := fmt.Fprintf(w, "fastest kernel here: %s (agent --kernel auto picks it); %s\n", rep.Default, rep.Why)
	return err
}

// parseThreads parses "1,2,4".
func parseThreads(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 1024 {
			return nil, fmt.Errorf("bench: --threads %q: %q is not a thread count from 1 to 1024", s, f)
		}
		out = append(out, n)
	}
	return out, nil
}

// benchJob is a random header at difficulty 1: like real work, almost no
// nonce is a candidate.
func benchJob() *hasher.Job {
	var hdr [chainmath.HeaderSize]byte
	r := rand.New(rand.NewPCG(1, 2))
	for i := range hdr {
		hdr[i] = byte(r.Uint32())
	}
	return hasher.NewJob(&hdr, chainmath.TargetFromBig(chainmath.Diff1Target()))
}
