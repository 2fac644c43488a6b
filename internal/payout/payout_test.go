package payout

import (
	"errors"
	"fmt"
	"math/big"
	"strings"
	"testing"

	"github.com/powcoord/powcoord/internal/chainmath"
)

func u(n int64) *big.Int { return big.NewInt(n) }

func w(script string, n int64) Work { return Work{Script: []byte(script), Units: u(n)} }

func sybils(n int) []Work {
	var ws []Work
	for i := range n {
		ws = append(ws, w(fmt.Sprintf("s%02d", i), 1))
	}
	return ws
}

type out struct {
	script string
	value  int64
}

func TestSplit(t *testing.T) {
	cases := []struct {
		name string
		work []Work
		p    Params
		want []out
	}{
		{"proportional", []Work{w("a", 1), w("b", 2), w("c", 3)}, Params{Value: 600, MaxOutputs: 10},
			[]out{{"c", 300}, {"b", 200}, {"a", 100}}},
		{"equal work: the left-over satoshi to the first script", []Work{w("c", 1), w("b", 1), w("a", 1)}, Params{Value: 100, MaxOutputs: 10},
			[]out{{"a", 34}, {"b", 33}, {"c", 33}}},
		{"largest remainders", []Work{w("a", 7), w("b", 2), w("c", 1)}, Params{Value: 7, MaxOutputs: 10},
			// 4.9, 1.4, 0.7: floors 4,1,0; remainders 9,4,7 (tenths): a and c get one each
			[]out{{"a", 5}, {"b", 1}, {"c", 1}}},
		{"one percent fee of 50 BTC", []Work{w("a", 2), w("b", 1)}, Params{Value: 5_000_000_000, FeeBasisPoints: 100, FeeScript: []byte("pool"), Dust: 546, MaxOutputs: 10},
			[]out{{"a", 3_300_000_000}, {"b", 1_650_000_000}, {"pool", 50_000_000}}},
		{"fee rounds down", []Work{w("a", 1), w("b", 2)}, Params{Value: 999, FeeBasisPoints: 100, FeeScript: []byte("pool"), MaxOutputs: 10},
			[]out{{"b", 660}, {"a", 330}, {"pool", 9}}},
		{"fee below dust stays with the miners", []Work{w("a", 1)}, Params{Value: 10_000, FeeBasisPoints: 100, FeeScript: []byte("pool"), Dust: 546, MaxOutputs: 10},
			[]out{{"a", 10_000}}},
		{"no fee script: no fee", []Work{w("a", 1)}, Params{Value: 10_000, FeeBasisPoints: 100, MaxOutputs: 10},
			[]out{{"a", 10_000}}},
		{"dust dropped one at a time, least work first", []Work{w("a", 100), w("b", 1), w("c", 1)}, Params{Value: 10_000, Dust: 546, MaxOutputs: 10},
			// 9803/98/98, then 9900/99+1: both below dust in turn
			[]out{{"a", 10_000}}},
		{"dust: the rest re-split", []Work{w("a", 50), w("b", 40), w("c", 1)}, Params{Value: 10_000, Dust: 546, MaxOutputs: 10},
			// with c: 5494/4395/109 → c dropped; 10000·50/90 = 5555.5, 4444.4
			[]out{{"a", 5556}, {"b", 4444}}},
		{"output cap with fee", []Work{w("d", 1), w("c", 2), w("b", 3), w("a", 4)}, Params{Value: 7000, FeeBasisPoints: 100, FeeScript: []byte("pool"), MaxOutputs: 3},
			// fee 70, reward 6930 over a and b (4:3)
			[]out{{"a", 3960}, {"b", 2970}, {"pool", 70}}},
		{"one output: the miner, no fee", []Work{w("b", 1), w("a", 2)}, Params{Value: 1000, FeeBasisPoints: 100, FeeScript: []byte("pool"), MaxOutputs: 1},
			[]out{{"a", 1000}}},
		{"a single miner below dust is still paid", []Work{w("a", 1)}, Params{Value: 100, Dust: 546, MaxOutputs: 5},
			[]out{{"a", 100}}},
		{"zero work ignored", []Work{w("a", 0), w("b", 5)}, Params{Value: 100, MaxOutputs: 5},
			[]out{{"b", 100}}},
		{"sybil addresses cannot crowd out the miners with work", append([]Work{w("big1", 1000), w("big2", 900)}, sybils(10)...),
			Params{Value: 100_000, Dust: 546, MaxOutputs: 3},
			// the cap keeps big1, big2 and one sybil (52 sat: dust, dropped)
			[]out{{"big1", 52_632}, {"big2", 47_368}}},
		{"zero amounts never made", []Work{w("a", 1000), w("b", 1)}, Params{Value: 10, MaxOutputs: 5},
			// b's 0.0099 would round to 0
			[]out{{"a", 10}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Split(c.work, c.p)
			if err != nil {
				t.Fatal(err)
			}
			var sum int64
			for _, o := range got {
				sum += o.Value
			}
			if sum != c.p.Value {
				t.Errorf("outputs sum to %d, want the coinbase value %d", sum, c.p.Value)
			}
			if len(got) != len(c.want) {
				t.Fatalf("got %d outputs %+v, want %v", len(got), got, c.want)
			}
			for i, o := range got {
				if string(o.Script) != c.want[i].script || o.Value != c.want[i].value {
					t.Errorf("output %d: %s %d, want %s %d", i, o.Script, o.Value, c.want[i].script, c.want[i].value)
				}
				if o.Fee != (string(o.Script) == "pool") {
					t.Errorf("output %d: fee flag %v", i, o.Fee)
				}
			}
		})
	}
}

func TestSplitErrors(t *testing.T) {
	ok := Params{Value: 100, MaxOutputs: 2}
	if _, err := Split(nil, ok); !errors.Is(err, ErrNoWork) {
		t.Errorf("no work: %v", err)
	}
	if _, err := Split([]Work{w("a", 0)}, ok); !errors.Is(err, ErrNoWork) {
		t.Errorf("zero work: %v", err)
	}
	for _, c := range []struct {
		work []Work
		p    Params
		want string
	}{
		{[]Work{w("a", 1)}, Params{Value: -1, MaxOutputs: 1}, "coinbase value -1"},
		{[]Work{w("a", 1)}, Params{Value: 1, MaxOutputs: 0}, "at most 0 outputs"},
		{[]Work{w("a", 1)}, Params{Value: 1, MaxOutputs: 1, FeeBasisPoints: 10001}, "fee 10001 basis points"},
		{[]Work{w("a", 1), w("a", 1)}, ok, "listed twice"},
		{[]Work{w("a", -1)}, ok, "work -1"},
	} {
		if _, err := Split(c.work, c.p); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: err %v, want %q", c.p, err, c.want)
		}
	}
}

func TestUnits(t *testing.T) {
	one := new(big.Int).Lsh(u(1), 64)
	for _, c := range []struct {
		d    float64
		want string
	}{
		{1, one.String()},
		{0.5, new(big.Int).Lsh(u(1), 63).String()},
		{1e-9, "18446744074"},        // 18446744073.709551616 rounded
		{0.001, "18446744073709552"}, // round(0.001·2^64)
		{1e15, "18446744073709551616000000000000000"},
	} {
		got, err := ShareUnits(c.d)
		if err != nil || got.String() != c.want {
			t.Errorf("ShareUnits(%v) = %v, %v; want %s", c.d, got, err, c.want)
		}
	}
	for _, d := range []float64{0, -1} {
		if _, err := ShareUnits(d); err == nil {
			t.Errorf("ShareUnits(%v): no error", d)
		}
	}
	regtest, _ := chainmath.CompactToBig(0x207fffff)
	if got, _ := WindowUnits(8, regtest); got.String() != "68718436351" {
		t.Errorf("8 regtest blocks = %v units, want 68718436351", got)
	}
	diff1T, _ := chainmath.CompactToBig(0x1d00ffff)
	if got, _ := WindowUnits(1, diff1T); got.Cmp(one) != 0 {
		t.Errorf("one difficulty-1 block = %v units, want 2^64", got)
	}
	if got, _ := WindowUnits(0.5, diff1T); got.Cmp(new(big.Int).Lsh(u(1), 63)) != 0 {
		t.Errorf("half a difficulty-1 block = %v units, want 2^63", got)
	}
	if _, err := WindowUnits(0, diff1T); err == nil {
		t.Error("a window of 0 blocks: no error")
	}
}

func TestWindow(t *testing.T) {
	one := new(big.Int).Lsh(u(1), 64)
	size := new(big.Int).Add(new(big.Int).Mul(one, u(2)), new(big.Int).Rsh(one, 1)) // 2.5 difficulty
	win := NewWindow(size)
	for i, s := range []struct {
		script string
		d      float64
		more   bool
	}{{"a", 1, true}, {"b", 1, true}, {"a", 1, false}, {"b", 5, false}} {
		more, err := win.Add([]byte(s.script), s.d)
		if err != nil || more != s.more {
			t.Fatalf("share %d: more %v err %v, want more %v", i, more, err, s.more)
		}
	}
	if !win.Full() || win.Total().Cmp(size) != 0 {
		t.Fatalf("window full %v, total %v, want %v", win.Full(), win.Total(), size)
	}
	got := win.Work()
	// a: 1 + the half of its second share that fitted; b: 1 (its 5 came after the window filled)
	wantA := new(big.Int).Add(one, new(big.Int).Rsh(one, 1))
	if len(got) != 2 || string(got[0].Script) != "a" || got[0].Units.Cmp(wantA) != 0 || string(got[1].Script) != "b" || got[1].Units.Cmp(one) != 0 {
		t.Fatalf("window work %v", got)
	}
}

func TestParseFee(t *testing.T) {
	for in, want := range map[string]int64{"1%": 100, "0.25%": 25, "0": 0, "2.5": 250, ".5%": 50, "100%": 10000} {
		if got, err := ParseFee(in); err != nil || got != want {
			t.Errorf("ParseFee(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"1.234%", "-1%", "abc", "101%", "", "%", "+1"} {
		if _, err := ParseFee(in); err == nil || !strings.Contains(err.Error(), "pool fee") {
			t.Errorf("ParseFee(%q): err %v", in, err)
		}
	}
}

func TestFitOutputs(t *testing.T) {
	if got := FitOutputs(1000, 0, 800); got != 1000 {
		t.Errorf("empty block: %d", got)
	}
	// Bitcoin Core's default template leaves 8,000 weight (-blockreservedweight)
	// for header and coinbase: 8000-332-800-8 = 6860 → 39 outputs of 172.
	if got := FitOutputs(1000, MaxBlockWeight-8000, 800); got != 39 {
		t.Errorf("full Core template: %d, want 39", got)
	}
	if got := FitOutputs(1000, MaxBlockWeight, 800); got != 0 {
		t.Errorf("over-full block: %d", got)
	}
}
