//go:build unix

package loadtest

import (
	"time"

	"golang.org/x/sys/unix"
)

// selfCPU is the CPU this process has used, in all and in the kernel
// (0 if unknown).
func selfCPU() cpuTime {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_SELF, &ru) != nil {
		return cpuTime{}
	}
	sys := time.Duration(ru.Stime.Nano())
	return cpuTime{total: time.Duration(ru.Utime.Nano()) + sys, sys: sys}
}
