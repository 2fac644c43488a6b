//go:build !unix

package loadtest

// selfCPU is 0 where there is no getrusage: the report leaves the load
// generator's CPU out.
func selfCPU() cpuTime { return cpuTime{} }
