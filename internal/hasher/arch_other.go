//go:build !amd64

package hasher

// archKernels lists the architecture-specific kernels this CPU supports,
// slowest first. There are none outside amd64.
func archKernels() []Kernel { return nil }
