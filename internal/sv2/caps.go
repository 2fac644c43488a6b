package sv2

import (
	"fmt"
	"io"
	"slices"
)

// Caps says how large a received frame's payload may be: for each core
// message type the sending side may send, the largest payload the message
// definitions allow; for everything else (extension frames, core types
// that side never sends) the largest of those. A frame over its cap is
// refused on its header, before a byte of payload is read.
type Caps struct {
	name  string
	types [256]int // 0: not sent by this side, the other cap applies
	other int
}

// Largest payloads of the core messages: every variable-length field at
// its data type's limit (STR0_255 and B0_255: 1+255 bytes, B0_32: 1+32,
// B0_64K: 2+65535, SEQ0_255[U256]: 1+255·32, SEQ0_64K[U32]: 2+65535·4,
// OPTION[U32]: 1+4). TestMaxPayloadsFromDefinitions encodes each maximal
// message and checks these sums.
const (
	maxSetupConnection = 1 + 2 + 2 + 4 + 256 + 2 + 4*256 // 1,291
	maxOpenStandard    = 4 + 256 + 4 + 32                // 296
	maxOpenExtended    = 4 + 256 + 4 + 32 + 2            // 298
	maxUpdateChannel   = 4 + 4 + 32                      // 40
	maxCloseChannel    = 4 + 256                         // 260
	maxSubmitStandard  = 6 * 4                           // 24
	maxSubmitExtended  = 6*4 + 33                        // 57
	// SetCustomMiningJob's 74,274 bytes are its own cap only: the cap of
	// other frames from a miner stays 1,291 (see fromMiner).
	maxSetCustomMiningJob = 4 + 4 + 256 + 4 + 32 + 4 + 4 + 4 + 256 + 4 + (2 + 65535) + 4 + (1 + 255*32)

	maxSetupConnectionSuccess  = 2 + 4
	maxSetupConnectionError    = 4 + 256
	maxChannelEndpointChanged  = 4
	maxReconnect               = 256 + 2
	maxOpenStandardSuccess     = 4 + 4 + 32 + 33 + 4
	maxOpenMiningChannelError  = 4 + 256
	maxOpenExtendedSuccess     = 4 + 4 + 32 + 2 + 33 + 4
	maxNewMiningJob            = 4 + 4 + 5 + 4 + 32
	maxUpdateChannelError      = 4 + 256
	maxSetExtranoncePrefix     = 4 + 33
	maxSubmitSharesSuccess     = 4 + 4 + 4 + 8
	maxSubmitSharesError       = 4 + 4 + 256
	maxNewExtendedMiningJob    = 4 + 4 + 5 + 4 + 1 + (1 + 255*32) + 2*(2+65535) // 139,253
	maxSetNewPrevHash          = 4 + 4 + 32 + 4 + 4
	maxSetTarget               = 4 + 32
	maxSetCustomMiningJobOK    = 4 + 4 + 4
	maxSetCustomMiningJobError = 4 + 4 + 256
	maxSetGroupChannel         = 4 + 2 + 65535*4 // 262,146

	// Job Declaration. ProvideMissingTransactions.Success could in
	// theory carry 65,535 transactions of 16 MB each; a block holds at
	// most 4,000,000 bytes of transactions, so its cap is that plus the
	// fixed fields and 3 length bytes for each of the 65,535 entries.
	maxAllocateToken        = 256 + 4
	maxDeclareMiningJob     = 4 + 256 + 4 + 2*(2+65535) + (2 + 65535*32) + (2 + 65535) // 2,293,997
	maxProvideTxsSuccess    = 4 + 2 + 3*65535 + 4_000_000                              // 4,196,611
	maxPushSolution         = 33 + 32 + 4*4
	maxAllocateTokenSuccess = 4 + 256 + 2 + 65535
	maxProvideMissingTxs    = 4 + 2 + 2*65535
	maxDeclareSuccess       = 4 + 256
	maxDeclareError         = 4 + 256 + 2 + 65535
)

var (
	fromMiner = newCaps("from a miner", map[uint8]int{
		TypeSetupConnection:           maxSetupConnection,
		TypeOpenStandardMiningChannel: maxOpenStandard,
		TypeOpenExtendedMiningChannel: maxOpenExtended,
		TypeUpdateChannel:             maxUpdateChannel,
		TypeCloseChannel:              maxCloseChannel,
		TypeSubmitSharesStandard:      maxSubmitStandard,
		TypeSubmitSharesExtended:      maxSubmitExtended,
	})
	fromPool = newCaps("from a pool", map[uint8]int{
		TypeSetupConnectionSuccess:           maxSetupConnectionSuccess,
		TypeSetupConnectionError:             maxSetupConnectionError,
		TypeChannelEndpointChanged:           maxChannelEndpointChanged,
		TypeReconnect:                        maxReconnect,
		TypeOpenStandardMiningChannelSuccess: maxOpenStandardSuccess,
		TypeOpenMiningChannelError:           maxOpenMiningChannelError,
		TypeOpenExtendedMiningChannelSuccess: maxOpenExtendedSuccess,
		TypeNewMiningJob:                     maxNewMiningJob,
		TypeUpdateChannelError:               maxUpdateChannelError,
		TypeCloseChannel:                     maxCloseChannel,
		TypeSetExtranoncePrefix:              maxSetExtranoncePrefix,
		TypeSubmitSharesSuccess:              maxSubmitSharesSuccess,
		TypeSubmitSharesError:                maxSubmitSharesError,
		TypeNewExtendedMiningJob:             maxNewExtendedMiningJob,
		TypeSetNewPrevHash:                   maxSetNewPrevHash,
		TypeSetTarget:                        maxSetTarget,
		TypeSetCustomMiningJobSuccess:        maxSetCustomMiningJobOK,
		TypeSetCustomMiningJobError:          maxSetCustomMiningJobError,
		TypeSetGroupChannel:                  maxSetGroupChannel,
	})
	fromJDClient = newCaps("from a job declarator client", map[uint8]int{
		TypeSetupConnection:                   maxSetupConnection,
		TypeAllocateMiningJobToken:            maxAllocateToken,
		TypeDeclareMiningJob:                  maxDeclareMiningJob,
		TypeProvideMissingTransactionsSuccess: maxProvideTxsSuccess,
		TypePushSolution:                      maxPushSolution,
	})
	fromJDServer = newCaps("from a job declarator server", map[uint8]int{
		TypeSetupConnectionSuccess:        maxSetupConnectionSuccess,
		TypeSetupConnectionError:          maxSetupConnectionError,
		TypeAllocateMiningJobTokenSuccess: maxAllocateTokenSuccess,
		TypeProvideMissingTransactions:    maxProvideMissingTxs,
		TypeDeclareMiningJobSuccess:       maxDeclareSuccess,
		TypeDeclareMiningJobError:         maxDeclareError,
	})
)

func init() {
	// A miner that declared REQUIRES_WORK_SELECTION sends
	// SetCustomMiningJob: its own cap, without raising the cap of every
	// other frame a miner sends.
	fromMiner.types[TypeSetCustomMiningJob] = maxSetCustomMiningJob
	// Unknown frames on a Job Declaration connection: the largest
	// fixed-size cap, not the 4 MB of ProvideMissingTransactions.Success.
	fromJDClient.other = maxSetupConnection
}

// FromJDClient returns the caps of what a Job Declarator Server receives:
// each client message's own maximum (4,196,611 bytes for
// ProvideMissingTransactions.Success, 2,293,997 for DeclareMiningJob) and
// 1,291 bytes for any other frame.
func FromJDClient() *Caps { return fromJDClient }

// FromJDServer returns the caps of what a Job Declarator Client receives:
// each server message's own maximum, the largest (131,076 bytes,
// ProvideMissingTransactions) for any other frame.
func FromJDServer() *Caps { return fromJDServer }

func newCaps(name string, types map[uint8]int) *Caps {
	c := &Caps{name: name}
	for t, n := range types {
		c.types[t] = n
		c.other = max(c.other, n)
	}
	return c
}

// FromMiner returns the caps of what a pool receives: 1,291 bytes
// (SetupConnection with every string at 255 bytes) for any frame, and
// each miner message's own maximum, e.g. 57 bytes for
// SubmitSharesExtended.
func FromMiner() *Caps { return fromMiner }

// FromPool returns the caps of what a miner receives: 262,146 bytes
// (SetGroupChannel with 65,535 channel ids) for any frame, and each pool
// message's own maximum, e.g. 139,253 bytes for NewExtendedMiningJob.
func FromPool() *Caps { return fromPool }

// UniformCaps returns caps of n bytes for every frame.
func UniformCaps(n int) *Caps {
	return &Caps{name: fmt.Sprintf("uniform %d", n), other: n}
}

// Limit returns the largest payload accepted in a frame with header h.
func (c *Caps) Limit(h Header) int {
	if h.Extension() == 0 {
		if n := c.types[h.MsgType]; n > 0 {
			return n
		}
	}
	return c.other
}

// check refuses h if its msg_length is over the cap, naming the message,
// the length and the cap.
func (c *Caps) check(h Header) error {
	if limit := c.Limit(h); int(h.Length) > limit {
		what := MessageName(h.MsgType)
		if h.Extension() != 0 {
			what = fmt.Sprintf("extension 0x%04x message 0x%02x", h.Extension(), h.MsgType)
		}
		return fmt.Errorf("sv2: %s: msg_length %d over the cap %d for frames %s: %w", what, h.Length, limit, c.name, ErrFrameTooLarge)
	}
	return nil
}

// readGrowing reads exactly n bytes into buf's storage, growing it as
// bytes arrive (doubling from 512 bytes), so that a header claiming n
// bytes costs memory in proportion to the bytes actually sent, not to n.
// io.EOF before n bytes is io.ErrUnexpectedEOF.
func readGrowing(r io.Reader, buf []byte, n int) ([]byte, error) {
	buf = buf[:0]
	for len(buf) < n {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, min(max(cap(buf), 512), n-len(buf)))
		}
		k, err := r.Read(buf[len(buf):min(cap(buf), n)])
		buf = buf[:len(buf)+k]
		if err != nil && len(buf) < n {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return buf, err
		}
	}
	return buf, nil
}
