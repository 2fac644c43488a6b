package main

import "fmt"

// The SHA-NI kernels: N nonces in flight, each with its state in two XMM
// registers (ABEF, CDGH) and its message schedule in a 4-group ring on
// the stack, so that N ≤ 4 chains of SHA256RNDS2 overlap.

// shaniData layout (offsets into shaniData<>).
const (
	sdK     = 0   // K[0..63]
	sdKW1   = 256 // hash 1 rounds 4..15: W+K (3 groups)
	sdKW2   = 304 // hash 2 rounds 8..15: W+K (2 groups)
	sdPad1  = 336 // hash 1 W4..W15 (3 groups)
	sdPad2  = 384 // hash 2 W8..W15 (2 groups)
	sdIVAB  = 416 // IV as ABEF
	sdIVCD  = 432 // IV as CDGH
	sdTotal = 448
)

func shaniDataWords() []uint32 {
	d := make([]uint32, sdTotal/4)
	copy(d, kTab[:])
	w1 := hash1Words(true)
	w2 := hash2Words()
	for i := 0; i < 12; i++ {
		d[sdKW1/4+i] = kTab[4+i] + w1[4+i].val
		d[sdPad1/4+i] = w1[4+i].val
	}
	for i := 0; i < 8; i++ {
		d[sdKW2/4+i] = kTab[8+i] + w2[8+i].val
		d[sdPad2/4+i] = w2[8+i].val
	}
	copy(d[sdIVAB/4:], []uint32{iv[5], iv[4], iv[1], iv[0]})
	copy(d[sdIVCD/4:], []uint32{iv[7], iv[6], iv[3], iv[2]})
	return d
}

type shani struct {
	*emitter
	spBase     int // first stack byte of the rings
	nonceOff   int // lane l hashes nonce+nonceOff+l
	h7Off      int // lane l's result goes to h7Off+4l(SI)
	pre, early bool
	n          int
	abef, cdgh []string
}

func (s *shani) slot(l, g int) string { return fmt.Sprintf("%d(SP)", s.spBase+l*64+(g%4)*16) }
func (s *shani) prev(l int) string    { return fmt.Sprintf("X%d", 9+l) }

// rnds2 does two rounds on lane l with the message+constant in X0's low half.
func (s *shani) rnds2(l int) {
	s.p("\tSHA256RNDS2 X0, %s, %s", s.abef[l], s.cdgh[l])
	s.abef[l], s.cdgh[l] = s.cdgh[l], s.abef[l]
}

// quad does rounds 4q..4q+3 of lane l with W+K in X0; only the first pair
// when half. Lanes are independent, so out-of-order execution overlaps
// their SHA256RNDS2 chains even though each lane's code is contiguous.
func (s *shani) quad(l int, half bool) {
	s.rnds2(l)
	if !half {
		s.p("\tPSHUFD $0x0e, X0, X0")
		s.rnds2(l)
	}
}

// sched computes message group q of lane l from its ring (groups q-4..q-2)
// and register (group q-1), and puts W+K into X0.
func (s *shani) sched(l, q int) {
	s.p("\tMOVOU %s, X13", s.slot(l, q-4))
	s.p("\tMOVOU %s, X14", s.slot(l, q-3))
	s.p("\tSHA256MSG1 X14, X13")
	s.p("\tMOVOU %s, X14", s.slot(l, q-2))
	s.p("\tMOVO %s, X15", s.prev(l))
	s.p("\tPALIGNR $4, X14, X15")
	s.p("\tPADDD X15, X13")
	s.p("\tSHA256MSG2 %s, X13", s.prev(l))
	s.p("\tMOVOU X13, %s", s.slot(l, q))
	s.p("\tMOVO X13, %s", s.prev(l))
	s.p("\tMOVOU shaniData<>+%d(SB), X0", sdK+16*q)
	s.p("\tPADDD X13, X0")
}

func (s *shani) scheduledQuads(early bool) {
	for q := 4; q < 16; q++ {
		s.p("\t// rounds %d..%d", 4*q, 4*q+3)
		for l := 0; l < s.n; l++ {
			s.sched(l, q)
			s.quad(l, early && q == 15)
		}
	}
}

func newSHANI(e *emitter, n int, pre, early bool) *shani {
	s := &shani{emitter: e, n: n, pre: pre, early: early}
	for l := 0; l < n; l++ {
		s.abef = append(s.abef, fmt.Sprintf("X%d", 1+2*l))
		s.cdgh = append(s.cdgh, fmt.Sprintf("X%d", 2+2*l))
	}
	return s
}

// body hashes one batch of n lanes; a lane at or below top sets R9.
func (s *shani) body() {
	s.p("\t// first hash, second block")
	for l := 0; l < s.n; l++ {
		s.p("\t// lane %d", l)
		if s.pre {
			s.p("\tMOVOU %d(DI), %s", offABEF2, s.abef[l])
			s.p("\tMOVOU %d(DI), %s", offCDGH2, s.cdgh[l])
		} else {
			s.p("\tMOVOU %d(DI), %s", offMidAB, s.abef[l])
			s.p("\tMOVOU %d(DI), %s", offMidCD, s.cdgh[l])
		}
		s.p("\tMOVL DX, AX")
		if s.nonceOff+l > 0 {
			s.p("\tADDL $%d, AX", s.nonceOff+l)
		}
		s.p("\tBSWAPL AX")
		s.p("\tMOVOU %d(DI), X14", offM0)
		s.p("\tPINSRD $3, AX, X14")
		s.p("\tMOVOU X14, %s", s.slot(l, 0))
		s.p("\tMOVOU shaniData<>+%d(SB), X0", sdK)
		s.p("\tPADDD X14, X0")
		if s.pre { // rounds 0..1 came with the job
			s.p("\tPSHUFD $0x0e, X0, X0")
			s.rnds2(l)
		} else {
			s.quad(l, false)
		}
		for g := 1; g < 4; g++ {
			s.p("\tMOVOU shaniData<>+%d(SB), X13", sdPad1+16*(g-1))
			s.p("\tMOVOU X13, %s", s.slot(l, g))
			s.p("\tMOVOU shaniData<>+%d(SB), X0", sdKW1+16*(g-1))
			s.quad(l, false)
		}
		s.p("\tMOVO X13, %s", s.prev(l))
	}
	s.scheduledQuads(false)
	s.p("\t// feed-forward; the first hash becomes the second's W0..W7")
	for l := 0; l < s.n; l++ {
		s.p("\t// lane %d", l)
		s.p("\tMOVOU %d(DI), X13", offMidAB)
		s.p("\tMOVOU %d(DI), X14", offMidCD)
		s.p("\tPADDD X13, %s", s.abef[l])
		s.p("\tPADDD X14, %s", s.cdgh[l])
		s.p("\tPSHUFD $0x1b, %s, X15", s.abef[l])
		s.p("\tPSHUFD $0x1b, %s, X14", s.cdgh[l])
		s.p("\tMOVO X15, X13")
		s.p("\tPUNPCKLQDQ X14, X13")
		s.p("\tPUNPCKHQDQ X14, X15")
		s.p("\tMOVOU X13, %s", s.slot(l, 0))
		s.p("\tMOVOU X15, %s", s.slot(l, 1))
		s.p("\tMOVOU shaniData<>+%d(SB), %s", sdIVAB, s.abef[l])
		s.p("\tMOVOU shaniData<>+%d(SB), %s", sdIVCD, s.cdgh[l])
		s.p("\tMOVOU shaniData<>+%d(SB), X0", sdK)
		s.p("\tPADDD X13, X0")
		s.quad(l, false)
		s.p("\tMOVOU shaniData<>+%d(SB), X0", sdK+16)
		s.p("\tPADDD X15, X0")
		s.quad(l, false)
		for g := 2; g < 4; g++ {
			s.p("\tMOVOU shaniData<>+%d(SB), X13", sdPad2+16*(g-2))
			s.p("\tMOVOU X13, %s", s.slot(l, g))
			s.p("\tMOVOU shaniData<>+%d(SB), X0", sdKW2+16*(g-2))
			s.quad(l, false)
		}
		s.p("\tMOVO X13, %s", s.prev(l))
	}
	s.scheduledQuads(s.early)
	s.p("\t// the hash's last word: with early, S62.f = S64.h, lane 0 of ABEF")
	for l := 0; l < s.n; l++ {
		src := s.abef[l]
		if !s.early {
			src = s.cdgh[l]
		}
		s.p("\tPEXTRD $0, %s, AX", src)
		s.p("\tADDL $0x%08x, AX", iv[7])
		s.p("\tBSWAPL AX")
		s.p("\tMOVL AX, %d(SI)", s.h7Off+4*l)
		s.p("\tCMPL AX, R8\n\tJHI lane%d\n\tMOVL $1, R9\nlane%d:", l, l)
	}
}

func genSHANIFunc(e *emitter, name string, n int, pre, early bool) {
	s := newSHANI(e, n, pre, early)
	s.p("// func %s(c *consts, nonce uint32, batches uint64, top uint32, h7 *[32]uint32) (done uint64, hit bool)", name)
	s.p("TEXT ·%s(SB), 0, $%d-49", name, 64*n)
	s.p("\tMOVQ c+0(FP), DI")
	s.p("\tMOVL nonce+8(FP), DX")
	s.p("\tMOVQ batches+16(FP), BX")
	s.p("\tMOVL top+24(FP), R8")
	s.p("\tMOVQ h7+32(FP), SI")
	s.p("\tXORQ CX, CX")
	s.p("\tXORL R9, R9")
	s.p("\tTESTQ BX, BX")
	s.p("\tJZ ret")
	s.p("loop:")
	s.body()
	s.p("\tINCQ CX")
	s.p("\tADDL $%d, DX", n)
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

func genSHANI() []byte {
	var e emitter
	e.p("// Code generated by asmgen; DO NOT EDIT.")
	e.p("")
	e.p("//go:build amd64")
	e.p("")
	e.p("#include \"textflag.h\"")
	e.p("")
	for i, v := range shaniDataWords() {
		e.p("DATA shaniData<>+%d(SB)/4, $0x%08x", 4*i, v)
	}
	e.p("GLOBL shaniData<>(SB), RODATA|NOPTR, $%d", sdTotal)
	e.p("")
	for _, n := range []int{1, 2, 3, 4} {
		genSHANIFunc(&e, fmt.Sprintf("shani%d", n), n, true, true)
	}
	genSHANIFunc(&e, "shani4NoPre", 4, false, true)
	genSHANIFunc(&e, "shani4NoEarly", 4, true, false)
	genSHANIX4(&e, "shaniX4", 4)
	genSHANIX4(&e, "shaniX6", 6)
	return e.Bytes()
}
