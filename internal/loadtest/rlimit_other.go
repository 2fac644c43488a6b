//go:build !unix

package loadtest

// windowsHandleLimit is the per-process handle limit of Windows (2^24),
// which bounds its sockets in place of an open-file limit.
const windowsHandleLimit = 1 << 24

// RaiseFileLimit returns the number of sockets the process may hold.
// Systems without an open-file limit (Windows) have nothing to raise.
func RaiseFileLimit() (uint64, error) {
	return windowsHandleLimit, nil
}
