package simchain

import (
	"bufio"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/powcoord/powcoord/internal/chainmath"
)

// Mainnet powLimit, 2^224−1, whose compact form is 0x1d00ffff: the limit the
// published vectors use.
var vectorPowLimit = new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 224), big.NewInt(1))

func TestASERTVectors(t *testing.T) {
	files, err := filepath.Glob("testdata/asert/run*")
	if err != nil || len(files) < 9 {
		t.Fatalf("vector files: %v %v", files, err)
	}
	total := 0
	for _, file := range files {
		f, err := os.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		var (
			anchorHeight, anchorParentTime uint64
			anchorBits                     uint32
			lines                          int
		)
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if v, ok := strings.CutPrefix(line, "##   anchor height: "); ok {
				anchorHeight = mustUint(t, v)
				continue
			}
			if v, ok := strings.CutPrefix(line, "##   anchor ancestor time: "); ok {
				anchorParentTime = mustUint(t, v)
				continue
			}
			if v, ok := strings.CutPrefix(line, "##   anchor nBits: "); ok {
				anchorBits = uint32(mustUint(t, v))
				continue
			}
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			fields := strings.Fields(line)
			if len(fields) != 4 {
				t.Fatalf("%s: bad line %q", file, line)
			}
			height, tm, want := mustUint(t, fields[1]), mustUint(t, fields[2]), uint32(mustUint(t, fields[3]))
			anchorTarget, err := chainmath.CompactToBig(anchorBits)
			if err != nil {
				t.Fatal(err)
			}
			// Heights run past 2^63 in run10; only their difference matters.
			got := asertTarget(anchorTarget, vectorPowLimit, 600, 172800,
				int64(tm-anchorParentTime), int64(height-anchorHeight))
			if bits := chainmath.BigToCompact(got); bits != want {
				t.Errorf("%s: height %d time %d: nBits %08x, want %08x", filepath.Base(file), height, tm, bits, want)
			}
			lines++
		}
		f.Close()
		if lines == 0 {
			t.Fatalf("%s: no vectors", file)
		}
		total += lines
	}
	if total != 278 {
		t.Fatalf("checked %d vectors, want 278 (a file lost lines?)", total)
	}
	t.Logf("%d ASERT vectors from %d files", total, len(files))
}

func mustUint(t *testing.T, s string) uint64 {
	t.Helper()
	v, err := strconv.ParseUint(s, 0, 64)
	if err != nil {
		t.Fatalf("vector value %q: %v", s, err)
	}
	return v
}

// The cubic approximation's polynomial must not overflow 64 bits anywhere
// on its domain (the Go code uses uint64 like the reference).
func TestASERTPolynomialFits(t *testing.T) {
	f := big.NewInt(65535)
	sum := new(big.Int).Mul(big.NewInt(asertC1), f)
	sum.Add(sum, new(big.Int).Mul(big.NewInt(asertC2), new(big.Int).Mul(f, f)))
	sum.Add(sum, new(big.Int).Mul(big.NewInt(asertC3), new(big.Int).Exp(f, big.NewInt(3), nil)))
	sum.Add(sum, new(big.Int).Lsh(big.NewInt(1), 47))
	if sum.BitLen() > 64 {
		t.Fatalf("polynomial needs %d bits", sum.BitLen())
	}
}
