//go:build !(linux || darwin || freebsd || openbsd)

package hasher

// threadCPU reports that this OS's per-thread CPU time is not read here.
func threadCPU() (nanoseconds int64, ok bool) { return 0, false }
