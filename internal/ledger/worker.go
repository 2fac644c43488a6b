package ledger

// What a worker name may be: the rule every protocol applies at authorize
// and channel open, and every ledger driver before it stores a share.

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxWorkerLen is the longest worker name, in bytes, a miner may
// authorize with. The longest standard Bitcoin address is 62 characters
// (bech32 P2WSH and P2TR; BIP 173 bounds any bech32 string at 90), so 128
// bytes leaves at least 37 bytes for the ".worker" part after the longest
// possible address, more than any miner firmware sends, while keeping one
// name's cost in every per-worker table, share row and log line small.
const MaxWorkerLen = 128

// CheckWorker reports why name cannot be a worker name, nil when it can.
// A worker name is 1 to MaxWorkerLen bytes of valid UTF-8 without control
// characters (C0, DEL and C1, NUL among them): a name every ledger can
// store as text and every log and dashboard can print. Both protocols
// check it where a miner names itself (Stratum V1 mining.authorize,
// Stratum V2 channel open), so a share of a name no ledger can store is
// never acknowledged.
func CheckWorker(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("worker name is empty")
	case len(name) > MaxWorkerLen:
		return fmt.Errorf("worker name %.40q... is %d bytes: at most %d", name, len(name), MaxWorkerLen)
	case !utf8.ValidString(name):
		return fmt.Errorf("worker name %q is not valid UTF-8", name)
	}
	if i := strings.IndexFunc(name, unicode.IsControl); i >= 0 {
		r, _ := utf8.DecodeRuneInString(name[i:])
		return fmt.Errorf("worker name %q has control character %U at byte %d", name, r, i)
	}
	return nil
}

// Printable returns s when it is valid UTF-8 without control characters,
// otherwise s quoted as a Go string literal of printable ASCII
// (strconv.QuoteToASCII). A record derived from a name that slipped past
// CheckWorker (an older front-end, a message from elsewhere) is then
// stored under a readable label instead of being refused for ever.
func Printable(s string) string {
	if utf8.ValidString(s) && strings.IndexFunc(s, unicode.IsControl) < 0 {
		return s
	}
	return strconv.QuoteToASCII(s)
}
