// Command asmgen writes the hasher package's generated kernels: the
// unrolled pure-Go kernel (generic_gen.go), the SHA-NI kernels
// (shani_amd64.s) and the AVX2 / AVX-512 multi-lane kernels
// (simd_amd64.s). Run it from internal/hasher with `go generate`.
//
// Every kernel computes, for each nonce, the byte-swapped last word of
// sha256d(header): the hash's bytes 28..31 read little-endian, which are
// the most significant 32 bits of the hash as a number. The first block's
// state (the midstate), the second block's rounds 0..2 and the nonce-free
// parts of round 3 and of the message schedule come precomputed from the
// job (see consts in hasher.go, whose field offsets are repeated below).
package main

import (
	"bytes"
	"flag"
	"fmt"
	"go/format"
	"log"
	"math/bits"
	"os"
	"strings"
)

// Offsets of the fields of hasher.consts (TestConstsLayout checks them).
const (
	offMid   = 0
	offS3    = 32
	offPA    = 64
	offPE    = 68
	offW16   = 72
	offW17   = 76
	offC18   = 80
	offC19   = 84
	offS0W16 = 88
	offS0W17 = 92
	offABEF2 = 96
	offCDGH2 = 112
	offMidAB = 128
	offMidCD = 144
	offM0    = 160
	offW     = 176
	offABEF4 = 192
	offCDGH4 = 208
)

var iv = [8]uint32{
	0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
	0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
}

var kTab = [64]uint32{
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
	0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
	0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
	0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
	0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
	0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
	0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
	0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
}

func ror(x uint32, n int) uint32 { return bits.RotateLeft32(x, -n) }
func ssig0(x uint32) uint32      { return ror(x, 7) ^ ror(x, 18) ^ x>>3 }
func ssig1(x uint32) uint32      { return ror(x, 17) ^ ror(x, 19) ^ x>>10 }

// A message word is known to be zero, a generation-time constant, a
// per-job value read from consts, or computed per nonce.
type kind int

const (
	zero kind = iota
	konst
	job
	variable
)

type word struct {
	kind kind
	val  uint32 // konst
	off  int    // job: offset in consts
	s0   int    // job: offset of σ0(word) in consts, or -1
}

// term is one addend of the message schedule: fn(W[idx]), fn 0 = identity.
type term struct {
	fn  int // 0 identity, 1 σ0, 2 σ1
	idx int
}

func schedTerms(t int) []term {
	return []term{{2, t - 2}, {0, t - 7}, {1, t - 15}, {0, t - 16}}
}

// hash1Words classifies the second header block's message words. With
// pre, W16..W19 come (partly) precomputed from the job.
func hash1Words(pre bool) [64]word {
	var w [64]word
	for i := 0; i < 3; i++ {
		w[i] = word{kind: job, off: offW + 4*i, s0: -1}
		if !pre {
			w[i].kind = variable
		}
	}
	w[3] = word{kind: variable}
	w[4] = word{kind: konst, val: 0x80000000}
	w[15] = word{kind: konst, val: 640}
	for t := 16; t < 64; t++ {
		w[t] = word{kind: variable}
	}
	if pre {
		w[16] = word{kind: job, off: offW16, s0: offS0W16}
		w[17] = word{kind: job, off: offW17, s0: offS0W17}
	}
	return w
}

// hash2Words classifies the message words of the hash of the hash.
func hash2Words() [64]word {
	var w [64]word
	for i := 0; i < 8; i++ {
		w[i] = word{kind: variable}
	}
	w[8] = word{kind: konst, val: 0x80000000}
	w[15] = word{kind: konst, val: 256}
	for t := 16; t < 64; t++ {
		w[t] = word{kind: variable}
	}
	return w
}

type emitter struct{ bytes.Buffer }

func (e *emitter) p(format string, args ...any) { fmt.Fprintf(&e.Buffer, format+"\n", args...) }

// ---------------------------------------------------------------- Go ----

// goKernel writes a Go function computing the byte-swapped-free final word
// H7 (or, without early, all of the final state) for one nonce.
func goKernel(e *emitter, name string, pre, early bool) {
	if early {
		e.p("func %s(c *consts, nonce uint32) uint32 {", name)
	} else {
		e.p("func %s(c *consts, nonce uint32) [8]uint32 {", name)
	}
	e.p("nonce = bits.ReverseBytes32(nonce) // the header holds it little-endian")
	w1 := hash1Words(pre)
	st := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	first := 4
	if pre {
		e.p("a, b, cc, d, e, f, g, h := c.pA+nonce, c.s3[0], c.s3[1], c.s3[2], c.pE+nonce, c.s3[4], c.s3[5], c.s3[6]")
	} else {
		e.p("a, b, cc, d, e, f, g, h := c.mid[0], c.mid[1], c.mid[2], c.mid[3], c.mid[4], c.mid[5], c.mid[6], c.mid[7]")
		e.p("x0, x1, x2, x3 := c.w[0], c.w[1], c.w[2], nonce")
		first = 0
	}
	st[2] = "cc"
	goWordName := func(p string) func(int) string { return func(i int) string { return fmt.Sprintf("%s%d", p, i) } }
	xn := goWordName("x")
	if pre {
		e.p("x18 := c.c18 + ssig0(nonce)")
		e.p("x19 := c.c19 + nonce")
	}
	jobExpr := func(off int) string {
		switch {
		case off == offW16:
			return "c.w16"
		case off == offW17:
			return "c.w17"
		case off == offS0W16:
			return "c.s0w16"
		case off == offS0W17:
			return "c.s0w17"
		case off >= offW && off < offW+12:
			return fmt.Sprintf("c.w[%d]", (off-offW)/4)
		}
		panic(off)
	}
	sched := func(w *[64]word, t int, nm func(int) string) {
		var parts []string
		var cv uint32
		for _, tm := range schedTerms(t) {
			src := w[tm.idx]
			switch src.kind {
			case zero:
			case konst:
				switch tm.fn {
				case 0:
					cv += src.val
				case 1:
					cv += ssig0(src.val)
				case 2:
					cv += ssig1(src.val)
				}
			case job:
				switch tm.fn {
				case 0:
					parts = append(parts, jobExpr(src.off))
				case 1:
					parts = append(parts, jobExpr(src.s0))
				default:
					panic("σ1 of a job word")
				}
			case variable:
				parts = append(parts, [...]string{"%s", "ssig0(%s)", "ssig1(%s)"}[tm.fn])
				parts[len(parts)-1] = fmt.Sprintf(parts[len(parts)-1], nm(tm.idx))
			}
		}
		if cv != 0 {
			parts = append(parts, fmt.Sprintf("0x%08x", cv))
		}
		e.p("%s := %s", nm(t), strings.Join(parts, " + "))
	}
	kw := func(w *[64]word, t int, nm func(int) string) string {
		switch w[t].kind {
		case zero:
			return fmt.Sprintf("0x%08x", kTab[t])
		case konst:
			return fmt.Sprintf("0x%08x", kTab[t]+w[t].val)
		case job:
			return fmt.Sprintf("0x%08x + %s", kTab[t], jobExpr(w[t].off))
		}
		return fmt.Sprintf("0x%08x + %s", kTab[t], nm(t))
	}
	rnd := func(t int, kws string, needA bool) {
		a, b, c, d, ee, f, g, h := st[0], st[1], st[2], st[3], st[4], st[5], st[6], st[7]
		e.p("%s += bsig1(%s) + (%s&%s ^ ^%s&%s) + %s", h, ee, ee, f, ee, g, kws)
		e.p("%s += %s", d, h)
		if needA {
			e.p("%s += bsig0(%s) + (%s&%s ^ %s&%s ^ %s&%s)", h, a, a, b, a, c, b, c)
		}
		st = []string{h, a, b, c, d, ee, f, g}
	}
	for t := first; t < 64; t++ {
		if t >= 16 && w1[t].kind == variable && !(pre && (t == 18 || t == 19)) {
			sched(&w1, t, xn)
		}
		rnd(t, kw(&w1, t, xn), true)
	}
	// Feed-forward: the first hash, which is the second hash's W0..W7.
	mids := []string{"c.mid[0]", "c.mid[1]", "c.mid[2]", "c.mid[3]", "c.mid[4]", "c.mid[5]", "c.mid[6]", "c.mid[7]"}
	for i := 0; i < 8; i++ {
		e.p("y%d := %s + %s", i, st[i], mids[i])
	}
	e.p("a, b, cc, d, e, f, g, h = 0x%08x, 0x%08x, 0x%08x, 0x%08x, 0x%08x, 0x%08x, 0x%08x, 0x%08x",
		iv[0], iv[1], iv[2], iv[3], iv[4], iv[5], iv[6], iv[7])
	st = []string{"a", "b", "cc", "d", "e", "f", "g", "h"}
	w2 := hash2Words()
	yn := goWordName("y")
	last := 63
	if early {
		last = 60
	}
	for t := 0; t <= last; t++ {
		if t >= 16 {
			sched(&w2, t, yn)
		}
		rnd(t, kw(&w2, t, yn), !early || t < 58)
	}
	if early {
		// h after round 63 is e after round 60.
		e.p("_, _, _, _, _, _ = a, b, cc, d, f, g")
		e.p("_ = h")
		e.p("return %s + 0x%08x", st[4], iv[7])
	} else {
		e.p("return [8]uint32{%s + 0x%08x, %s + 0x%08x, %s + 0x%08x, %s + 0x%08x, %s + 0x%08x, %s + 0x%08x, %s + 0x%08x, %s + 0x%08x}",
			st[0], iv[0], st[1], iv[1], st[2], iv[2], st[3], iv[3], st[4], iv[4], st[5], iv[5], st[6], iv[6], st[7], iv[7])
	}
	e.p("}")
	e.p("")
}

func genGo() []byte {
	var e emitter
	e.p("// Code generated by asmgen; DO NOT EDIT.")
	e.p("")
	e.p("package hasher")
	e.p("")
	e.p("import \"math/bits\"")
	e.p("")
	e.p("// genericH7 returns the last word of the final state of sha256d for nonce")
	e.p("// (all tricks: precomputed rounds and schedule, stop after round 60).")
	goKernel(&e, "genericH7", true, true)
	e.p("// genericH7NoPre is genericH7 without the per-job precomputation of the")
	e.p("// second block's first rounds (for measuring that trick).")
	goKernel(&e, "genericH7NoPre", false, true)
	e.p("// genericFull returns the whole final state of sha256d for nonce (for")
	e.p("// measuring the early-exit trick).")
	goKernel(&e, "genericFull", true, false)
	src, err := format.Source(e.Bytes())
	if err != nil {
		os.WriteFile("generic_gen.go.broken", e.Bytes(), 0o644)
		log.Fatalf("gofmt generated Go: %v", err)
	}
	return src
}

func main() {
	out := flag.String("dir", ".", "directory to write the generated files into")
	flag.Parse()
	write := func(name string, b []byte) {
		if err := os.WriteFile(*out+"/"+name, b, 0o644); err != nil {
			log.Fatal(err)
		}
	}
	write("generic_gen.go", genGo())
	write("shani_amd64.s", genSHANI())
	write("simd_amd64.s", genSIMD())
}
