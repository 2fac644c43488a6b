package main

import (
	"flag"
	"io"
	"strings"
	"testing"

	"github.com/powcoord/powcoord/internal/node"
	"github.com/powcoord/powcoord/internal/node/nodetest"
)

func parseNodeFlags(t *testing.T, args ...string) *nodeFlags {
	t.Helper()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	f := addNodeFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("parse %q: %v", args, err)
	}
	return f
}

func TestNodeFlagsErrors(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--node", "127.0.0.1:1", "--network", "moonnet"}, `--network: network "moonnet": unknown`},
		{[]string{"--node", "127.0.0.1:1", "--network", "regtest", "--payout-address", "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2"}, `--payout-address: address "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2": not a valid regtest address`},
		{[]string{"--node", "127.0.0.1:1", "--payout-address", "tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7"}, "another network than mainnet"},
		{[]string{"--payout-address", "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2"}, "--payout-address given without --node"},
		{[]string{"--node", "127.0.0.1:1", "--node-cookie", "c", "--node-user", "u"}, "one or the other"},
	}
	for _, c := range cases {
		f := parseNodeFlags(t, c.args...)
		src, err := f.source(t.Context(), nil, nil)
		if err == nil || !strings.Contains(err.Error(), c.want) || src != nil {
			t.Errorf("%q: %v, want an error containing %q", c.args, err, c.want)
		}
	}
	if src, err := parseNodeFlags(t).source(t.Context(), nil, nil); src != nil || err != nil {
		t.Fatalf("no --node: %v %v, want nil, nil (embedded chain)", src, err)
	}
}

func TestNodeFlagsOnBtcd(t *testing.T) {
	b := nodetest.StartBtcd(t, "regtest")
	f := parseNodeFlags(t, "--node", "127.0.0.1:1", "--node", b.URL, "--node-user", b.User, "--node-pass", b.Pass,
		"--network", "regtest", "--payout-address", "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080")
	src, err := f.source(t.Context(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.(*node.Source).Close()
	if st := src.Status(); st.Kind != "node" || !st.Healthy || st.Network != "regtest" || st.TipHeight != 0 {
		t.Fatalf("status %+v", st)
	}
	script, err := src.PayoutScript("someone")
	if err != nil || len(script) != 22 || script[0] != 0 || script[1] != 20 {
		t.Fatalf("payout script %x %v, want the P2WPKH of --payout-address", script, err)
	}
}
