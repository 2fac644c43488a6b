// The messages of the Job Declaration protocol (specification chapter 6),
// field by field in the order of the specification. A Job Declaration
// connection starts with the common SetupConnection, protocol
// ProtocolJobDeclaration.

package sv2

// Protocol numbers of SetupConnection.protocol.
const (
	ProtocolMining         uint8 = 0
	ProtocolJobDeclaration uint8 = 1
)

// FlagDeclareTxData is the Job Declaration SetupConnection flag
// DECLARE_TX_DATA (bit 0): the client agrees to reveal its template's
// transactions (Full-Template mode).
const FlagDeclareTxData uint32 = 1 << 0

// Message type numbers of the Job Declaration protocol.
const (
	TypeAllocateMiningJobToken            uint8 = 0x50
	TypeAllocateMiningJobTokenSuccess     uint8 = 0x51
	TypeProvideMissingTransactions        uint8 = 0x55
	TypeProvideMissingTransactionsSuccess uint8 = 0x56
	TypeDeclareMiningJob                  uint8 = 0x57
	TypeDeclareMiningJobSuccess           uint8 = 0x58
	TypeDeclareMiningJobError             uint8 = 0x59
	TypePushSolution                      uint8 = 0x60
)

func init() {
	for t, n := range map[uint8]string{
		TypeAllocateMiningJobToken:            "AllocateMiningJobToken",
		TypeAllocateMiningJobTokenSuccess:     "AllocateMiningJobTokenSuccess",
		TypeProvideMissingTransactions:        "ProvideMissingTransactions",
		TypeProvideMissingTransactionsSuccess: "ProvideMissingTransactionsSuccess",
		TypeDeclareMiningJob:                  "DeclareMiningJob",
		TypeDeclareMiningJobSuccess:           "DeclareMiningJobSuccess",
		TypeDeclareMiningJobError:             "DeclareMiningJobError",
		TypePushSolution:                      "PushSolution",
	} {
		messageNames[t] = n
	}
}

// newJDMessage returns a zero Job Declaration message of type t, or nil.
func newJDMessage(t uint8) Message {
	switch t {
	case TypeAllocateMiningJobToken:
		return new(AllocateMiningJobToken)
	case TypeAllocateMiningJobTokenSuccess:
		return new(AllocateMiningJobTokenSuccess)
	case TypeProvideMissingTransactions:
		return new(ProvideMissingTransactions)
	case TypeProvideMissingTransactionsSuccess:
		return new(ProvideMissingTransactionsSuccess)
	case TypeDeclareMiningJob:
		return new(DeclareMiningJob)
	case TypeDeclareMiningJobSuccess:
		return new(DeclareMiningJobSuccess)
	case TypeDeclareMiningJobError:
		return new(DeclareMiningJobError)
	case TypePushSolution:
		return new(PushSolution)
	}
	return nil
}

// AllocateMiningJobToken (type 0x50) asks the Job Declarator Server for a token.
type AllocateMiningJobToken struct {
	UserIdentifier string // user_identifier STR0_255
	RequestID      uint32 // request_id U32
}

// MsgType returns 0x50.
func (*AllocateMiningJobToken) MsgType() uint8 { return TypeAllocateMiningJobToken }

func (m *AllocateMiningJobToken) encode(e *enc) {
	e.str(m.UserIdentifier)
	e.u32(m.RequestID)
}

func (m *AllocateMiningJobToken) decode(d *dec) {
	m.UserIdentifier = d.str("user_identifier")
	m.RequestID = d.u32("request_id")
}

func (m *AllocateMiningJobToken) check(l *lengths) {
	l.check("user_identifier", len(m.UserIdentifier), MaxB0255)
}

// AllocateMiningJobTokenSuccess (type 0x51) grants a token and the outputs
// the pool requires in the coinbase (a CompactSize-prefixed array of
// consensus-serialized outputs).
type AllocateMiningJobTokenSuccess struct {
	RequestID         uint32 // request_id U32
	MiningJobToken    []byte // mining_job_token B0_255
	CoinbaseTxOutputs []byte // coinbase_tx_outputs B0_64K
}

// MsgType returns 0x51.
func (*AllocateMiningJobTokenSuccess) MsgType() uint8 { return TypeAllocateMiningJobTokenSuccess }

func (m *AllocateMiningJobTokenSuccess) encode(e *enc) {
	e.u32(m.RequestID)
	e.b0255(m.MiningJobToken)
	e.b064k(m.CoinbaseTxOutputs)
}

func (m *AllocateMiningJobTokenSuccess) decode(d *dec) {
	m.RequestID = d.u32("request_id")
	m.MiningJobToken = d.b0255("mining_job_token")
	m.CoinbaseTxOutputs = d.b064k("coinbase_tx_outputs")
}

func (m *AllocateMiningJobTokenSuccess) check(l *lengths) {
	l.check("mining_job_token", len(m.MiningJobToken), MaxB0255)
	l.check("coinbase_tx_outputs", len(m.CoinbaseTxOutputs), MaxB064K)
}

// ProvideMissingTransactions (type 0x55) asks the client for the
// transactions at these positions of its DeclareMiningJob's wtxid_list.
type ProvideMissingTransactions struct {
	RequestID             uint32   // request_id U32
	UnknownTxPositionList []uint16 // unknown_tx_position_list SEQ0_64K[U16]
}

// MsgType returns 0x55.
func (*ProvideMissingTransactions) MsgType() uint8 { return TypeProvideMissingTransactions }

func (m *ProvideMissingTransactions) encode(e *enc) {
	e.u32(m.RequestID)
	e.u16(uint16(len(m.UnknownTxPositionList)))
	for _, p := range m.UnknownTxPositionList {
		e.u16(p)
	}
}

func (m *ProvideMissingTransactions) decode(d *dec) {
	m.RequestID = d.u32("request_id")
	n := int(d.u16("unknown_tx_position_list length"))
	if d.err != nil {
		return
	}
	if len(d.b)-d.off < 2*n {
		d.take("unknown_tx_position_list", 2*n)
		return
	}
	m.UnknownTxPositionList = make([]uint16, n)
	for i := range m.UnknownTxPositionList {
		m.UnknownTxPositionList[i] = d.u16("unknown_tx_position_list")
	}
}

func (m *ProvideMissingTransactions) check(l *lengths) {
	l.check("unknown_tx_position_list", len(m.UnknownTxPositionList), maxSeq64K)
}

// ProvideMissingTransactionsSuccess (type 0x56) carries the transactions
// asked for, in the order asked.
type ProvideMissingTransactionsSuccess struct {
	RequestID       uint32   // request_id U32
	TransactionList [][]byte // transaction_list SEQ0_64K[B0_16M]
}

// MsgType returns 0x56.
func (*ProvideMissingTransactionsSuccess) MsgType() uint8 {
	return TypeProvideMissingTransactionsSuccess
}

func (m *ProvideMissingTransactionsSuccess) encode(e *enc) {
	e.u32(m.RequestID)
	e.u16(uint16(len(m.TransactionList)))
	for _, tx := range m.TransactionList {
		e.b016m(tx)
	}
}

func (m *ProvideMissingTransactionsSuccess) decode(d *dec) {
	m.RequestID = d.u32("request_id")
	n := int(d.u16("transaction_list length"))
	// Each entry takes at least its 3 length bytes: a count the payload
	// cannot hold is refused before anything is allocated for it.
	if d.err != nil {
		return
	}
	if len(d.b)-d.off < 3*n {
		d.take("transaction_list", 3*n)
		return
	}
	m.TransactionList = make([][]byte, 0, n)
	for range n {
		tx := d.b016m("transaction_list entry")
		if d.err != nil {
			return
		}
		m.TransactionList = append(m.TransactionList, tx)
	}
}

func (m *ProvideMissingTransactionsSuccess) check(l *lengths) {
	l.check("transaction_list", len(m.TransactionList), maxSeq64K)
	for _, tx := range m.TransactionList {
		l.check("transaction_list entry", len(tx), MaxB016M)
	}
}

// DeclareMiningJob (type 0x57) declares a template under a token: the
// coinbase around its extranonce (with its BIP 141 fields) and the wtxids
// of its other transactions.
type DeclareMiningJob struct {
	RequestID        uint32 // request_id U32
	MiningJobToken   []byte // mining_job_token B0_255
	Version          uint32 // version U32
	CoinbaseTxPrefix []byte // coinbase_tx_prefix B0_64K
	CoinbaseTxSuffix []byte // coinbase_tx_suffix B0_64K
	WtxidList        []U256 // wtxid_list SEQ0_64K[U256]
	ExcessData       []byte // excess_data B0_64K
}

// MsgType returns 0x57.
func (*DeclareMiningJob) MsgType() uint8 { return TypeDeclareMiningJob }

func (m *DeclareMiningJob) encode(e *enc) {
	e.u32(m.RequestID)
	e.b0255(m.MiningJobToken)
	e.u32(m.Version)
	e.b064k(m.CoinbaseTxPrefix)
	e.b064k(m.CoinbaseTxSuffix)
	e.u16(uint16(len(m.WtxidList)))
	for i := range m.WtxidList {
		e.u256(&m.WtxidList[i])
	}
	e.b064k(m.ExcessData)
}

func (m *DeclareMiningJob) decode(d *dec) {
	m.RequestID = d.u32("request_id")
	m.MiningJobToken = d.b0255("mining_job_token")
	m.Version = d.u32("version")
	m.CoinbaseTxPrefix = d.b064k("coinbase_tx_prefix")
	m.CoinbaseTxSuffix = d.b064k("coinbase_tx_suffix")
	n := int(d.u16("wtxid_list length"))
	if d.err == nil {
		if len(d.b)-d.off < 32*n {
			d.take("wtxid_list", 32*n)
		} else {
			m.WtxidList = make([]U256, n)
			for i := range m.WtxidList {
				m.WtxidList[i] = d.u256("wtxid_list")
			}
		}
	}
	m.ExcessData = d.b064k("excess_data")
}

func (m *DeclareMiningJob) check(l *lengths) {
	l.check("mining_job_token", len(m.MiningJobToken), MaxB0255)
	l.check("coinbase_tx_prefix", len(m.CoinbaseTxPrefix), MaxB064K)
	l.check("coinbase_tx_suffix", len(m.CoinbaseTxSuffix), MaxB064K)
	l.check("wtxid_list", len(m.WtxidList), maxSeq64K)
	l.check("excess_data", len(m.ExcessData), MaxB064K)
}

// DeclareMiningJobSuccess (type 0x58) accepts a declaration and names the
// token for SetCustomMiningJob.
type DeclareMiningJobSuccess struct {
	RequestID         uint32 // request_id U32
	NewMiningJobToken []byte // new_mining_job_token B0_255
}

// MsgType returns 0x58.
func (*DeclareMiningJobSuccess) MsgType() uint8 { return TypeDeclareMiningJobSuccess }

func (m *DeclareMiningJobSuccess) encode(e *enc) {
	e.u32(m.RequestID)
	e.b0255(m.NewMiningJobToken)
}

func (m *DeclareMiningJobSuccess) decode(d *dec) {
	m.RequestID = d.u32("request_id")
	m.NewMiningJobToken = d.b0255("new_mining_job_token")
}

func (m *DeclareMiningJobSuccess) check(l *lengths) {
	l.check("new_mining_job_token", len(m.NewMiningJobToken), MaxB0255)
}

// DeclareMiningJobError (type 0x59) refuses a declaration.
type DeclareMiningJobError struct {
	RequestID    uint32 // request_id U32
	ErrorCode    string // error_code STR0_255
	ErrorDetails []byte // error_details B0_64K
}

// MsgType returns 0x59.
func (*DeclareMiningJobError) MsgType() uint8 { return TypeDeclareMiningJobError }

func (m *DeclareMiningJobError) encode(e *enc) {
	e.u32(m.RequestID)
	e.str(m.ErrorCode)
	e.b064k(m.ErrorDetails)
}

func (m *DeclareMiningJobError) decode(d *dec) {
	m.RequestID = d.u32("request_id")
	m.ErrorCode = d.str("error_code")
	m.ErrorDetails = d.b064k("error_details")
}

func (m *DeclareMiningJobError) check(l *lengths) {
	l.check("error_code", len(m.ErrorCode), MaxB0255)
	l.check("error_details", len(m.ErrorDetails), MaxB064K)
}

// PushSolution (type 0x60) hands the server a solved header of the last
// job declared on the connection, for it to assemble and submit the block.
type PushSolution struct {
	Extranonce []byte // extranonce B0_32 (the full extranonce)
	PrevHash   U256   // prev hash U256
	Nonce      uint32 // nonce U32
	NTime      uint32 // ntime U32
	NBits      uint32 // nbits U32
	Version    uint32 // version U32
}

// MsgType returns 0x60.
func (*PushSolution) MsgType() uint8 { return TypePushSolution }

func (m *PushSolution) encode(e *enc) {
	e.b032(m.Extranonce)
	e.u256(&m.PrevHash)
	e.u32(m.Nonce)
	e.u32(m.NTime)
	e.u32(m.NBits)
	e.u32(m.Version)
}

func (m *PushSolution) decode(d *dec) {
	m.Extranonce = d.b032("extranonce")
	m.PrevHash = d.u256("prev hash")
	m.Nonce = d.u32("nonce")
	m.NTime = d.u32("ntime")
	m.NBits = d.u32("nbits")
	m.Version = d.u32("version")
}

func (m *PushSolution) check(l *lengths) {
	l.check("extranonce", len(m.Extranonce), MaxB032)
}
