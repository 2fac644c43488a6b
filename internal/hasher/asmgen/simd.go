package main

import (
	"fmt"
	"slices"
)

// The AVX2 (8 lanes) and AVX-512 (16 lanes) kernels: one nonce per 32-bit
// lane, the eight state words in registers, the message schedule in a
// 16-entry ring on the stack, constants from a per-kernel table of
// replicated words.

type simd struct {
	*emitter
	base    int    // first vector register used
	step    int    // nonces per batch
	mask    string // if set, the register the hit mask goes to (ORed into R9)
	noPre   bool   // start from the midstate at round 0 (to measure that trick)
	noEarly bool   // run all 64 rounds of the second hash (to measure that trick)
	wide    bool   // AVX-512
	v       int    // vector bytes
	lanes   int
	table   string
	consts  []uint32 // replicated constants, in table order
	st      []string // registers holding a..h
}

func (g *simd) r(i int) string {
	if g.wide {
		return fmt.Sprintf("Z%d", g.base+i)
	}
	return fmt.Sprintf("Y%d", i)
}

// Fixed registers.
func (g *simd) t(i int) string { return g.r(8 + i) } // temps T0..T3
func (g *simd) nv() string     { return g.r(12) }    // nonces
func (g *simd) top() string    { return g.r(13) }    // target's top word
func (g *simd) bs() string     { return g.r(14) }    // byte-swap shuffle
func (g *simd) nw() string     { return g.r(15) }    // W3: byte-swapped nonces

// Table layout: lane indexes, lane count, byte-swap mask, then constants.
func (g *simd) c(v uint32) string {
	i := slices.Index(g.consts, v)
	if i < 0 {
		g.consts = append(g.consts, v)
		i = len(g.consts) - 1
	}
	return fmt.Sprintf("%s<>+%d(SB)", g.table, (3+i)*g.v)
}

// slot is where message word t lives: on AVX-512 one of Z16..Z31 (the
// ring fits in the upper registers), on AVX2 a stack slot.
func (g *simd) slot(t int) string {
	if g.regW() {
		return fmt.Sprintf("Z%d", 16+t%16)
	}
	return fmt.Sprintf("%d(SP)", (t%16)*g.v)
}

func (g *simd) regW() bool { return g.wide && g.base == 0 }

func isReg(s string) bool { return s[0] == 'Y' || s[0] == 'Z' || s[0] == 'X' }

func (g *simd) mov(src, dst string) {
	if g.wide {
		g.p("\tVMOVDQA32 %s, %s", src, dst)
	} else {
		g.p("\tVMOVDQA %s, %s", src, dst)
	}
}
func (g *simd) load(mem, dst string) {
	if isReg(mem) && isReg(dst) {
		g.mov(mem, dst)
		return
	}
	if g.wide {
		g.p("\tVMOVDQU32 %s, %s", mem, dst)
	} else {
		g.p("\tVMOVDQU %s, %s", mem, dst)
	}
}
func (g *simd) store(src, mem string) { g.load(src, mem) }
func (g *simd) add(src, dst string)   { g.p("\tVPADDD %s, %s, %s", src, dst, dst) }

// sigma writes ror(x,r0)^ror(x,r1)^(r2 shift or rotate) into dst using tmp
// (and, on AVX-512, tmp2); x is preserved unless clobber.
func (g *simd) sigma(x string, r0, r1, r2 int, shift bool, dst, tmp, tmp2 string) {
	if g.wide {
		g.p("\tVPRORD $%d, %s, %s", r0, x, dst)
		g.p("\tVPRORD $%d, %s, %s", r1, x, tmp)
		if shift {
			g.p("\tVPSRLD $%d, %s, %s", r2, x, tmp2)
		} else {
			g.p("\tVPRORD $%d, %s, %s", r2, x, tmp2)
		}
		g.p("\tVPTERNLOGD $0x96, %s, %s, %s", tmp2, tmp, dst)
		return
	}
	g.p("\tVPSRLD $%d, %s, %s", r0, x, dst)
	g.p("\tVPSLLD $%d, %s, %s", 32-r0, x, tmp)
	g.p("\tVPXOR %s, %s, %s", tmp, dst, dst)
	g.p("\tVPSRLD $%d, %s, %s", r1, x, tmp)
	g.p("\tVPXOR %s, %s, %s", tmp, dst, dst)
	g.p("\tVPSLLD $%d, %s, %s", 32-r1, x, tmp)
	g.p("\tVPXOR %s, %s, %s", tmp, dst, dst)
	g.p("\tVPSRLD $%d, %s, %s", r2, x, tmp)
	g.p("\tVPXOR %s, %s, %s", tmp, dst, dst)
	if !shift {
		g.p("\tVPSLLD $%d, %s, %s", 32-r2, x, tmp)
		g.p("\tVPXOR %s, %s, %s", tmp, dst, dst)
	}
}

// round does round t; kw are the addends of K[t]+W[t] (registers or memory).
func (g *simd) round(kw []string, needA bool) {
	a, b, c, d, e, f, gg, h := g.st[0], g.st[1], g.st[2], g.st[3], g.st[4], g.st[5], g.st[6], g.st[7]
	t0, t1, t2 := g.t(0), g.t(1), g.t(2)
	for _, x := range kw {
		g.add(x, h)
	}
	g.sigma(e, 6, 11, 25, false, t0, t1, t2)
	g.add(t0, h)
	if g.wide {
		g.mov(e, t0)
		g.p("\tVPTERNLOGD $0xca, %s, %s, %s", gg, f, t0)
	} else {
		g.p("\tVPXOR %s, %s, %s", gg, f, t0)
		g.p("\tVPAND %s, %s, %s", e, t0, t0)
		g.p("\tVPXOR %s, %s, %s", gg, t0, t0)
	}
	g.add(t0, h)
	g.add(h, d)
	if needA {
		g.sigma(a, 2, 13, 22, false, t0, t1, t2)
		g.add(t0, h)
		if g.wide {
			g.mov(a, t0)
			g.p("\tVPTERNLOGD $0xe8, %s, %s, %s", c, b, t0)
		} else {
			g.p("\tVPXOR %s, %s, %s", b, a, t0)
			g.p("\tVPAND %s, %s, %s", c, t0, t0)
			g.p("\tVPAND %s, %s, %s", b, a, t1)
			g.p("\tVPOR %s, %s, %s", t1, t0, t0)
		}
		g.add(t0, h)
	}
	g.st = []string{h, a, b, c, d, e, f, gg}
}

// sched computes W[t] into its slot (and, on AVX2, T3).
func (g *simd) sched(w *[64]word, t int) {
	t0, t1, t2, t3 := g.t(0), g.t(1), g.t(2), g.t(3)
	dst := t3
	terms := schedTerms(t)
	if g.regW() {
		// Accumulate in place: W[t] replaces W[t-16] in the same register,
		// which is itself an addend, so take that one first.
		dst = g.slot(t)
		slices.Reverse(terms)
	}
	started := false
	acc := func(src string) {
		if !started {
			started = true
			if src == dst {
				return
			}
			g.load(src, dst)
			return
		}
		g.add(src, dst)
	}
	var cv uint32
	for _, tm := range terms {
		src := w[tm.idx]
		switch src.kind {
		case zero:
		case konst:
			cv += [...]func(uint32) uint32{func(x uint32) uint32 { return x }, ssig0, ssig1}[tm.fn](src.val)
		case job:
			off := src.off
			if tm.fn == 1 {
				off = src.s0
			} else if tm.fn == 2 {
				panic("σ1 of a job word")
			}
			g.p("\tVPBROADCASTD %d(DI), %s", off, t0)
			acc(t0)
		case variable:
			if tm.fn == 0 {
				acc(g.slot(tm.idx))
				continue
			}
			x, tmp2 := g.slot(tm.idx), t0
			if !g.regW() {
				g.load(x, t0)
				x = t0
			}
			if tm.fn == 1 {
				g.sigma(x, 7, 18, 3, true, t1, t2, tmp2)
			} else {
				g.sigma(x, 17, 19, 10, true, t1, t2, tmp2)
			}
			acc(t1)
		}
	}
	if cv != 0 {
		g.add(g.c(cv), dst)
	}
	if !g.regW() {
		g.store(t3, g.slot(t))
	}
}

func (g *simd) kw(w *[64]word, t int, fresh bool) []string {
	switch w[t].kind {
	case zero:
		return []string{g.c(kTab[t])}
	case konst:
		return []string{g.c(kTab[t] + w[t].val)}
	case job:
		g.p("\tVPBROADCASTD %d(DI), %s", w[t].off, g.t(3))
		return []string{g.t(3), g.c(kTab[t])}
	}
	if fresh && !g.regW() {
		return []string{g.t(3), g.c(kTab[t])}
	}
	return []string{g.slot(t), g.c(kTab[t])}
}

func newSIMD(e *emitter, name string, wide bool) *simd {
	g := &simd{emitter: e, wide: wide, v: 32, lanes: 8, table: name + "Data"}
	if wide {
		g.v, g.lanes = 64, 16
	}
	g.step = g.lanes
	return g
}

func (g *simd) x(i int) string { return fmt.Sprintf("X%d", g.base+i) }

// prologue loads the nonce, top and shuffle registers.
func (g *simd) prologue() {
	g.p("\tMOVL nonce+8(FP), AX")
	g.p("\tVMOVD AX, %s", g.x(12))
	g.p("\tVPBROADCASTD %s, %s", g.x(12), g.nv())
	g.add(g.table+"<>+0(SB)", g.nv())
	g.p("\tMOVL top+24(FP), AX")
	g.p("\tVMOVD AX, %s", g.x(13))
	g.p("\tVPBROADCASTD %s, %s", g.x(13), g.top())
	g.load(fmt.Sprintf("%s<>+%d(SB)", g.table, 2*g.v), g.bs())
}

// body hashes one batch and leaves the hit mask in AX (or ORs it into R9).
func (g *simd) body() {
	t0, t1, t3 := g.t(0), g.t(1), g.t(3)
	g.p("\tVPSHUFB %s, %s, %s", g.bs(), g.nv(), g.nw())
	g.st = []string{g.r(0), g.r(1), g.r(2), g.r(3), g.r(4), g.r(5), g.r(6), g.r(7)}
	first := 4
	w1 := hash1Words(!g.noPre)
	if g.noPre {
		// The midstate, W0..W2 from the job and W3 = nonce, all rounds.
		for i := 0; i < 8; i++ {
			g.p("\tVPBROADCASTD %d(DI), %s", offMid+4*i, g.st[i])
		}
		for i := 0; i < 3; i++ {
			g.p("\tVPBROADCASTD %d(DI), %s", offW+4*i, t0)
			g.store(t0, g.slot(i))
		}
		g.store(g.nw(), g.slot(3))
		first = 0
	} else {
		// State after round 3 (rounds 0..2 and most of 3 came with the job).
		g.p("\tVPBROADCASTD %d(DI), %s", offPA, g.st[0])
		g.add(g.nw(), g.st[0])
		g.p("\tVPBROADCASTD %d(DI), %s", offPE, g.st[4])
		g.add(g.nw(), g.st[4])
		for i, s := range []int{0, 1, 2} {
			g.p("\tVPBROADCASTD %d(DI), %s", offS3+4*s, g.st[1+i])
			g.p("\tVPBROADCASTD %d(DI), %s", offS3+4*(4+s), g.st[5+i])
		}
	}
	for t := first; t < 64; t++ {
		fresh := false
		switch {
		case t == 18 && !g.noPre: // W18 = c18 + σ0(W3)
			g.mov(g.nw(), t0)
			g.sigma(t0, 7, 18, 3, true, t1, g.t(2), t0)
			g.p("\tVPBROADCASTD %d(DI), %s", offC18, t3)
			g.add(t1, t3)
			g.store(t3, g.slot(t))
			fresh = true
		case t == 19 && !g.noPre: // W19 = c19 + W3
			g.p("\tVPBROADCASTD %d(DI), %s", offC19, t3)
			g.add(g.nw(), t3)
			g.store(t3, g.slot(t))
			fresh = true
		case t >= 16 && w1[t].kind == variable:
			g.sched(&w1, t)
			fresh = true
		}
		g.round(g.kw(&w1, t, fresh), true)
	}
	g.p("\t// feed-forward; the first hash is the second's W0..W7")
	for i := 0; i < 8; i++ {
		g.p("\tVPBROADCASTD %d(DI), %s", offMid+4*i, t0)
		if g.regW() {
			g.p("\tVPADDD %s, %s, %s", t0, g.st[i], g.slot(i))
		} else {
			g.add(t0, g.st[i])
			g.store(g.st[i], g.slot(i))
		}
	}
	g.st = []string{g.r(0), g.r(1), g.r(2), g.r(3), g.r(4), g.r(5), g.r(6), g.r(7)}
	for i := 0; i < 8; i++ {
		g.load(g.c(iv[i]), g.st[i])
	}
	w2 := hash2Words()
	last := 60
	if g.noEarly {
		last = 63
	}
	for t := 0; t <= last; t++ {
		if t >= 16 {
			g.sched(&w2, t)
		}
		g.round(g.kw(&w2, t, t >= 16), t < 58 || g.noEarly)
	}
	if g.noEarly {
		g.p("\tVPADDD %s, %s, %s", g.c(iv[7]), g.st[7], t0)
	} else {
		g.p("\t// h after round 63 is e after round 60")
		g.p("\tVPADDD %s, %s, %s", g.c(iv[7]), g.st[4], t0)
	}
	g.p("\tVPSHUFB %s, %s, %s", g.bs(), t0, t0)
	g.store(t0, "(SI)")
	mask := "AX"
	if g.mask != "" {
		mask = g.mask
	}
	if g.wide {
		g.p("\tVPCMPUD $2, %s, %s, K1", g.top(), t0)
		g.p("\tKMOVW K1, %s", mask)
	} else {
		g.p("\tVPMINUD %s, %s, %s", g.top(), t0, t1)
		g.p("\tVPCMPEQD %s, %s, %s", t1, t0, t1)
		g.p("\tVPMOVMSKB %s, %s", t1, mask)
	}
	if g.mask != "" {
		g.p("\tORL %s, R9", g.mask)
	}
	g.add(fmt.Sprintf("%s<>+%d(SB)", g.table, g.v), g.nv())
}

// data returns the kernel's table: lane indexes, nonces per batch,
// byte-swap mask, constants.
func (g *simd) data() []uint32 {
	per := g.v / 4
	var data []uint32
	for i := 0; i < per; i++ {
		data = append(data, uint32(i))
	}
	for i := 0; i < per; i++ {
		data = append(data, uint32(g.step))
	}
	for i := 0; i < per; i++ {
		data = append(data, [4]uint32{0x00010203, 0x04050607, 0x08090a0b, 0x0c0d0e0f}[i%4])
	}
	for _, v := range g.consts {
		for i := 0; i < per; i++ {
			data = append(data, v)
		}
	}
	return data
}

func genSIMDFunc(e *emitter, name string, wide, noPre, noEarly bool) []uint32 {
	g := newSIMD(e, name, wide)
	g.noPre, g.noEarly = noPre, noEarly
	g.p("// func %s(c *consts, nonce uint32, batches uint64, top uint32, h7 *[32]uint32) (done uint64, hit bool)", name)
	frame := 16 * g.v
	if g.regW() {
		frame = 0
	}
	g.p("TEXT ·%s(SB), 0, $%d-49", name, frame)
	g.p("\tMOVQ c+0(FP), DI")
	g.p("\tMOVQ batches+16(FP), BX")
	g.p("\tMOVQ h7+32(FP), SI")
	g.p("\tXORQ CX, CX")
	g.p("\tXORL R9, R9")
	g.p("\tTESTQ BX, BX")
	g.p("\tJZ ret")
	g.prologue()
	g.p("loop:")
	g.body()
	g.p("\tINCQ CX")
	g.p("\tTESTL AX, AX")
	g.p("\tJNZ hit")
	g.p("\tDECQ BX")
	g.p("\tJNZ loop")
	g.p("\tJMP ret")
	g.p("hit:")
	g.p("\tMOVL $1, R9")
	g.p("ret:")
	g.p("\tVZEROUPPER")
	g.p("\tMOVQ CX, done+40(FP)")
	g.p("\tMOVB R9, hit+48(FP)")
	g.p("\tRET")
	g.p("")
	return g.data()
}

func genSIMD() []byte {
	var e, body emitter
	e.p("// Code generated by asmgen; DO NOT EDIT.")
	e.p("")
	e.p("//go:build amd64")
	e.p("")
	e.p("#include \"textflag.h\"")
	e.p("")
	for _, k := range []struct {
		name           string
		wide           bool
		noPre, noEarly bool
	}{
		{"avx2x8", false, false, false},
		{"avx512x16", true, false, false},
		{"avx512x16NoPre", true, true, false},
		{"avx512x16NoEarly", true, false, true},
	} {
		data := genSIMDFunc(&body, k.name, k.wide, k.noPre, k.noEarly)
		for i, v := range data {
			e.p("DATA %sData<>+%d(SB)/4, $0x%08x", k.name, 4*i, v)
		}
		e.p("GLOBL %sData<>(SB), RODATA|NOPTR, $%d", k.name, 4*len(data))
		e.p("")
	}
	e.Write(body.Bytes())
	return e.Bytes()
}
