package simchain

import (
	"math/big"
)

// The difficulty adjustment is aserti3-2d, the absolutely scheduled
// exponentially rising targets algorithm with integer arithmetic, cubic
// 2^x approximation and 16 fractional bits, as activated on Bitcoin Cash in
// November 2020. It needs only the anchor block (here: genesis) and the
// block the new one builds on:
//
//	timeDiff   = time(parent) − time(anchor's parent)
//	heightDiff = height(parent) − height(anchor)
//	exponent   = (timeDiff − spacing·(heightDiff+1)) · 65536 / halfLife
//	             (integer division truncating toward zero)
//	shifts     = exponent >> 16 (arithmetic shift: floor)
//	frac       = exponent mod 65536 (the low 16 bits, 0..65535)
//	factor     = 65536 + (195766423245049·frac + 971821376·frac²
//	                      + 5127·frac³ + 2^47) >> 48
//	target     = anchorTarget · factor · 2^(shifts−16)
//	             (a right shift when the power is negative, discarding bits)
//	target     = 1 if it came out 0; powLimit if above powLimit
//
// factor/65536 approximates 2^(frac/65536) to within 0.013%. The target
// therefore doubles (difficulty halves) for every halfLife the chain is
// behind its ideal schedule of one block per spacing since the anchor, and
// halves for every halfLife it is ahead. Because the schedule is absolute,
// rounding errors do not accumulate from block to block.
//
// The genesis block has no parent, so the chain uses genesis.Time − spacing
// as the "anchor's parent" time: a block found exactly on schedule keeps the
// genesis target.

// ASERT coefficients of the cubic approximation of 2^x on [0, 1), scaled by
// 2^48 (from the aserti3-2d specification).
const (
	asertC1 = 195766423245049
	asertC2 = 971821376
	asertC3 = 5127
)

// asertTarget returns the aserti3-2d target for the block after a parent
// that is heightDiff blocks and timeDiff seconds past the anchor's parent
// (see the comment above). spacing and halfLife are in seconds and
// positive; the caller keeps timeDiff and heightDiff small enough that
// (timeDiff − spacing·(heightDiff+1))·65536 fits in an int64.
func asertTarget(anchorTarget, powLimit *big.Int, spacing, halfLife, timeDiff, heightDiff int64) *big.Int {
	exponent := (timeDiff - spacing*(heightDiff+1)) * 65536 / halfLife
	shifts := exponent >> 16
	frac := uint64(uint16(exponent))
	factor := 65536 + ((asertC1*frac + asertC2*frac*frac + asertC3*frac*frac*frac + 1<<47) >> 48)
	next := new(big.Int).Mul(anchorTarget, new(big.Int).SetUint64(factor))
	shifts -= 16
	switch {
	case shifts <= -512:
		next.SetInt64(0)
	case shifts <= 0:
		next.Rsh(next, uint(-shifts))
	case shifts >= 512:
		next.Set(powLimit)
	default:
		next.Lsh(next, uint(shifts))
	}
	if next.Sign() == 0 {
		next.SetInt64(1)
	}
	if next.Cmp(powLimit) > 0 {
		next.Set(powLimit)
	}
	return next
}
