package main

import (
	"bytes"
	"flag"
	"io"
	"strings"
	"testing"

	"github.com/powcoord/powcoord/internal/coordinator"
	"github.com/powcoord/powcoord/internal/simchain"
)

// TestPayoutFlags: the payout flags reach the coordinator's config, and
// bad combinations are refused naming the flag and the value.
func TestPayoutFlags(t *testing.T) {
	parse := func(args ...string) (coordinator.Config, error) {
		fs := flag.NewFlagSet("demo", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		var f coordFlags
		f.register(fs, true)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		var cfg coordinator.Config
		return cfg, f.payoutConfig(&cfg, simchain.PayoutScript)
	}
	cfg, err := parse("--payout", "pplns", "--pplns-window", "2.5", "--pool-fee", "0.25%", "--pool-address", "pool",
		"--payout-dust", "1000", "--payout-max-outputs", "10")
	pool, _ := simchain.PayoutScript("pool")
	if err != nil || cfg.Payout != "pplns" || cfg.PPLNSWindow != 2.5 || cfg.PoolFeeBasisPoints != 25 || !bytes.Equal(cfg.PoolScript, pool) ||
		cfg.PayoutDust != 1000 || cfg.MaxPayoutOutputs != 10 {
		t.Fatalf("config %+v, %v", cfg, err)
	}
	if cfg, err := parse(); err != nil || cfg.Payout != "solo" || cfg.PPLNSWindow != 8 || cfg.PayoutDust != 546 || cfg.MaxPayoutOutputs != 39 {
		t.Fatalf("defaults: %+v, %v", cfg, err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--payout", "prop"}, `--payout "prop"`},
		{[]string{"--payout", "pplns", "--pool-fee", "1%"}, "--pool-fee 1% needs --pool-address"},
		{[]string{"--pool-fee", "1%", "--pool-address", "pool"}, "only with --payout pplns"},
		{[]string{"--payout", "pplns", "--pool-fee", "1.234%", "--pool-address", "pool"}, `--pool-fee: pool fee "1.234%"`},
		{[]string{"--payout", "pplns", "--pplns-window", "-1"}, "--pplns-window -1"},
		{[]string{"--payout", "pplns", "--payout-max-outputs", "20001"}, "--payout-max-outputs 20001"},
	} {
		if _, err := parse(c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: err %v, want %q", c.args, err, c.want)
		}
	}
}
