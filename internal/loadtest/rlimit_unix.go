//go:build unix

package loadtest

import "syscall"

// RaiseFileLimit raises the soft open-file limit as far as the hard
// limit and returns the soft limit in force afterwards. Where the system
// refuses the hard limit (macOS caps it below an unlimited hard limit),
// the limit is left as it was and returned without an error: the caller
// compares it with the sessions it wants.
func RaiseFileLimit() (uint64, error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, err
	}
	cur := rl.Cur
	rl.Cur = rl.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return uint64(cur), nil
	}
	return uint64(rl.Cur), nil
}
