//go:build amd64

package hasher

import "golang.org/x/sys/cpu"

// cpuid executes CPUID with EAX=leaf and ECX=sub.
func cpuid(leaf, sub uint32) (a, b, c, d uint32)

// hasSHA reports whether the CPU has the SHA extensions (SHA-NI), which
// golang.org/x/sys/cpu does not report: CPUID leaf 7, EBX bit 29. They are
// plain SSE instructions, so no OS support beyond SSE is needed.
func hasSHA() bool {
	if max, _, _, _ := cpuid(0, 0); max < 7 {
		return false
	}
	_, b, _, _ := cpuid(7, 0)
	return b&(1<<29) != 0 && cpu.X86.HasSSSE3 && cpu.X86.HasSSE41
}

// The generated kernels (shani_amd64.s, simd_amd64.s); see laneFunc.

//go:noescape
func shani1(c *consts, nonce uint32, batches uint64, top uint32, h7 *[32]uint32) (done uint64, hit bool)

//go:noescape
func shani2(c *consts, nonce uint32, batches uint64, top uint32, h7 *[32]uint32) (done uint64, hit bool)

//go:noescape
func shani3(c *consts, nonce uint32, batches uint64, top uint32, h7 *[32]uint32) (done uint64, hit bool)

//go:noescape
func shani4(c *consts, nonce uint32, batches uint64, top uint32, h7 *[32]uint32) (done uint64, hit bool)

//go:noescape
func shani4NoPre(c *consts, nonce uint32, batches uint64, top uint32, h7 *[32]uint32) (done uint64, hit bool)

//go:noescape
func avx2x8(c *consts, nonce uint32, batches uint64, top uint32, h7 *[32]uint32) (done uint64, hit bool)

//go:noescape
func avx512x16(c *consts, nonce uint32, batches uint64, top uint32, h7 *[32]uint32) (done uint64, hit bool)

//go:noescape
func avx512x16NoPre(c *consts, nonce uint32, batches uint64, top uint32, h7 *[32]uint32) (done uint64, hit bool)

//go:noescape
func avx512x16NoEarly(c *consts, nonce uint32, batches uint64, top uint32, h7 *[32]uint32) (done uint64, hit bool)

//go:noescape
func shani4NoEarly(c *consts, nonce uint32, batches uint64, top uint32, h7 *[32]uint32) (done uint64, hit bool)

//go:noescape
func shaniX6(c *consts, nonce uint32, batches uint64, top uint32, h7 *[32]uint32) (done uint64, hit bool)

//go:noescape
func shaniX4(c *consts, nonce uint32, batches uint64, top uint32, h7 *[32]uint32) (done uint64, hit bool)

// Generated functions a laneKernel can run.
const (
	idSHANI1 = iota
	idSHANI2
	idSHANI3
	idSHANI4
	idSHANI4NoPre
	idSHANI4NoEarly
	idAVX2
	idAVX512
	idAVX512NoPre
	idAVX512NoEarly
	idSHANIX4
	idSHANIX6
)

// run calls the kernel's generated function directly (not through a func
// value, which would make h7 escape and allocate).
func (k *laneKernel) run(c *consts, nonce uint32, batches uint64, top uint32, h7 *[32]uint32) (uint64, bool) {
	switch k.id {
	case idSHANI1:
		return shani1(c, nonce, batches, top, h7)
	case idSHANI2:
		return shani2(c, nonce, batches, top, h7)
	case idSHANI3:
		return shani3(c, nonce, batches, top, h7)
	case idSHANI4:
		return shani4(c, nonce, batches, top, h7)
	case idSHANI4NoPre:
		return shani4NoPre(c, nonce, batches, top, h7)
	case idSHANI4NoEarly:
		return shani4NoEarly(c, nonce, batches, top, h7)
	case idAVX2:
		return avx2x8(c, nonce, batches, top, h7)
	case idAVX512:
		return avx512x16(c, nonce, batches, top, h7)
	case idAVX512NoPre:
		return avx512x16NoPre(c, nonce, batches, top, h7)
	case idAVX512NoEarly:
		return avx512x16NoEarly(c, nonce, batches, top, h7)
	case idSHANIX4:
		return shaniX4(c, nonce, batches, top, h7)
	case idSHANIX6:
		return shaniX6(c, nonce, batches, top, h7)
	}
	panic("hasher: bad kernel id")
}

var (
	shaniKernel   = &laneKernel{name: "sha-ni", lanes: 3, id: idSHANI3}
	shaniX4Kernel = &laneKernel{name: "sha-ni-x4", lanes: 4, id: idSHANIX4}
	avx2Kernel    = &laneKernel{name: "avx2", lanes: 8, id: idAVX2}
	avx512Kernel  = &laneKernel{name: "avx512", lanes: 16, id: idAVX512}
)

// features is what the amd64 kernels need from the CPU and OS. detect
// reads it from the CPU; golang.org/x/sys/cpu honours
// GODEBUG=cpu.avx2=off (and cpu.avx=off, cpu.avx512f=off), which is how
// a machine without a feature is imitated.
type features struct {
	sha, avx, avx2, avx512 bool
}

func detect() features {
	return features{
		sha:    hasSHA(),
		avx:    cpu.X86.HasAVX,
		avx2:   cpu.X86.HasAVX2,
		avx512: cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW,
	}
}

// archKernels lists the amd64 kernels this CPU and OS support, slowest
// first.
func archKernels() []Kernel { return kernelsFor(detect()) }

// kernelsFor lists the amd64 kernels a CPU with f supports, in the order
// they usually rank (slowest first); Fastest measures the real order.
func kernelsFor(f features) []Kernel {
	// On the AMD EPYC (Zen 5) we measure on, AVX-512 leads, then
	// sha-ni-x4, sha-ni and AVX2; without AVX-512 the SHA-NI kernels lead.
	// See docs/hashing.md.
	var ks []Kernel
	if f.avx2 {
		ks = append(ks, avx2Kernel)
	}
	if f.sha {
		ks = append(ks, shaniKernel)
		if f.avx {
			ks = append(ks, shaniX4Kernel)
		}
	}
	if f.avx512 {
		ks = append(ks, avx512Kernel)
	}
	return ks
}
