package hasher

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"unsafe"

	"github.com/powcoord/powcoord/internal/chainmath"
)

// refScan is the reference: crypto/sha256 on the whole header for every
// nonce, the full 256-bit compare, every hit kept.
func refScan(j *Job, start uint32, count uint64) []uint32 {
	hdr := j.Header
	var hits []uint32
	for i := uint64(0); i < count; i++ {
		nonce := start + uint32(i)
		binary.LittleEndian.PutUint32(hdr[76:], nonce)
		first := sha256.Sum256(hdr[:])
		h := chainmath.Hash(sha256.Sum256(first[:]))
		if j.Target.Meets(&h) {
			hits = append(hits, nonce)
		}
	}
	return hits
}

func randHeader(r *rand.Rand) *[80]byte {
	var h [80]byte
	for i := range h {
		h[i] = byte(r.Uint32())
	}
	return &h
}

// targetWithTop is a target whose most significant word is top and whose
// other words are rest.
func targetWithTop(top uint32, rest byte) chainmath.Target {
	var t chainmath.Target
	for i := range t {
		t[i] = rest
	}
	binary.LittleEndian.PutUint32(t[28:], top)
	return t
}

func TestConstsLayout(t *testing.T) {
	var c consts
	got := []uintptr{
		unsafe.Offsetof(c.mid), unsafe.Offsetof(c.s3), unsafe.Offsetof(c.pA), unsafe.Offsetof(c.pE),
		unsafe.Offsetof(c.w16), unsafe.Offsetof(c.w17), unsafe.Offsetof(c.c18), unsafe.Offsetof(c.c19),
		unsafe.Offsetof(c.s0w16), unsafe.Offsetof(c.s0w17), unsafe.Offsetof(c.abef2), unsafe.Offsetof(c.cdgh2),
		unsafe.Offsetof(c.midAB), unsafe.Offsetof(c.midCD), unsafe.Offsetof(c.m0), unsafe.Offsetof(c.w),
		unsafe.Offsetof(c.abef4), unsafe.Offsetof(c.cdgh4),
	}
	want := []uintptr{0, 32, 64, 68, 72, 76, 80, 84, 88, 92, 96, 112, 128, 144, 160, 176, 192, 208}
	if !slices.Equal(got, want) {
		t.Fatalf("consts offsets %v, asmgen assumes %v", got, want)
	}
}

// TestSHA256d80 pins the scalar reference to a real block: genesis.
func TestSHA256d80(t *testing.T) {
	hdr := [80]byte{}
	raw := "0100000000000000000000000000000000000000000000000000000000000000000000003ba3edfd7a7b12b27ac72c3e67768f617fc81bc3888a51323a9fb8aa4b1e5e4a29ab5f49ffff001d1dac2b7c"
	for i := range hdr {
		fmt.Sscanf(raw[2*i:2*i+2], "%02x", &hdr[i])
	}
	got := chainmath.Hash(sha256d80(&hdr)).String()
	if want := "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f"; got != want {
		t.Fatalf("genesis hash %s want %s", got, want)
	}
	// The generated pure-Go paths agree on the genesis nonce.
	j := NewJob(&hdr, chainmath.Target{})
	nonce := binary.LittleEndian.Uint32(hdr[76:])
	full := genericFull(&j.c, nonce)
	d := sha256d80(&hdr)
	if w := binary.BigEndian.Uint32(d[28:]); full[7] != w || genericH7(&j.c, nonce) != w || genericH7NoPre(&j.c, nonce) != w {
		t.Fatalf("H7: full %08x h7 %08x nopre %08x want %08x", full[7], genericH7(&j.c, nonce), genericH7NoPre(&j.c, nonce), w)
	}
	if n := (genericKernel{}).Scan(j, nonce-5, 10, make([]uint32, 4)); n != 0 {
		t.Fatalf("zero target accepted %d nonces", n)
	}
	j = NewJob(&hdr, chainmath.TargetFromBig(chainmath.Diff1Target()))
	for _, k := range Available() {
		out := make([]uint32, 4)
		if n := k.Scan(j, nonce-1000, 2000, out); n != 1 || out[0] != nonce {
			t.Errorf("%s: genesis scan found %v, want [%d]", k.Name(), out[:n], nonce)
		}
	}
}

func TestGenericFullMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 50 {
		hdr := randHeader(r)
		j := NewJob(hdr, chainmath.Target{})
		for range 20 {
			nonce := r.Uint32()
			binary.LittleEndian.PutUint32(hdr[76:], nonce)
			first := sha256.Sum256(hdr[:])
			want := sha256.Sum256(first[:])
			full := genericFull(&j.c, nonce)
			for i := range full {
				if binary.BigEndian.Uint32(want[4*i:]) != full[i] {
					t.Fatalf("nonce %d word %d: %08x want %08x", nonce, i, full[i], binary.BigEndian.Uint32(want[4*i:]))
				}
			}
			if genericH7NoPre(&j.c, nonce) != full[7] {
				t.Fatal("genericH7NoPre disagrees")
			}
		}
	}
}

type scanCase struct {
	name   string
	target chainmath.Target
	start  uint32
	count  uint64
	outLen int
}

func scanCases(r *rand.Rand) []scanCase {
	d1 := chainmath.TargetFromBig(chainmath.Diff1Target())
	return []scanCase{
		{"quarter", targetWithTop(0x3fffffff, 0xff), r.Uint32() >> 1, 203, 300},
		{"half-wrap", targetWithTop(0x7fffffff, 0x00), 1<<32 - 77, 77, 100},
		{"all-truncated", targetWithTop(0xffffffff, 0xff), 1<<32 - 50, 50, 7},
		{"few", targetWithTop(0x00ffffff, 0xff), 1<<32 - 1000, 1000, 100},
		{"diff1", d1, 12345, 300, 10},
		{"none", chainmath.Target{}, 0, 64, 10},
		{"one", targetWithTop(0x3fffffff, 0xff), 1<<32 - 1, 1, 10},
		{"empty", targetWithTop(0xffffffff, 0xff), 99, 0, 10},
		{"count-overflow", targetWithTop(0x3fffffff, 0xff), 1<<32 - 33, 1 << 40, 100},
	}
}

// equalTopTarget returns a target whose top word equals that of the hash
// of some nonce in range, so the equal-top-word path (full compare) runs
// both ways.
func equalTopTarget(hdr *[80]byte, nonce uint32, below bool) chainmath.Target {
	h := *hdr
	binary.LittleEndian.PutUint32(h[76:], nonce)
	d := sha256d80(&h)
	var t chainmath.Target
	copy(t[:], d[:])
	if below { // one less than the hash, so this nonce just fails
		for i := 0; i < 32; i++ {
			if t[i] != 0 {
				t[i]--
				break
			}
			t[i] = 0xff
		}
	}
	return t
}

func checkKernel(t *testing.T, k Kernel, j *Job, c scanCase) {
	t.Helper()
	want := refScan(j, c.start, clampCount(c.start, c.count))
	out := make([]uint32, c.outLen)
	n := k.Scan(j, c.start, c.count, out)
	if len(want) > c.outLen {
		want = want[:c.outLen]
	}
	if !slices.Equal(out[:n], want) {
		t.Fatalf("%s/%s start %d count %d: got %v want %v", k.Name(), c.name, c.start, c.count, out[:n], want)
	}
}

func TestKernelsAgreeWithReference(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, k := range Available() {
		t.Run(k.Name(), func(t *testing.T) {
			for range 6 {
				hdr := randHeader(r)
				for _, c := range scanCases(r) {
					checkKernel(t, k, NewJob(hdr, c.target), c)
				}
				for _, below := range []bool{false, true} {
					start := r.Uint32()
					tg := equalTopTarget(hdr, start+uint32(r.IntN(40)), below)
					checkKernel(t, k, NewJob(hdr, tg), scanCase{"equal-top", tg, start, 40, 10})
				}
			}
		})
	}
}

// TestEveryLane scans with a target that accepts about half the nonces at
// every offset of a 16-nonce window, so that every lane of every kernel
// must report its own nonce correctly.
func TestEveryLane(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	hdr := randHeader(r)
	j := NewJob(hdr, targetWithTop(0x7fffffff, 0xff))
	for _, k := range Available() {
		for off := uint32(0); off < 16; off++ {
			checkKernel(t, k, j, scanCase{fmt.Sprint("lane", off), j.Target, 1000 + off, 64 + uint64(off), 100})
		}
	}
}

func TestKernelNames(t *testing.T) {
	av := Available()
	if av[0].Name() != "stdlib" {
		t.Fatalf("first kernel %q, want stdlib", av[0].Name())
	}
	for _, k := range av {
		got, err := ByName(k.Name())
		if err != nil || got.Name() != k.Name() {
			t.Fatalf("ByName(%q) = %v, %v", k.Name(), got, err)
		}
		if !slices.Contains(Names(), k.Name()) {
			t.Fatalf("kernel %q not in Names()", k.Name())
		}
	}
	if Default().Name() != av[len(av)-1].Name() {
		t.Fatal("Default is not the last available kernel")
	}
	if _, err := ByName("sha-9000"); err == nil || !contains(err.Error(), `"sha-9000"`) {
		t.Fatalf("ByName(unknown) error %v does not name the kernel", err)
	}
	for _, n := range Names() {
		if _, err := ByName(n); err != nil {
			t.Logf("kernel %s skipped on this CPU: %v", n, err)
		}
	}
}

func contains(s, sub string) bool {
	return len(sub) == 0 || len(s) >= len(sub) && (s[:len(sub)] == sub || contains(s[1:], sub))
}

func TestScanDoesNotAllocate(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	j := NewJob(randHeader(r), targetWithTop(0x0fffffff, 0xff))
	out := make([]uint32, 64)
	for _, k := range Available() {
		k.Scan(j, 0, 256, out) // warm pools
		if a := testing.AllocsPerRun(20, func() { k.Scan(j, 0, 256, out) }); a != 0 {
			t.Errorf("%s: %v allocations per Scan", k.Name(), a)
		}
	}
}

func FuzzKernels(f *testing.F) {
	f.Add(make([]byte, 80), uint32(0), uint16(100), uint32(0x3fffffff), byte(0xff))
	f.Add(make([]byte, 80), uint32(1<<32-20), uint16(20), uint32(0x7fffffff), byte(0))
	f.Fuzz(func(t *testing.T, hb []byte, start uint32, count uint16, top uint32, rest byte) {
		var hdr [80]byte
		copy(hdr[:], hb)
		c := scanCase{"fuzz", targetWithTop(top, rest), start, uint64(count % 512), 600}
		j := NewJob(&hdr, c.target)
		for _, k := range Available() {
			checkKernel(t, k, j, c)
		}
	})
}

// benchTarget accepts nothing in practice (difficulty ~2^32·large).
var benchTarget = targetWithTop(0, 0)

const benchChunk = 1 << 14

func BenchmarkScan(b *testing.B) {
	j := NewJob(randHeader(rand.New(rand.NewPCG(9, 9))), benchTarget)
	out := make([]uint32, 16)
	for _, k := range Available() {
		b.Run(k.Name(), func(b *testing.B) {
			nonce := uint32(0)
			for b.Loop() {
				k.Scan(j, nonce, benchChunk, out)
				nonce += benchChunk
			}
			b.ReportMetric(float64(b.N)*benchChunk/b.Elapsed().Seconds()/1e6, "MH/s")
		})
	}
}

// BenchmarkTricks measures the miner tricks on the pure-Go kernel: all of
// them, without the precomputed first rounds, and without the early exit
// (full hash, full compare).
func BenchmarkTricks(b *testing.B) {
	j := NewJob(randHeader(rand.New(rand.NewPCG(9, 9))), benchTarget)
	var sink uint32
	run := func(name string, f func(nonce uint32) bool) {
		b.Run(name, func(b *testing.B) {
			nonce := uint32(0)
			for b.Loop() {
				for range benchChunk {
					if f(nonce) {
						sink++
					}
					nonce++
				}
			}
			b.ReportMetric(float64(b.N)*benchChunk/b.Elapsed().Seconds()/1e6, "MH/s")
		})
	}
	run("generic/all", func(n uint32) bool { return genericH7(&j.c, n) == 0 })
	run("generic/no-precompute", func(n uint32) bool { return genericH7NoPre(&j.c, n) == 0 })
	run("generic/no-early-exit", func(n uint32) bool {
		s := genericFull(&j.c, n)
		var h chainmath.Hash
		for i, v := range s {
			binary.BigEndian.PutUint32(h[4*i:], v)
		}
		return j.Target.Meets(&h)
	})
	archTricks(b, j, run)
	_ = sink
}

// TestVersionRolling varies the version field (header bytes 0..3, which
// ASICBoost-style version rolling changes) of one job: the midstate
// changes with it, and every kernel still finds exactly the reference's
// nonces, including across the 2^32 nonce wrap.
func TestVersionRolling(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	hdr := randHeader(r)
	tg := targetWithTop(0x1fffffff, 0xff)
	for _, version := range []uint32{0x20000000, 0x20000000 | 0x1fffe000, 0x3fffe004, 0xffffffff, 0} {
		binary.LittleEndian.PutUint32(hdr[0:], version)
		j := NewJob(hdr, tg)
		for _, k := range Available() {
			checkKernel(t, k, j, scanCase{fmt.Sprintf("version-%08x", version), tg, 1<<32 - 37, 37 + 64, 200})
		}
	}
}

// TestEveryTargetBoundary sets the target to exactly the hash of each
// nonce of a window (which meets it) and to one less (which does not), at
// every lane offset, so each kernel's top-word shortcut and full compare
// decide every boundary the way the reference does.
func TestEveryTargetBoundary(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 16))
	hdr := randHeader(r)
	const start = 1<<32 - 16 // the window ends at the 2^32 wrap
	for i := uint32(0); i < 16; i++ {
		nonce := start + i
		for _, below := range []bool{false, true} {
			tg := equalTopTarget(hdr, nonce, below)
			j := NewJob(hdr, tg)
			if got := len(refScan(j, nonce, 1)); got != map[bool]int{false: 1, true: 0}[below] {
				t.Fatalf("nonce %d, target one below its hash %v: the reference found it %d times", nonce, below, got)
			}
			for _, k := range Available() {
				// From start-3, so the boundary nonce sits at every lane offset of some kernel; the count runs past 2^32 and is clamped.
				checkKernel(t, k, j, scanCase{fmt.Sprintf("boundary-%d-below-%v", i, below), tg, start - 3, 1 << 40, 40})
			}
		}
	}
}
