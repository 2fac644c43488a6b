//go:build amd64

package hasher

import (
	"math/rand/v2"
	"slices"
	"testing"

	"golang.org/x/sys/cpu"
)

// variants are the generated amd64 functions that no kernel name selects
// (other interleave widths, trick-less versions), tested like kernels.
func variants() []Kernel {
	var ks []Kernel
	if hasSHA() {
		ks = append(ks,
			&laneKernel{name: "sha-ni-1", lanes: 1, id: idSHANI1},
			&laneKernel{name: "sha-ni-2", lanes: 2, id: idSHANI2},
			&laneKernel{name: "sha-ni-3", lanes: 3, id: idSHANI3},
			&laneKernel{name: "sha-ni-4", lanes: 4, id: idSHANI4},
			&laneKernel{name: "sha-ni-4-no-precompute", lanes: 4, id: idSHANI4NoPre},
			&laneKernel{name: "sha-ni-4-no-early-exit", lanes: 4, id: idSHANI4NoEarly},
		)
		if cpu.X86.HasAVX {
			ks = append(ks,
				&laneKernel{name: "sha-ni-x6", lanes: 6, id: idSHANIX6},
			)
		}
	}
	if cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW {
		ks = append(ks,
			&laneKernel{name: "avx512", lanes: 16, id: idAVX512},
			&laneKernel{name: "avx512-no-precompute", lanes: 16, id: idAVX512NoPre},
			&laneKernel{name: "avx512-no-early-exit", lanes: 16, id: idAVX512NoEarly},
		)
	}
	return ks
}

func TestVariantsAgreeWithReference(t *testing.T) {
	vs := variants()
	if len(vs) == 0 {
		t.Skip("this CPU has neither SHA-NI nor AVX-512")
	}
	r := rand.New(rand.NewPCG(11, 12))
	for _, k := range vs {
		t.Run(k.Name(), func(t *testing.T) {
			for range 3 {
				hdr := randHeader(r)
				for _, c := range scanCases(r) {
					checkKernel(t, k, NewJob(hdr, c.target), c)
				}
			}
		})
	}
}

func TestKernelsOffered(t *testing.T) {
	names := map[string]bool{}
	for _, k := range Available() {
		names[k.Name()] = true
	}
	if hasSHA() != names["sha-ni"] {
		t.Errorf("SHA-NI present %v, sha-ni kernel offered %v", hasSHA(), names["sha-ni"])
	}
	for _, n := range []string{"avx2", "avx512", "sha-ni"} {
		if !names[n] {
			t.Logf("kernel %s skipped: not supported by this CPU", n)
		}
	}
}

func archTricks(b *testing.B, j *Job, run func(string, func(uint32) bool)) {
	for _, k := range variants() {
		b.Run(k.Name(), func(b *testing.B) {
			out := make([]uint32, 16)
			nonce := uint32(0)
			for b.Loop() {
				k.Scan(j, nonce, benchChunk, out)
				nonce += benchChunk
			}
			b.ReportMetric(float64(b.N)*benchChunk/b.Elapsed().Seconds()/1e6, "MH/s")
		})
	}
}

// TestKernelSelectionByFeatures pins which kernels a CPU gets for its
// features, so that the choice on a machine without SHA-NI (or without
// AVX for sha-ni-x4) is checked on any amd64 machine, this one included.
func TestKernelSelectionByFeatures(t *testing.T) {
	for _, c := range []struct {
		f    features
		want []string
	}{
		{features{}, nil},
		{features{avx: true, avx2: true}, []string{"avx2"}},
		{features{sha: true}, []string{"sha-ni"}},
		{features{sha: true, avx: true}, []string{"sha-ni", "sha-ni-x4"}},
		{features{sha: true, avx: true, avx2: true}, []string{"avx2", "sha-ni", "sha-ni-x4"}},
		{features{avx: true, avx2: true, avx512: true}, []string{"avx2", "avx512"}},
		{features{sha: true, avx: true, avx2: true, avx512: true}, []string{"avx2", "sha-ni", "sha-ni-x4", "avx512"}},
	} {
		var got []string
		for _, k := range kernelsFor(c.f) {
			got = append(got, k.Name())
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("features %+v: kernels %v, want %v", c.f, got, c.want)
		}
	}
	if got, want := kernelsFor(detect()), archKernels(); !slices.Equal(got, want) {
		t.Errorf("archKernels %v is not kernelsFor(detect()) %v", want, got)
	}
}
