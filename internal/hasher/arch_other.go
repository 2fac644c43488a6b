//go:build !amd64

package hasher

// archKernels lists the architecture-specific kernels this CPU supports,
// slowest first. There are none outside amd64.
func archKernels() []Kernel { return nil }

// run is never reached: no laneKernel exists outside amd64.
func (k *laneKernel) run(c *consts, nonce uint32, batches uint64, top uint32, h7 *[32]uint32) (uint64, bool) {
	panic("hasher: no " + k.name + " kernel on this architecture")
}
