// The messages of the Common and Mining protocols, field by field in the
// order of the specification (docs/stratum-v2.md lists them with their
// types). Each field comment gives the wire name and data type.

package sv2

// Message type numbers (the msg_type byte of the frame header).
const (
	TypeSetupConnection                  uint8 = 0x00
	TypeSetupConnectionSuccess           uint8 = 0x01
	TypeSetupConnectionError             uint8 = 0x02
	TypeChannelEndpointChanged           uint8 = 0x03
	TypeReconnect                        uint8 = 0x04
	TypeOpenStandardMiningChannel        uint8 = 0x10
	TypeOpenStandardMiningChannelSuccess uint8 = 0x11
	TypeOpenMiningChannelError           uint8 = 0x12
	TypeOpenExtendedMiningChannel        uint8 = 0x13
	TypeOpenExtendedMiningChannelSuccess uint8 = 0x14
	TypeNewMiningJob                     uint8 = 0x15
	TypeUpdateChannel                    uint8 = 0x16
	TypeUpdateChannelError               uint8 = 0x17
	TypeCloseChannel                     uint8 = 0x18
	TypeSetExtranoncePrefix              uint8 = 0x19
	TypeSubmitSharesStandard             uint8 = 0x1a
	TypeSubmitSharesExtended             uint8 = 0x1b
	TypeSubmitSharesSuccess              uint8 = 0x1c
	TypeSubmitSharesError                uint8 = 0x1d
	TypeNewExtendedMiningJob             uint8 = 0x1f
	TypeSetNewPrevHash                   uint8 = 0x20
	TypeSetTarget                        uint8 = 0x21
	TypeSetCustomMiningJob               uint8 = 0x22
	TypeSetCustomMiningJobSuccess        uint8 = 0x23
	TypeSetCustomMiningJobError          uint8 = 0x24
	TypeSetGroupChannel                  uint8 = 0x25
)

// channelMsg says which message types travel with the channel_msg bit set.
var channelMsg = [256]bool{
	TypeChannelEndpointChanged:    true,
	TypeNewMiningJob:              true,
	TypeUpdateChannel:             true,
	TypeUpdateChannelError:        true,
	TypeCloseChannel:              true,
	TypeSetExtranoncePrefix:       true,
	TypeSubmitSharesStandard:      true,
	TypeSubmitSharesExtended:      true,
	TypeSubmitSharesSuccess:       true,
	TypeSubmitSharesError:         true,
	TypeNewExtendedMiningJob:      true,
	TypeSetNewPrevHash:            true,
	TypeSetTarget:                 true,
	TypeSetCustomMiningJob:        true,
	TypeSetCustomMiningJobSuccess: true,
	TypeSetCustomMiningJobError:   true,
}

// messageNames names each known message type for errors and logs.
var messageNames = [256]string{
	TypeSetupConnection:                  "SetupConnection",
	TypeSetupConnectionSuccess:           "SetupConnectionSuccess",
	TypeSetupConnectionError:             "SetupConnectionError",
	TypeChannelEndpointChanged:           "ChannelEndpointChanged",
	TypeReconnect:                        "Reconnect",
	TypeOpenStandardMiningChannel:        "OpenStandardMiningChannel",
	TypeOpenStandardMiningChannelSuccess: "OpenStandardMiningChannelSuccess",
	TypeOpenMiningChannelError:           "OpenMiningChannelError",
	TypeOpenExtendedMiningChannel:        "OpenExtendedMiningChannel",
	TypeOpenExtendedMiningChannelSuccess: "OpenExtendedMiningChannelSuccess",
	TypeNewMiningJob:                     "NewMiningJob",
	TypeUpdateChannel:                    "UpdateChannel",
	TypeUpdateChannelError:               "UpdateChannelError",
	TypeCloseChannel:                     "CloseChannel",
	TypeSetExtranoncePrefix:              "SetExtranoncePrefix",
	TypeSubmitSharesStandard:             "SubmitSharesStandard",
	TypeSubmitSharesExtended:             "SubmitSharesExtended",
	TypeSubmitSharesSuccess:              "SubmitSharesSuccess",
	TypeSubmitSharesError:                "SubmitSharesError",
	TypeNewExtendedMiningJob:             "NewExtendedMiningJob",
	TypeSetNewPrevHash:                   "SetNewPrevHash",
	TypeSetTarget:                        "SetTarget",
	TypeSetCustomMiningJob:               "SetCustomMiningJob",
	TypeSetCustomMiningJobSuccess:        "SetCustomMiningJobSuccess",
	TypeSetCustomMiningJobError:          "SetCustomMiningJobError",
	TypeSetGroupChannel:                  "SetGroupChannel",
}

func newMessage(t uint8) Message {
	switch t {
	case TypeSetupConnection:
		return new(SetupConnection)
	case TypeSetupConnectionSuccess:
		return new(SetupConnectionSuccess)
	case TypeSetupConnectionError:
		return new(SetupConnectionError)
	case TypeChannelEndpointChanged:
		return new(ChannelEndpointChanged)
	case TypeReconnect:
		return new(Reconnect)
	case TypeOpenStandardMiningChannel:
		return new(OpenStandardMiningChannel)
	case TypeOpenStandardMiningChannelSuccess:
		return new(OpenStandardMiningChannelSuccess)
	case TypeOpenMiningChannelError:
		return new(OpenMiningChannelError)
	case TypeOpenExtendedMiningChannel:
		return new(OpenExtendedMiningChannel)
	case TypeOpenExtendedMiningChannelSuccess:
		return new(OpenExtendedMiningChannelSuccess)
	case TypeNewMiningJob:
		return new(NewMiningJob)
	case TypeUpdateChannel:
		return new(UpdateChannel)
	case TypeUpdateChannelError:
		return new(UpdateChannelError)
	case TypeCloseChannel:
		return new(CloseChannel)
	case TypeSetExtranoncePrefix:
		return new(SetExtranoncePrefix)
	case TypeSubmitSharesStandard:
		return new(SubmitSharesStandard)
	case TypeSubmitSharesExtended:
		return new(SubmitSharesExtended)
	case TypeSubmitSharesSuccess:
		return new(SubmitSharesSuccess)
	case TypeSubmitSharesError:
		return new(SubmitSharesError)
	case TypeNewExtendedMiningJob:
		return new(NewExtendedMiningJob)
	case TypeSetNewPrevHash:
		return new(SetNewPrevHash)
	case TypeSetTarget:
		return new(SetTarget)
	case TypeSetCustomMiningJob:
		return new(SetCustomMiningJob)
	case TypeSetCustomMiningJobSuccess:
		return new(SetCustomMiningJobSuccess)
	case TypeSetCustomMiningJobError:
		return new(SetCustomMiningJobError)
	case TypeSetGroupChannel:
		return new(SetGroupChannel)
	}
	return newJDMessage(t)
}

// SetupConnection (type 0x00) is the first message a client sends: protocol, version range, feature flags and device information.
type SetupConnection struct {
	Protocol        uint8  // protocol U8
	MinVersion      uint16 // min_version U16
	MaxVersion      uint16 // max_version U16
	Flags           uint32 // flags U32
	EndpointHost    string // endpoint_host STR0_255
	EndpointPort    uint16 // endpoint_port U16
	Vendor          string // vendor STR0_255
	HardwareVersion string // hardware_version STR0_255
	Firmware        string // firmware STR0_255
	DeviceID        string // device_id STR0_255
}

// MsgType returns 0x00.
func (*SetupConnection) MsgType() uint8 { return TypeSetupConnection }

func (m *SetupConnection) encode(e *enc) {
	e.u8(m.Protocol)
	e.u16(m.MinVersion)
	e.u16(m.MaxVersion)
	e.u32(m.Flags)
	e.str(m.EndpointHost)
	e.u16(m.EndpointPort)
	e.str(m.Vendor)
	e.str(m.HardwareVersion)
	e.str(m.Firmware)
	e.str(m.DeviceID)
}

func (m *SetupConnection) decode(d *dec) {
	m.Protocol = d.u8("protocol")
	m.MinVersion = d.u16("min_version")
	m.MaxVersion = d.u16("max_version")
	m.Flags = d.u32("flags")
	m.EndpointHost = d.str("endpoint_host")
	m.EndpointPort = d.u16("endpoint_port")
	m.Vendor = d.str("vendor")
	m.HardwareVersion = d.str("hardware_version")
	m.Firmware = d.str("firmware")
	m.DeviceID = d.str("device_id")
}

func (m *SetupConnection) check(l *lengths) {
	l.check("endpoint_host", len(m.EndpointHost), MaxB0255)
	l.check("vendor", len(m.Vendor), MaxB0255)
	l.check("hardware_version", len(m.HardwareVersion), MaxB0255)
	l.check("firmware", len(m.Firmware), MaxB0255)
	l.check("device_id", len(m.DeviceID), MaxB0255)
}

// SetupConnectionSuccess (type 0x01) accepts a SetupConnection with the version used and the server's flags.
type SetupConnectionSuccess struct {
	UsedVersion uint16 // used_version U16
	Flags       uint32 // flags U32
}

// MsgType returns 0x01.
func (*SetupConnectionSuccess) MsgType() uint8 { return TypeSetupConnectionSuccess }

func (m *SetupConnectionSuccess) encode(e *enc) {
	e.u16(m.UsedVersion)
	e.u32(m.Flags)
}

func (m *SetupConnectionSuccess) decode(d *dec) {
	m.UsedVersion = d.u16("used_version")
	m.Flags = d.u32("flags")
}

func (m *SetupConnectionSuccess) check(l *lengths) {
}

// SetupConnectionError (type 0x02) refuses a SetupConnection; Flags lists the unsupported flags.
type SetupConnectionError struct {
	Flags     uint32 // flags U32
	ErrorCode string // error_code STR0_255
}

// MsgType returns 0x02.
func (*SetupConnectionError) MsgType() uint8 { return TypeSetupConnectionError }

func (m *SetupConnectionError) encode(e *enc) {
	e.u32(m.Flags)
	e.str(m.ErrorCode)
}

func (m *SetupConnectionError) decode(d *dec) {
	m.Flags = d.u32("flags")
	m.ErrorCode = d.str("error_code")
}

func (m *SetupConnectionError) check(l *lengths) {
	l.check("error_code", len(m.ErrorCode), MaxB0255)
}

// ChannelEndpointChanged (type 0x03) tells the client that a channel's endpoint changed.
type ChannelEndpointChanged struct {
	ChannelID uint32 // channel_id U32
}

// MsgType returns 0x03.
func (*ChannelEndpointChanged) MsgType() uint8 { return TypeChannelEndpointChanged }

func (m *ChannelEndpointChanged) encode(e *enc) {
	e.u32(m.ChannelID)
}

func (m *ChannelEndpointChanged) decode(d *dec) {
	m.ChannelID = d.u32("channel_id")
}

func (m *ChannelEndpointChanged) check(l *lengths) {
}

// Reconnect (type 0x04) redirects the client to another host and port (empty and 0: the present ones).
type Reconnect struct {
	NewHost string // new_host STR0_255
	NewPort uint16 // new_port U16
}

// MsgType returns 0x04.
func (*Reconnect) MsgType() uint8 { return TypeReconnect }

func (m *Reconnect) encode(e *enc) {
	e.str(m.NewHost)
	e.u16(m.NewPort)
}

func (m *Reconnect) decode(d *dec) {
	m.NewHost = d.str("new_host")
	m.NewPort = d.u16("new_port")
}

func (m *Reconnect) check(l *lengths) {
	l.check("new_host", len(m.NewHost), MaxB0255)
}

// OpenStandardMiningChannel (type 0x10) asks for a standard (header-only) channel.
type OpenStandardMiningChannel struct {
	RequestID       uint32  // request_id U32
	UserIdentity    string  // user_identity STR0_255
	NominalHashRate float32 // nominal_hash_rate F32
	MaxTarget       U256    // max_target U256
}

// MsgType returns 0x10.
func (*OpenStandardMiningChannel) MsgType() uint8 { return TypeOpenStandardMiningChannel }

func (m *OpenStandardMiningChannel) encode(e *enc) {
	e.u32(m.RequestID)
	e.str(m.UserIdentity)
	e.f32(m.NominalHashRate)
	e.u256(&m.MaxTarget)
}

func (m *OpenStandardMiningChannel) decode(d *dec) {
	m.RequestID = d.u32("request_id")
	m.UserIdentity = d.str("user_identity")
	m.NominalHashRate = d.f32("nominal_hash_rate")
	m.MaxTarget = d.u256("max_target")
}

func (m *OpenStandardMiningChannel) check(l *lengths) {
	l.check("user_identity", len(m.UserIdentity), MaxB0255)
}

// OpenStandardMiningChannelSuccess (type 0x11) opens a standard channel with its target and extranonce prefix.
type OpenStandardMiningChannelSuccess struct {
	RequestID        uint32 // request_id U32
	ChannelID        uint32 // channel_id U32
	Target           U256   // target U256
	ExtranoncePrefix []byte // extranonce_prefix B0_32
	GroupChannelID   uint32 // group_channel_id U32
}

// MsgType returns 0x11.
func (*OpenStandardMiningChannelSuccess) MsgType() uint8 { return TypeOpenStandardMiningChannelSuccess }

func (m *OpenStandardMiningChannelSuccess) encode(e *enc) {
	e.u32(m.RequestID)
	e.u32(m.ChannelID)
	e.u256(&m.Target)
	e.b032(m.ExtranoncePrefix)
	e.u32(m.GroupChannelID)
}

func (m *OpenStandardMiningChannelSuccess) decode(d *dec) {
	m.RequestID = d.u32("request_id")
	m.ChannelID = d.u32("channel_id")
	m.Target = d.u256("target")
	m.ExtranoncePrefix = d.b032("extranonce_prefix")
	m.GroupChannelID = d.u32("group_channel_id")
}

func (m *OpenStandardMiningChannelSuccess) check(l *lengths) {
	l.check("extranonce_prefix", len(m.ExtranoncePrefix), MaxB032)
}

// OpenMiningChannelError (type 0x12) refuses an Open*MiningChannel request.
type OpenMiningChannelError struct {
	RequestID uint32 // request_id U32
	ErrorCode string // error_code STR0_255
}

// MsgType returns 0x12.
func (*OpenMiningChannelError) MsgType() uint8 { return TypeOpenMiningChannelError }

func (m *OpenMiningChannelError) encode(e *enc) {
	e.u32(m.RequestID)
	e.str(m.ErrorCode)
}

func (m *OpenMiningChannelError) decode(d *dec) {
	m.RequestID = d.u32("request_id")
	m.ErrorCode = d.str("error_code")
}

func (m *OpenMiningChannelError) check(l *lengths) {
	l.check("error_code", len(m.ErrorCode), MaxB0255)
}

// OpenExtendedMiningChannel (type 0x13) asks for an extended channel with at least MinExtranonceSize bytes of extranonce.
type OpenExtendedMiningChannel struct {
	RequestID         uint32  // request_id U32
	UserIdentity      string  // user_identity STR0_255
	NominalHashRate   float32 // nominal_hash_rate F32
	MaxTarget         U256    // max_target U256
	MinExtranonceSize uint16  // min_extranonce_size U16
}

// MsgType returns 0x13.
func (*OpenExtendedMiningChannel) MsgType() uint8 { return TypeOpenExtendedMiningChannel }

func (m *OpenExtendedMiningChannel) encode(e *enc) {
	e.u32(m.RequestID)
	e.str(m.UserIdentity)
	e.f32(m.NominalHashRate)
	e.u256(&m.MaxTarget)
	e.u16(m.MinExtranonceSize)
}

func (m *OpenExtendedMiningChannel) decode(d *dec) {
	m.RequestID = d.u32("request_id")
	m.UserIdentity = d.str("user_identity")
	m.NominalHashRate = d.f32("nominal_hash_rate")
	m.MaxTarget = d.u256("max_target")
	m.MinExtranonceSize = d.u16("min_extranonce_size")
}

func (m *OpenExtendedMiningChannel) check(l *lengths) {
	l.check("user_identity", len(m.UserIdentity), MaxB0255)
}

// OpenExtendedMiningChannelSuccess (type 0x14) opens an extended channel with its target, extranonce size and prefix.
type OpenExtendedMiningChannelSuccess struct {
	RequestID        uint32 // request_id U32
	ChannelID        uint32 // channel_id U32
	Target           U256   // target U256
	ExtranonceSize   uint16 // extranonce_size U16
	ExtranoncePrefix []byte // extranonce_prefix B0_32
	GroupChannelID   uint32 // group_channel_id U32
}

// MsgType returns 0x14.
func (*OpenExtendedMiningChannelSuccess) MsgType() uint8 { return TypeOpenExtendedMiningChannelSuccess }

func (m *OpenExtendedMiningChannelSuccess) encode(e *enc) {
	e.u32(m.RequestID)
	e.u32(m.ChannelID)
	e.u256(&m.Target)
	e.u16(m.ExtranonceSize)
	e.b032(m.ExtranoncePrefix)
	e.u32(m.GroupChannelID)
}

func (m *OpenExtendedMiningChannelSuccess) decode(d *dec) {
	m.RequestID = d.u32("request_id")
	m.ChannelID = d.u32("channel_id")
	m.Target = d.u256("target")
	m.ExtranonceSize = d.u16("extranonce_size")
	m.ExtranoncePrefix = d.b032("extranonce_prefix")
	m.GroupChannelID = d.u32("group_channel_id")
}

func (m *OpenExtendedMiningChannelSuccess) check(l *lengths) {
	l.check("extranonce_prefix", len(m.ExtranoncePrefix), MaxB032)
}

// NewMiningJob (type 0x15) gives a standard channel a job with its merkle root; an absent MinNTime makes it a future job.
type NewMiningJob struct {
	ChannelID  uint32    // channel_id U32
	JobID      uint32    // job_id U32
	MinNTime   OptionU32 // min_ntime OPTION[U32]
	Version    uint32    // version U32
	MerkleRoot U256      // merkle_root U256
}

// MsgType returns 0x15.
func (*NewMiningJob) MsgType() uint8 { return TypeNewMiningJob }

func (m *NewMiningJob) encode(e *enc) {
	e.u32(m.ChannelID)
	e.u32(m.JobID)
	e.optU32(m.MinNTime)
	e.u32(m.Version)
	e.u256(&m.MerkleRoot)
}

func (m *NewMiningJob) decode(d *dec) {
	m.ChannelID = d.u32("channel_id")
	m.JobID = d.u32("job_id")
	m.MinNTime = d.optU32("min_ntime")
	m.Version = d.u32("version")
	m.MerkleRoot = d.u256("merkle_root")
}

func (m *NewMiningJob) check(l *lengths) {
}

// UpdateChannel (type 0x16) reports a channel's new nominal hash rate and maximum target.
type UpdateChannel struct {
	ChannelID       uint32  // channel_id U32
	NominalHashRate float32 // nominal_hash_rate F32
	MaximumTarget   U256    // maximum_target U256
}

// MsgType returns 0x16.
func (*UpdateChannel) MsgType() uint8 { return TypeUpdateChannel }

func (m *UpdateChannel) encode(e *enc) {
	e.u32(m.ChannelID)
	e.f32(m.NominalHashRate)
	e.u256(&m.MaximumTarget)
}

func (m *UpdateChannel) decode(d *dec) {
	m.ChannelID = d.u32("channel_id")
	m.NominalHashRate = d.f32("nominal_hash_rate")
	m.MaximumTarget = d.u256("maximum_target")
}

func (m *UpdateChannel) check(l *lengths) {
}

// UpdateChannelError (type 0x17) refuses an UpdateChannel.
type UpdateChannelError struct {
	ChannelID uint32 // channel_id U32
	ErrorCode string // error_code STR0_255
}

// MsgType returns 0x17.
func (*UpdateChannelError) MsgType() uint8 { return TypeUpdateChannelError }

func (m *UpdateChannelError) encode(e *enc) {
	e.u32(m.ChannelID)
	e.str(m.ErrorCode)
}

func (m *UpdateChannelError) decode(d *dec) {
	m.ChannelID = d.u32("channel_id")
	m.ErrorCode = d.str("error_code")
}

func (m *UpdateChannelError) check(l *lengths) {
	l.check("error_code", len(m.ErrorCode), MaxB0255)
}

// CloseChannel (type 0x18) closes a channel (either direction).
type CloseChannel struct {
	ChannelID  uint32 // channel_id U32
	ReasonCode string // reason_code STR0_255
}

// MsgType returns 0x18.
func (*CloseChannel) MsgType() uint8 { return TypeCloseChannel }

func (m *CloseChannel) encode(e *enc) {
	e.u32(m.ChannelID)
	e.str(m.ReasonCode)
}

func (m *CloseChannel) decode(d *dec) {
	m.ChannelID = d.u32("channel_id")
	m.ReasonCode = d.str("reason_code")
}

func (m *CloseChannel) check(l *lengths) {
	l.check("reason_code", len(m.ReasonCode), MaxB0255)
}

// SetExtranoncePrefix (type 0x19) changes a channel's extranonce prefix for the jobs that follow.
type SetExtranoncePrefix struct {
	ChannelID        uint32 // channel_id U32
	ExtranoncePrefix []byte // extranonce_prefix B0_32
}

// MsgType returns 0x19.
func (*SetExtranoncePrefix) MsgType() uint8 { return TypeSetExtranoncePrefix }

func (m *SetExtranoncePrefix) encode(e *enc) {
	e.u32(m.ChannelID)
	e.b032(m.ExtranoncePrefix)
}

func (m *SetExtranoncePrefix) decode(d *dec) {
	m.ChannelID = d.u32("channel_id")
	m.ExtranoncePrefix = d.b032("extranonce_prefix")
}

func (m *SetExtranoncePrefix) check(l *lengths) {
	l.check("extranonce_prefix", len(m.ExtranoncePrefix), MaxB032)
}

// SubmitSharesStandard (type 0x1a) submits one share on a standard (or extended) channel.
type SubmitSharesStandard struct {
	ChannelID      uint32 // channel_id U32
	SequenceNumber uint32 // sequence_number U32
	JobID          uint32 // job_id U32
	Nonce          uint32 // nonce U32
	NTime          uint32 // ntime U32
	Version        uint32 // version U32
}

// MsgType returns 0x1a.
func (*SubmitSharesStandard) MsgType() uint8 { return TypeSubmitSharesStandard }

func (m *SubmitSharesStandard) encode(e *enc) {
	e.u32(m.ChannelID)
	e.u32(m.SequenceNumber)
	e.u32(m.JobID)
	e.u32(m.Nonce)
	e.u32(m.NTime)
	e.u32(m.Version)
}

func (m *SubmitSharesStandard) decode(d *dec) {
	m.ChannelID = d.u32("channel_id")
	m.SequenceNumber = d.u32("sequence_number")
	m.JobID = d.u32("job_id")
	m.Nonce = d.u32("nonce")
	m.NTime = d.u32("ntime")
	m.Version = d.u32("version")
}

func (m *SubmitSharesStandard) check(l *lengths) {
}

// SubmitSharesExtended (type 0x1b) submits one share on an extended channel, with the extranonce rolled.
type SubmitSharesExtended struct {
	ChannelID      uint32 // channel_id U32
	SequenceNumber uint32 // sequence_number U32
	JobID          uint32 // job_id U32
	Nonce          uint32 // nonce U32
	NTime          uint32 // ntime U32
	Version        uint32 // version U32
	Extranonce     []byte // extranonce B0_32
}

// MsgType returns 0x1b.
func (*SubmitSharesExtended) MsgType() uint8 { return TypeSubmitSharesExtended }

func (m *SubmitSharesExtended) encode(e *enc) {
	e.u32(m.ChannelID)
	e.u32(m.SequenceNumber)
	e.u32(m.JobID)
	e.u32(m.Nonce)
	e.u32(m.NTime)
	e.u32(m.Version)
	e.b032(m.Extranonce)
}

func (m *SubmitSharesExtended) decode(d *dec) {
	m.ChannelID = d.u32("channel_id")
	m.SequenceNumber = d.u32("sequence_number")
	m.JobID = d.u32("job_id")
	m.Nonce = d.u32("nonce")
	m.NTime = d.u32("ntime")
	m.Version = d.u32("version")
	m.Extranonce = d.b032("extranonce")
}

func (m *SubmitSharesExtended) check(l *lengths) {
	l.check("extranonce", len(m.Extranonce), MaxB032)
}

// SubmitSharesSuccess (type 0x1c) acknowledges a batch of accepted shares.
type SubmitSharesSuccess struct {
	ChannelID               uint32 // channel_id U32
	LastSequenceNumber      uint32 // last_sequence_number U32
	NewSubmitsAcceptedCount uint32 // new_submits_accepted_count U32
	NewSharesSum            uint64 // new_shares_sum U64
}

// MsgType returns 0x1c.
func (*SubmitSharesSuccess) MsgType() uint8 { return TypeSubmitSharesSuccess }

func (m *SubmitSharesSuccess) encode(e *enc) {
	e.u32(m.ChannelID)
	e.u32(m.LastSequenceNumber)
	e.u32(m.NewSubmitsAcceptedCount)
	e.u64(m.NewSharesSum)
}

func (m *SubmitSharesSuccess) decode(d *dec) {
	m.ChannelID = d.u32("channel_id")
	m.LastSequenceNumber = d.u32("last_sequence_number")
	m.NewSubmitsAcceptedCount = d.u32("new_submits_accepted_count")
	m.NewSharesSum = d.u64("new_shares_sum")
}

func (m *SubmitSharesSuccess) check(l *lengths) {
}

// SubmitSharesError (type 0x1d) rejects one share with an error code.
type SubmitSharesError struct {
	ChannelID      uint32 // channel_id U32
	SequenceNumber uint32 // sequence_number U32
	ErrorCode      string // error_code STR0_255
}

// MsgType returns 0x1d.
func (*SubmitSharesError) MsgType() uint8 { return TypeSubmitSharesError }

func (m *SubmitSharesError) encode(e *enc) {
	e.u32(m.ChannelID)
	e.u32(m.SequenceNumber)
	e.str(m.ErrorCode)
}

func (m *SubmitSharesError) decode(d *dec) {
	m.ChannelID = d.u32("channel_id")
	m.SequenceNumber = d.u32("sequence_number")
	m.ErrorCode = d.str("error_code")
}

func (m *SubmitSharesError) check(l *lengths) {
	l.check("error_code", len(m.ErrorCode), MaxB0255)
}

// NewExtendedMiningJob (type 0x1f) gives an extended or group channel a job: coinbase parts and merkle path.
type NewExtendedMiningJob struct {
	ChannelID             uint32    // channel_id U32
	JobID                 uint32    // job_id U32
	MinNTime              OptionU32 // min_ntime OPTION[U32]
	Version               uint32    // version U32
	VersionRollingAllowed bool      // version_rolling_allowed BOOL
	MerklePath            []U256    // merkle_path SEQ0_255[U256]
	CoinbaseTxPrefix      []byte    // coinbase_tx_prefix B0_64K
	CoinbaseTxSuffix      []byte    // coinbase_tx_suffix B0_64K
}

// MsgType returns 0x1f.
func (*NewExtendedMiningJob) MsgType() uint8 { return TypeNewExtendedMiningJob }

func (m *NewExtendedMiningJob) encode(e *enc) {
	e.u32(m.ChannelID)
	e.u32(m.JobID)
	e.optU32(m.MinNTime)
	e.u32(m.Version)
	e.boolean(m.VersionRollingAllowed)
	e.seq255U256(m.MerklePath)
	e.b064k(m.CoinbaseTxPrefix)
	e.b064k(m.CoinbaseTxSuffix)
}

func (m *NewExtendedMiningJob) decode(d *dec) {
	m.ChannelID = d.u32("channel_id")
	m.JobID = d.u32("job_id")
	m.MinNTime = d.optU32("min_ntime")
	m.Version = d.u32("version")
	m.VersionRollingAllowed = d.boolean("version_rolling_allowed")
	m.MerklePath = d.seq255U256("merkle_path")
	m.CoinbaseTxPrefix = d.b064k("coinbase_tx_prefix")
	m.CoinbaseTxSuffix = d.b064k("coinbase_tx_suffix")
}

func (m *NewExtendedMiningJob) check(l *lengths) {
	l.check("merkle_path", len(m.MerklePath), maxSeq255)
	l.check("coinbase_tx_prefix", len(m.CoinbaseTxPrefix), MaxB064K)
	l.check("coinbase_tx_suffix", len(m.CoinbaseTxSuffix), MaxB064K)
}

// SetNewPrevHash (type 0x20) activates a future job on a new previous block hash.
type SetNewPrevHash struct {
	ChannelID uint32 // channel_id U32
	JobID     uint32 // job_id U32
	PrevHash  U256   // prev_hash U256
	MinNTime  uint32 // min_ntime U32
	NBits     uint32 // nbits U32
}

// MsgType returns 0x20.
func (*SetNewPrevHash) MsgType() uint8 { return TypeSetNewPrevHash }

func (m *SetNewPrevHash) encode(e *enc) {
	e.u32(m.ChannelID)
	e.u32(m.JobID)
	e.u256(&m.PrevHash)
	e.u32(m.MinNTime)
	e.u32(m.NBits)
}

func (m *SetNewPrevHash) decode(d *dec) {
	m.ChannelID = d.u32("channel_id")
	m.JobID = d.u32("job_id")
	m.PrevHash = d.u256("prev_hash")
	m.MinNTime = d.u32("min_ntime")
	m.NBits = d.u32("nbits")
}

func (m *SetNewPrevHash) check(l *lengths) {
}

// SetTarget (type 0x21) sets a channel's maximum share target.
type SetTarget struct {
	ChannelID     uint32 // channel_id U32
	MaximumTarget U256   // maximum_target U256
}

// MsgType returns 0x21.
func (*SetTarget) MsgType() uint8 { return TypeSetTarget }

func (m *SetTarget) encode(e *enc) {
	e.u32(m.ChannelID)
	e.u256(&m.MaximumTarget)
}

func (m *SetTarget) decode(d *dec) {
	m.ChannelID = d.u32("channel_id")
	m.MaximumTarget = d.u256("maximum_target")
}

func (m *SetTarget) check(l *lengths) {
}

// SetCustomMiningJob (type 0x22) sets a job the miner declared to the pool's Job Declarator Server (internal/jds) on an extended channel.
type SetCustomMiningJob struct {
	ChannelID                uint32 // channel_id U32
	RequestID                uint32 // request_id U32
	MiningJobToken           []byte // mining_job_token B0_255
	Version                  uint32 // version U32
	PrevHash                 U256   // prev_hash U256
	MinNTime                 uint32 // min_ntime U32
	NBits                    uint32 // nbits U32
	CoinbaseTxVersion        uint32 // coinbase_tx_version U32
	CoinbasePrefix           []byte // coinbase_prefix B0_255
	CoinbaseTxInputNSequence uint32 // coinbase_tx_input_nSequence U32
	CoinbaseTxOutputs        []byte // coinbase_tx_outputs B0_64K
	CoinbaseTxLocktime       uint32 // coinbase_tx_locktime U32
	MerklePath               []U256 // merkle_path SEQ0_255[U256]
}

// MsgType returns 0x22.
func (*SetCustomMiningJob) MsgType() uint8 { return TypeSetCustomMiningJob }

func (m *SetCustomMiningJob) encode(e *enc) {
	e.u32(m.ChannelID)
	e.u32(m.RequestID)
	e.b0255(m.MiningJobToken)
	e.u32(m.Version)
	e.u256(&m.PrevHash)
	e.u32(m.MinNTime)
	e.u32(m.NBits)
	e.u32(m.CoinbaseTxVersion)
	e.b0255(m.CoinbasePrefix)
	e.u32(m.CoinbaseTxInputNSequence)
	e.b064k(m.CoinbaseTxOutputs)
	e.u32(m.CoinbaseTxLocktime)
	e.seq255U256(m.MerklePath)
}

func (m *SetCustomMiningJob) decode(d *dec) {
	m.ChannelID = d.u32("channel_id")
	m.RequestID = d.u32("request_id")
	m.MiningJobToken = d.b0255("mining_job_token")
	m.Version = d.u32("version")
	m.PrevHash = d.u256("prev_hash")
	m.MinNTime = d.u32("min_ntime")
	m.NBits = d.u32("nbits")
	m.CoinbaseTxVersion = d.u32("coinbase_tx_version")
	m.CoinbasePrefix = d.b0255("coinbase_prefix")
	m.CoinbaseTxInputNSequence = d.u32("coinbase_tx_input_nSequence")
	m.CoinbaseTxOutputs = d.b064k("coinbase_tx_outputs")
	m.CoinbaseTxLocktime = d.u32("coinbase_tx_locktime")
	m.MerklePath = d.seq255U256("merkle_path")
}

func (m *SetCustomMiningJob) check(l *lengths) {
	l.check("mining_job_token", len(m.MiningJobToken), MaxB0255)
	l.check("coinbase_prefix", len(m.CoinbasePrefix), MaxB0255)
	l.check("coinbase_tx_outputs", len(m.CoinbaseTxOutputs), MaxB064K)
	l.check("merkle_path", len(m.MerklePath), maxSeq255)
}

// SetCustomMiningJobSuccess (type 0x23) accepts a SetCustomMiningJob.
type SetCustomMiningJobSuccess struct {
	ChannelID uint32 // channel_id U32
	RequestID uint32 // request_id U32
	JobID     uint32 // job_id U32
}

// MsgType returns 0x23.
func (*SetCustomMiningJobSuccess) MsgType() uint8 { return TypeSetCustomMiningJobSuccess }

func (m *SetCustomMiningJobSuccess) encode(e *enc) {
	e.u32(m.ChannelID)
	e.u32(m.RequestID)
	e.u32(m.JobID)
}

func (m *SetCustomMiningJobSuccess) decode(d *dec) {
	m.ChannelID = d.u32("channel_id")
	m.RequestID = d.u32("request_id")
	m.JobID = d.u32("job_id")
}

func (m *SetCustomMiningJobSuccess) check(l *lengths) {
}

// SetCustomMiningJobError (type 0x24) refuses a SetCustomMiningJob.
type SetCustomMiningJobError struct {
	ChannelID uint32 // channel_id U32
	RequestID uint32 // request_id U32
	ErrorCode string // error_code STR0_255
}

// MsgType returns 0x24.
func (*SetCustomMiningJobError) MsgType() uint8 { return TypeSetCustomMiningJobError }

func (m *SetCustomMiningJobError) encode(e *enc) {
	e.u32(m.ChannelID)
	e.u32(m.RequestID)
	e.str(m.ErrorCode)
}

func (m *SetCustomMiningJobError) decode(d *dec) {
	m.ChannelID = d.u32("channel_id")
	m.RequestID = d.u32("request_id")
	m.ErrorCode = d.str("error_code")
}

func (m *SetCustomMiningJobError) check(l *lengths) {
	l.check("error_code", len(m.ErrorCode), MaxB0255)
}

// SetGroupChannel (type 0x25) puts channels into a group channel.
type SetGroupChannel struct {
	GroupChannelID uint32   // group_channel_id U32
	ChannelIDs     []uint32 // channel_ids SEQ0_64K[U32]
}

// MsgType returns 0x25.
func (*SetGroupChannel) MsgType() uint8 { return TypeSetGroupChannel }

func (m *SetGroupChannel) encode(e *enc) {
	e.u32(m.GroupChannelID)
	e.seq64kU32(m.ChannelIDs)
}

func (m *SetGroupChannel) decode(d *dec) {
	m.GroupChannelID = d.u32("group_channel_id")
	m.ChannelIDs = d.seq64kU32("channel_ids")
}

func (m *SetGroupChannel) check(l *lengths) {
	l.check("channel_ids", len(m.ChannelIDs), maxSeq64K)
}
