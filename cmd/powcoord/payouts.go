package main

import (
	"context"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/powcoord/powcoord/internal/payout"
)

const payoutsUsage = `Usage:
  powcoord payouts verify FILE   recompute a block's PPLNS outputs from its window download
                                 (GET /api/blocks/{hash}/shares; FILE "-" reads stdin)
`

// runPayouts is `powcoord payouts verify FILE`: it recomputes the block's
// coinbase outputs from a window download (payout.Verify) and says
// whether they are what the block paid, to the satoshi; a difference is
// an error naming each one.
func runPayouts(_ context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "verify" {
		fmt.Fprint(stderr, payoutsUsage)
		if len(args) == 0 {
			return fmt.Errorf("payouts: missing subcommand verify")
		}
		if args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
			return flag.ErrHelp
		}
		return fmt.Errorf("payouts: unknown subcommand %q: want verify", args[0])
	}
	fs := flag.NewFlagSet("payouts verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, payoutsUsage) }
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return fmt.Errorf("payouts verify: want one FILE (or - for stdin), have %d arguments", fs.NArg())
	}
	name := fs.Arg(0)
	var in io.Reader = os.Stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return fmt.Errorf("payouts verify: %w", err)
		}
		defer f.Close()
		in = f
	}
	v, err := payout.Verify(in)
	if err != nil {
		return fmt.Errorf("payouts verify %s: %w", name, err)
	}
	fmt.Fprintf(stdout, "block %d %s: %d outputs recomputed from %d shares (%d skipped) match what it paid, to the satoshi\n",
		v.Height, v.Hash, len(v.Outputs), v.Shares, v.Skipped)
	for i, o := range v.Outputs {
		what := "miner"
		if o.Fee {
			what = "pool fee"
		}
		fmt.Fprintf(stdout, "  output %d: %d sat to %s (%s)\n", i, o.Value, hex.EncodeToString(o.Script), what)
	}
	return nil
}
