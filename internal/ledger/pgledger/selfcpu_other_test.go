//go:build !unix

package pgledger

import "time"

// selfCPU is not measured on this system: the benchmark reports 0 for
// the client's CPU.
func selfCPU() time.Duration { return 0 }
