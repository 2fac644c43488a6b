package main

import "fmt"

// The SHA-NI kernel behind the "sha-ni-x4" name (and its six-lane variant,
// which measures no faster: four chains already keep SHA256RNDS2 busy).
// Like shani4 it keeps four nonces' SHA256RNDS2 chains in flight, so that
// SHA256RNDS2's throughput (one per two cycles on AMD Zen), not its
// latency, is the limit; it does fewer of them and spends fewer
// instructions around them (see docs/hashing.md):
//
//   - the first hash's round 3 is two additions (a = pA+W3, e = pE+W3;
//     consts.abef4), so SHA256RNDS2 starts at round 4: 61 of them per
//     nonce instead of 62;
//   - the message groups that are the same for every nonce (the first
//     hash's W4..W15, the second's W8..W15) are written to the stack once
//     per call, not once per nonce, and read from there by SHA256MSG1 and
//     PALIGNR as memory operands (the stack area is 16-byte aligned for
//     that); their W+K upper halves are loaded, not shuffled;
//   - the previous message group is read back from its slot rather than
//     kept in a register, which leaves the XMM registers to the lanes;
//   - W+K is one VEX addition with a memory operand.
//
// It needs AVX (VEX encodings) besides SHA-NI and SSE4.1.

// fxMaxLanes is as many lanes as fit the 16 XMM registers that the SSE-only
// SHA instructions can name: two state registers a lane, X0, X13..X15.
const fxMaxLanes = 6

type shaniX4 struct{ *shani }

// ring is message group g of lane l of hash h (1 or 2): the stack holds
// one 16-group area per hash and lane, from R10 (16-byte aligned).
func (s *shaniX4) ring(h, l, g int) string {
	return fmt.Sprintf("%d(R10)", (h-1)*16*16*s.n+(l*16+g)*16)
}

// sched computes group q of lane l of hash h into X13 (and its ring slot
// while later groups read it), then does rounds 4q..4q+3 (only the first
// pair when half).
func (s *shaniX4) sched(h, l, q int, half bool) {
	s.p("\tMOVOU %s, X13", s.ring(h, l, q-4))
	s.p("\tSHA256MSG1 %s, X13", s.ring(h, l, q-3))
	s.p("\tMOVOU %s, X15", s.ring(h, l, q-1))
	s.p("\tVPALIGNR $4, %s, X15, X14", s.ring(h, l, q-2))
	s.p("\tPADDD X14, X13")
	s.p("\tSHA256MSG2 X15, X13")
	if q < 15 {
		s.p("\tMOVOU X13, %s", s.ring(h, l, q))
	}
	s.p("\tVPADDD shaniData<>+%d(SB), X13, X0", sdK+16*q)
	s.quad(l, half)
}

// constQuad does rounds 4g..4g+3 with a constant W+K at data offset off.
func (s *shaniX4) constQuad(l, off int) {
	s.p("\tMOVOU shaniData<>+%d(SB), X0", off)
	s.rnds2(l)
	s.p("\tMOVQ shaniData<>+%d(SB), X0", off+8)
	s.rnds2(l)
}

func (s *shaniX4) body() {
	s.p("\t// first hash, second block: rounds 0..3 from the job and W3")
	for l := 0; l < s.n; l++ {
		s.p("\t// lane %d", l)
		s.p("\tMOVL DX, AX")
		if l > 0 {
			s.p("\tADDL $%d, AX", l)
		}
		s.p("\tBSWAPL AX")
		s.p("\tMOVOU %d(DI), X14", offM0)
		s.p("\tPINSRD $3, AX, X14")
		s.p("\tMOVOU X14, %s", s.ring(1, l, 0))
		s.p("\tMOVQ AX, X14")
		s.p("\tPSHUFD $0x11, X14, X14")
		s.p("\tVPADDD %d(DI), X14, %s", offABEF4, s.abef[l])
		s.p("\tMOVOU %d(DI), %s", offCDGH4, s.cdgh[l])
		for g := 1; g < 4; g++ {
			s.constQuad(l, sdKW1+16*(g-1))
		}
	}
	for q := 4; q < 16; q++ {
		s.p("\t// rounds %d..%d", 4*q, 4*q+3)
		for l := 0; l < s.n; l++ {
			s.sched(1, l, q, false)
		}
	}
	s.p("\t// feed-forward; the first hash becomes the second's W0..W7")
	for l := 0; l < s.n; l++ {
		s.p("\t// lane %d", l)
		s.p("\tVPADDD %d(DI), %s, X13", offMidAB, s.abef[l])
		s.p("\tVPADDD %d(DI), %s, X14", offMidCD, s.cdgh[l])
		s.p("\tPSHUFD $0x1b, X13, X15")
		s.p("\tPSHUFD $0x1b, X14, X14")
		s.p("\tVPUNPCKLQDQ X14, X15, X13")
		s.p("\tVPUNPCKHQDQ X14, X15, X15")
		s.p("\tMOVOU X13, %s", s.ring(2, l, 0))
		s.p("\tMOVOU X15, %s", s.ring(2, l, 1))
		s.p("\tMOVOU shaniData<>+%d(SB), %s", sdIVAB, s.abef[l])
		s.p("\tMOVOU shaniData<>+%d(SB), %s", sdIVCD, s.cdgh[l])
		s.p("\tVPADDD shaniData<>+%d(SB), X13, X0", sdK)
		s.quad(l, false)
		s.p("\tVPADDD shaniData<>+%d(SB), X15, X0", sdK+16)
		s.quad(l, false)
		for g := 2; g < 4; g++ {
			s.constQuad(l, sdKW2+16*(g-2))
		}
	}
	for q := 4; q < 16; q++ {
		s.p("\t// rounds %d..%d", 4*q, 4*q+3)
		for l := 0; l < s.n; l++ {
			s.sched(2, l, q, q == 15)
		}
	}
	s.p("\t// the hash's last word: S62.f = S64.h, lane 0 of ABEF")
	for l := 0; l < s.n; l++ {
		s.p("\tPEXTRD $0, %s, AX", s.abef[l])
		s.p("\tADDL $0x%08x, AX", iv[7])
		s.p("\tBSWAPL AX")
		s.p("\tMOVL AX, %d(SI)", 4*l)
		s.p("\tCMPL AX, R8\n\tJHI lane%d\n\tMOVL $1, R9\nlane%d:", l, l)
	}
}

func genSHANIX4(e *emitter, name string, lanes int) {
	if lanes > fxMaxLanes {
		panic("too many lanes for the XMM registers")
	}
	s := &shaniX4{newSHANI(e, lanes, true, true)}
	s.p("// func %s(c *consts, nonce uint32, batches uint64, top uint32, h7 *[32]uint32) (done uint64, hit bool)", name)
	s.p("TEXT ·%s(SB), 0, $%d-49", name, 2*16*16*s.n+16)
	s.p("\tMOVQ c+0(FP), DI")
	s.p("\tMOVL nonce+8(FP), DX")
	s.p("\tMOVQ batches+16(FP), BX")
	s.p("\tMOVL top+24(FP), R8")
	s.p("\tMOVQ h7+32(FP), SI")
	s.p("\tLEAQ 15(SP), R10")
	s.p("\tANDQ $~15, R10")
	s.p("\t// the nonce-free message groups, once per call")
	for l := 0; l < s.n; l++ {
		for g := 1; g < 4; g++ {
			s.p("\tMOVOU shaniData<>+%d(SB), X13", sdPad1+16*(g-1))
			s.p("\tMOVOU X13, %s", s.ring(1, l, g))
		}
		for g := 2; g < 4; g++ {
			s.p("\tMOVOU shaniData<>+%d(SB), X13", sdPad2+16*(g-2))
			s.p("\tMOVOU X13, %s", s.ring(2, l, g))
		}
	}
	s.p("\tXORQ CX, CX")
	s.p("\tXORL R9, R9")
	s.p("\tTESTQ BX, BX")
	s.p("\tJZ ret")
	s.p("loop:")
	s.body()
	s.p("\tINCQ CX")
	s.p("\tADDL $%d, DX", s.n)
	s.p("\tTESTL R9, R9")
	s.p("\tJNZ ret")
	s.p("\tDECQ BX")
	s.p("\tJNZ loop")
	s.p("ret:")
	s.p("\tMOVQ CX, done+40(FP)")
	s.p("\tMOVB R9, hit+48(FP)")
	s.p("\tRET")
	s.p("")
}
