//go:build unix

package loadtest

import (
	"time"

	"golang.org/x/sys/unix"
)

// selfCPU is the user+system CPU this process has used (0 if unknown).
func selfCPU() time.Duration {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
