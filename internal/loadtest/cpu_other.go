//go:build !unix

package loadtest

import "time"

// selfCPU is 0 where there is no getrusage: the report leaves the load
// generator's CPU out.
func selfCPU() time.Duration { return 0 }
