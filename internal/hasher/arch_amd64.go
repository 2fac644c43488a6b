//go:build amd64

package hasher

func archKernels() []Kernel { return nil }
