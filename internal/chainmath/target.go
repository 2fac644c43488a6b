package chainmath

import (
	"fmt"
	"math"
	"math/big"
	"strconv"
)

// diff1Target is the difficulty-1 target, 0xFFFF·2^208 (nBits 0x1d00ffff).
var diff1Target = new(big.Int).Lsh(big.NewInt(0xFFFF), 208)

var maxTarget = new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 256), big.NewInt(1))

// Diff1Target returns a copy of the difficulty-1 target.
func Diff1Target() *big.Int { return new(big.Int).Set(diff1Target) }

// CompactToBig expands compact nBits into a target. It fails on a negative
// (sign bit set, non-zero mantissa) or an overflowing value.
func CompactToBig(bits uint32) (*big.Int, error) {
	mant := bits & 0x007fffff
	exp := bits >> 24
	if bits&0x00800000 != 0 && mant != 0 {
		return nil, fmt.Errorf("nbits %08x: negative target (sign bit set)", bits)
	}
	t := new(big.Int)
	if exp <= 3 {
		t.SetUint64(uint64(mant >> (8 * (3 - exp))))
		return t, nil
	}
	t.SetUint64(uint64(mant))
	t.Lsh(t, uint(8*(exp-3)))
	if t.BitLen() > 256 {
		return nil, fmt.Errorf("nbits %08x: target overflows 256 bits", bits)
	}
	return t, nil
}

// BigToCompact encodes a target as nBits, rounding down to 24 bits of
// mantissa exactly like Bitcoin Core's GetCompact.
func BigToCompact(t *big.Int) uint32 {
	if t.Sign() <= 0 {
		return 0
	}
	size := uint32((t.BitLen() + 7) / 8)
	var mant uint32
	if size <= 3 {
		mant = uint32(t.Uint64()) << (8 * (3 - size))
	} else {
		mant = uint32(new(big.Int).Rsh(t, uint(8*(size-3))).Uint64())
	}
	if mant&0x00800000 != 0 {
		mant >>= 8
		size++
	}
	return size<<24 | mant
}

// DifficultyToTarget returns T1/d, the target a hash must not exceed to
// have difficulty d. Fractional difficulties (0.0001) are exact to 256 bits
// of precision; the result is capped at 2^256-1.
func DifficultyToTarget(d float64) (*big.Int, error) {
	if !(d > 0) || math.IsInf(d, 0) {
		return nil, fmt.Errorf("difficulty %v: must be a positive finite number", d)
	}
	// The shortest decimal that round-trips d is what the user typed
	// (0.0001, not 0.000100000000000000004792...), so divide by it exactly.
	r, ok := new(big.Rat).SetString(strconv.FormatFloat(d, 'g', -1, 64))
	if !ok {
		return nil, fmt.Errorf("difficulty %v: cannot be represented", d)
	}
	t := new(big.Int).Mul(diff1Target, r.Denom())
	t.Quo(t, r.Num())
	if t.Cmp(maxTarget) > 0 {
		t.Set(maxTarget)
	}
	if t.Sign() == 0 {
		t.SetInt64(1)
	}
	return t, nil
}

// TargetToDifficulty returns T1/t as a float.
func TargetToDifficulty(t *big.Int) float64 {
	if t.Sign() <= 0 {
		return math.Inf(1)
	}
	q := new(big.Float).SetPrec(256).SetInt(diff1Target)
	q.Quo(q, new(big.Float).SetPrec(256).SetInt(t))
	f, _ := q.Float64()
	return f
}

// CompactToDifficulty returns the difficulty of nBits.
func CompactToDifficulty(bits uint32) (float64, error) {
	t, err := CompactToBig(bits)
	if err != nil {
		return 0, err
	}
	return TargetToDifficulty(t), nil
}

// HashToBig reads a hash as the little-endian 256-bit integer that is
// compared against a target.
func HashToBig(h Hash) *big.Int {
	var r [32]byte
	for i := range h {
		r[i] = h[31-i]
	}
	return new(big.Int).SetBytes(r[:])
}

// diff1Float is T1 as a float64 (exact: 0xFFFF·2^208).
var diff1Float = math.Ldexp(0xFFFF, 208)

// HashDifficulty returns the difficulty a hash achieves, T1/hash, in
// float64 precision. It does not allocate: the coordinator calls it for
// every accepted share.
func HashDifficulty(h Hash) float64 {
	var v float64
	for i := 31; i >= 0; i-- {
		v = v*256 + float64(h[i])
	}
	if v == 0 {
		return math.Inf(1)
	}
	return diff1Float / v
}

// Target is a 256-bit target stored as little-endian bytes, the layout of
// a hash, so that a hash can be compared without allocating.
type Target [32]byte

// TargetFromBig converts t (0 ≤ t < 2^256) to a Target.
func TargetFromBig(t *big.Int) Target {
	var out Target
	b := t.Bytes()
	if len(b) > 32 {
		b = b[len(b)-32:]
	}
	for i := range b {
		out[i] = b[len(b)-1-i]
	}
	return out
}

// Big returns the target as a big.Int.
func (t *Target) Big() *big.Int {
	return HashToBig(Hash(*t))
}

// Meets reports whether hash h, read as a little-endian integer, is at or
// below the target.
func (t *Target) Meets(h *Hash) bool {
	for i := 31; i >= 0; i-- {
		if h[i] != t[i] {
			return h[i] < t[i]
		}
	}
	return true
}

// TargetForDifficulty is DifficultyToTarget as a Target.
func TargetForDifficulty(d float64) (Target, error) {
	b, err := DifficultyToTarget(d)
	if err != nil {
		return Target{}, err
	}
	return TargetFromBig(b), nil
}
