// Package hasher scans nonce ranges of a Bitcoin block header for double
// SHA-256 hashes that meet a target. Kernels differ only in speed: every
// one returns exactly the nonces the reference (crypto/sha256) finds.
//
// The fast kernels share the usual miner tricks: the first 64 header bytes
// are hashed once per job (the midstate); the rounds of the second block
// that do not depend on the nonce, and the nonce-free parts of its message
// schedule, are computed once per job too; and the second hash stops after
// round 60, when the most significant word of the result (the hash's
// bytes 28..31) is known. Only a nonce whose top word is at or below the
// target's is confirmed with a full hash and compare.
package hasher

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/bits"

	"github.com/powcoord/powcoord/internal/chainmath"
)

// Job is one header to scan: bytes 0..75 fixed, the nonce (76..79) varied.
// Make it with NewJob, which precomputes what the kernels need; changing
// Header or Target afterwards is not seen by them. A Job is read-only once
// made, so several goroutines may scan disjoint nonce ranges of it at once.
type Job struct {
	Header [chainmath.HeaderSize]byte
	Target chainmath.Target

	top  uint32 // target's most significant 32 bits (its bytes 28..31, little-endian)
	c    consts // per-job precomputation for the fast kernels
	midS []byte // crypto/sha256 state after the first 64 bytes (MarshalBinary form)
}

// consts is the per-job precomputation the kernels read. Its layout is
// shared with the generated assembly (see asmgen); TestConstsLayout pins
// the offsets.
type consts struct {
	mid    [8]uint32 // 0: state after the header's first 64 bytes
	s3     [8]uint32 // 32: second block's state after rounds 0..2
	pA, pE uint32    // 64, 68: round 3 gives a = pA+nonce, e = pE+nonce
	w16    uint32    // 72: message word 16 (nonce-free)
	w17    uint32    // 76: message word 17 (nonce-free)
	c18    uint32    // 80: W18 = c18 + σ0(nonce)
	c19    uint32    // 84: W19 = c19 + nonce
	s0w16  uint32    // 88: σ0(W16)
	s0w17  uint32    // 92: σ0(W17)
	abef2  [4]uint32 // 96: SHA-NI state (ABEF) after rounds 0..1
	cdgh2  [4]uint32 // 112: SHA-NI state (CDGH) after rounds 0..1
	midAB  [4]uint32 // 128: midstate as ABEF
	midCD  [4]uint32 // 144: midstate as CDGH
	m0     [4]uint32 // 160: W0, W1, W2, 0
	w      [3]uint32 // 176: W0..W2 (header bytes 64..75 as big-endian words)
	_      uint32
	abef4  [4]uint32 // 192: SHA-NI state (ABEF) after rounds 0..3, less W3 in A and E
	cdgh4  [4]uint32 // 208: SHA-NI state (CDGH) after rounds 0..3
}

// NewJob prepares header (its nonce field is ignored) for scanning against
// target.
func NewJob(header *[chainmath.HeaderSize]byte, target chainmath.Target) *Job {
	j := &Job{Header: *header, Target: target}
	j.top = binary.LittleEndian.Uint32(target[28:])
	c := &j.c
	var blk [16]uint32
	for i := range blk {
		blk[i] = binary.BigEndian.Uint32(header[4*i:])
	}
	c.mid = compress(iv, &blk)
	for i := range c.w {
		c.w[i] = binary.BigEndian.Uint32(header[64+4*i:])
	}
	s := c.mid
	for t := 0; t < 3; t++ {
		if t == 2 {
			c.abef2 = [4]uint32{s[5], s[4], s[1], s[0]}
			c.cdgh2 = [4]uint32{s[7], s[6], s[3], s[2]}
		}
		round(&s, t, c.w[t])
	}
	c.s3 = s
	a, b, cc, d, e, f, g, h := s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]
	t1 := h + bsig1(e) + (e&f ^ ^e&g) + k[3]
	c.pE = d + t1
	c.pA = t1 + bsig0(a) + (a&b ^ a&cc ^ b&cc)
	c.abef4 = [4]uint32{s[4], c.pE, s[0], c.pA}
	c.cdgh4 = [4]uint32{s[6], s[5], s[2], s[1]}
	c.w16 = ssig0(c.w[1]) + c.w[0]
	c.w17 = ssig1(640) + ssig0(c.w[2]) + c.w[1]
	c.c18 = ssig1(c.w16) + c.w[2]
	c.c19 = ssig1(c.w17) + ssig0(0x80000000)
	c.s0w16 = ssig0(c.w16)
	c.s0w17 = ssig0(c.w17)
	m := c.mid
	c.midAB = [4]uint32{m[5], m[4], m[1], m[0]}
	c.midCD = [4]uint32{m[7], m[6], m[3], m[2]}
	c.m0 = [4]uint32{c.w[0], c.w[1], c.w[2], 0}
	j.midS = stdlibMidstate(header)
	return j
}

// Kernel is one implementation of the nonce scan.
type Kernel interface {
	// Name is what `agent --kernel` and `bench` call the kernel.
	Name() string
	// Scan hashes the nonces start, start+1, ..., start+count-1
	// (start+count ≤ 2^32) and writes into out those whose sha256d meets
	// j.Target, in increasing order. It returns how many it found; found
	// nonces beyond len(out) are dropped. It does not allocate.
	Scan(j *Job, start uint32, count uint64, out []uint32) int
}

// clampCount limits count so that start+count ≤ 2^32.
func clampCount(start uint32, count uint64) uint64 {
	return min(count, 1<<32-uint64(start))
}

// confirm decides a candidate nonce whose byte-swapped final word is hi.
// Below the target's top word it meets the target; equal needs the full
// hash.
func (j *Job) confirm(nonce, hi uint32) bool {
	if hi < j.top {
		return true
	}
	if hi > j.top {
		return false
	}
	hdr := j.Header
	binary.LittleEndian.PutUint32(hdr[76:], nonce)
	first := sha256.Sum256(hdr[:])
	h := chainmath.Hash(sha256.Sum256(first[:]))
	return j.Target.Meets(&h)
}

// laneKernel drives a generated multi-lane kernel over a nonce range. The
// kernel (see run) hashes up to batches groups of lanes nonces from nonce
// on, and stops after the first group in which some lane's byte-swapped
// final word is at or below top, leaving every lane's byte-swapped final
// word of that group in h7. It returns how many groups it hashed and
// whether it stopped on a candidate.
type laneKernel struct {
	name  string
	lanes uint64
	id    int // which generated function run calls
}

func (k *laneKernel) Name() string { return k.name }

func (k *laneKernel) Scan(j *Job, start uint32, count uint64, out []uint32) int {
	count = clampCount(start, count)
	var h7 [32]uint32
	n := 0
	nonce, left := start, count
	for left > 0 {
		done, hit := k.run(&j.c, nonce, (left+k.lanes-1)/k.lanes, j.top, &h7)
		if !hit {
			break
		}
		first := (done - 1) * k.lanes
		for l := uint64(0); l < k.lanes && first+l < left; l++ {
			nn := nonce + uint32(first+l)
			if hi := h7[l]; hi <= j.top && j.confirm(nn, hi) {
				if n < len(out) {
					out[n] = nn
				}
				n++
			}
		}
		adv := done * k.lanes
		if adv >= left {
			break
		}
		nonce += uint32(adv)
		left -= adv
	}
	return min(n, len(out))
}

// genericKernel is the portable kernel: generated, unrolled Go.
type genericKernel struct{}

func (genericKernel) Name() string { return "generic" }

func (genericKernel) Scan(j *Job, start uint32, count uint64, out []uint32) int {
	count = clampCount(start, count)
	n := 0
	c := &j.c
	top := j.top
	for i := uint64(0); i < count; i++ {
		nonce := start + uint32(i)
		if hi := bits.ReverseBytes32(genericH7(c, nonce)); hi <= top && j.confirm(nonce, hi) {
			if n < len(out) {
				out[n] = nonce
			}
			n++
		}
	}
	return min(n, len(out))
}

// Available lists the kernels this CPU can run, the reference first and
// the fastest last.
func Available() []Kernel {
	ks := []Kernel{stdlibKernel{}, genericKernel{}}
	return append(ks, archKernels()...)
}

// Default returns the kernel that usually ranks fastest on a CPU with
// this one's features, without measuring; Fastest measures.
func Default() Kernel {
	k := Available()
	return k[len(k)-1]
}

// Names lists the names of every kernel this package knows, available on
// this CPU or not.
func Names() []string {
	return []string{"stdlib", "generic", "avx2", "avx512", "sha-ni", "sha-ni-x4"}
}

// ByName returns the available kernel called name.
func ByName(name string) (Kernel, error) {
	var names []string
	for _, k := range Available() {
		if k.Name() == name {
			return k, nil
		}
		names = append(names, k.Name())
	}
	for _, n := range Names() {
		if n == name {
			return nil, fmt.Errorf("kernel %q: not supported by this CPU (available: %v)", name, names)
		}
	}
	return nil, fmt.Errorf("kernel %q: unknown (known: %v; available here: %v)", name, Names(), names)
}
