package hasher

import (
	"encoding/binary"
	"math/bits"
)

// iv is SHA-256's initial hash value.
var iv = [8]uint32{
	0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
	0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
}

// k is SHA-256's round constant table.
var k = [64]uint32{
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
	0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
	0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
	0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
	0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
	0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
	0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
	0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
}

func bsig0(x uint32) uint32 {
	return bits.RotateLeft32(x, -2) ^ bits.RotateLeft32(x, -13) ^ bits.RotateLeft32(x, -22)
}
func bsig1(x uint32) uint32 {
	return bits.RotateLeft32(x, -6) ^ bits.RotateLeft32(x, -11) ^ bits.RotateLeft32(x, -25)
}
func ssig0(x uint32) uint32 { return bits.RotateLeft32(x, -7) ^ bits.RotateLeft32(x, -18) ^ x>>3 }
func ssig1(x uint32) uint32 { return bits.RotateLeft32(x, -17) ^ bits.RotateLeft32(x, -19) ^ x>>10 }

// round applies SHA-256 round t with message word w to state s.
func round(s *[8]uint32, t int, w uint32) {
	a, b, c, d, e, f, g, h := s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]
	t1 := h + bsig1(e) + (e&f ^ ^e&g) + k[t] + w
	t2 := bsig0(a) + (a&b ^ a&c ^ b&c)
	*s = [8]uint32{t1 + t2, a, b, c, d + t1, e, f, g}
}

// expand fills w[16:] from w[:16] (the SHA-256 message schedule).
func expand(w *[64]uint32) {
	for t := 16; t < 64; t++ {
		w[t] = ssig1(w[t-2]) + w[t-7] + ssig0(w[t-15]) + w[t-16]
	}
}

// compress runs one SHA-256 compression of block (16 big-endian words) on
// state and returns the new state (feed-forward included).
func compress(state [8]uint32, block *[16]uint32) [8]uint32 {
	var w [64]uint32
	copy(w[:], block[:])
	expand(&w)
	s := state
	for t := 0; t < 64; t++ {
		round(&s, t, w[t])
	}
	for i := range s {
		s[i] += state[i]
	}
	return s
}

// sha256d80 is a plain, unoptimised sha256d of an 80-byte header, written
// out from the specification. Tests use it as a second reference and the
// kernels use it to confirm a candidate nonce; it does not allocate.
func sha256d80(hdr *[80]byte) (out [32]byte) {
	var blk [16]uint32
	for i := range blk {
		blk[i] = binary.BigEndian.Uint32(hdr[4*i:])
	}
	s := compress(iv, &blk)
	for i := 0; i < 4; i++ {
		blk[i] = binary.BigEndian.Uint32(hdr[64+4*i:])
	}
	blk[4] = 0x80000000
	for i := 5; i < 15; i++ {
		blk[i] = 0
	}
	blk[15] = 640
	s = compress(s, &blk)
	copy(blk[:8], s[:])
	blk[8] = 0x80000000
	for i := 9; i < 15; i++ {
		blk[i] = 0
	}
	blk[15] = 256
	s = compress(iv, &blk)
	for i, v := range s {
		binary.BigEndian.PutUint32(out[4*i:], v)
	}
	return out
}
