// Package hasher scans nonce ranges of a Bitcoin block header for double
// SHA-256 hashes that meet a target. Kernels differ only in speed: every
// one returns exactly the nonces the reference (crypto/sha256) finds.
package hasher

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	"github.com/powcoord/powcoord/internal/chainmath"
)

// Job is one header to scan: bytes 0..75 fixed, the nonce (76..79) varied.
type Job struct {
	Header [chainmath.HeaderSize]byte
	Target chainmath.Target
}

// NewJob prepares header (its nonce field is ignored) for scanning against
// target.
func NewJob(header *[chainmath.HeaderSize]byte, target chainmath.Target) *Job {
	return &Job{Header: *header, Target: target}
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

type stdlibKernel struct{}

func (stdlibKernel) Name() string { return "stdlib" }

func (stdlibKernel) Scan(j *Job, start uint32, count uint64, out []uint32) int {
	hdr := j.Header
	n := 0
	for i := uint64(0); i < count; i++ {
		nonce := start + uint32(i)
		binary.LittleEndian.PutUint32(hdr[76:], nonce)
		first := sha256.Sum256(hdr[:])
		h := chainmath.Hash(sha256.Sum256(first[:]))
		if j.Target.Meets(&h) {
			if n < len(out) {
				out[n] = nonce
			}
			n++
		}
	}
	return min(n, len(out))
}

// Available lists the kernels this CPU can run, the reference first.
func Available() []Kernel {
	return []Kernel{stdlibKernel{}}
}

// Default returns the fastest available kernel.
func Default() Kernel {
	k := Available()
	return k[len(k)-1]
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
	return nil, fmt.Errorf("kernel %q: not available on this CPU (available: %v)", name, names)
}
