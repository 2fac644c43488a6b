package sv2

import (
	"bytes"
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// fixture turns an annotated listing into bytes: on each line, the hex
// before "|" is data, the rest a comment naming the field.
func fixture(t testing.TB, s string) []byte {
	t.Helper()
	var out []byte
	for _, line := range strings.Split(s, "\n") {
		data, _, _ := strings.Cut(line, "|")
		data = strings.Join(strings.Fields(data), "")
		if data == "" {
			continue
		}
		b, err := hex.DecodeString(data)
		if err != nil {
			t.Fatalf("fixture line %q: %v", line, err)
		}
		out = append(out, b...)
	}
	return out
}

func u256Seq(first byte) (v U256) {
	for i := range v {
		v[i] = first + byte(i)
	}
	return v
}

// u256hex is the hex of u256Seq(first).
func u256hex(first byte) string {
	v := u256Seq(first)
	return hex.EncodeToString(v[:])
}

type msgCase struct {
	name   string
	msg    Message
	header string // the 6 header bytes, annotated
	body   string // the payload, annotated
}

func messageCases() []msgCase {
	return []msgCase{
		{"SetupConnection", &SetupConnection{Protocol: 0, MinVersion: 2, MaxVersion: 2, Flags: 0x05,
			EndpointHost: "127.0.0.1", EndpointPort: 3336, Vendor: "powcoord", HardwareVersion: "cpu", Firmware: "v1", DeviceID: ""},
			`0000 | extension_type 0, channel_msg unset
			 00   | msg_type SetupConnection
			 260000 | msg_length 38`,
			`00 | protocol 0 = Mining
			 0200 | min_version 2
			 0200 | max_version 2
			 05000000 | flags REQUIRES_STANDARD_JOBS|REQUIRES_VERSION_ROLLING
			 09 3132372e302e302e31 | endpoint_host "127.0.0.1"
			 080d | endpoint_port 3336
			 08 706f77636f6f7264 | vendor "powcoord"
			 03 637075 | hardware_version "cpu"
			 02 7631 | firmware "v1"
			 00 | device_id ""`},
		{"SetupConnection.Success", &SetupConnectionSuccess{UsedVersion: 2, Flags: 0},
			`0000 | ext 0
			 01 | SetupConnection.Success
			 060000 | 6 bytes`,
			`0200 | used_version 2
			 00000000 | flags`},
		{"SetupConnection.Error", &SetupConnectionError{Flags: 2, ErrorCode: "unsupported-feature-flags"},
			`0000 | ext 0
			 02 | SetupConnection.Error
			 1e0000 | 30 bytes`,
			`02000000 | flags REQUIRES_WORK_SELECTION
			 19 756e737570706f727465642d666561747572652d666c616773 | error_code "unsupported-feature-flags"`},
		{"ChannelEndpointChanged", &ChannelEndpointChanged{ChannelID: 0x01020304},
			`0080 | ext 0 with channel_msg (U16 0x8000, LE)
			 03 | ChannelEndpointChanged
			 040000 | 4 bytes`,
			`04030201 | channel_id 0x01020304`},
		{"Reconnect", &Reconnect{NewHost: "pool.example", NewPort: 34255},
			`0000 | ext 0
			 04 | Reconnect
			 0f0000 | 15 bytes`,
			`0c 706f6f6c2e6578616d706c65 | new_host "pool.example"
			 cf85 | new_port 34255`},
		{"OpenStandardMiningChannel", &OpenStandardMiningChannel{RequestID: 7, UserIdentity: "alice.w1", NominalHashRate: 1e6, MaxTarget: u256Seq(0)},
			`0000 | ext 0
			 10 | OpenStandardMiningChannel
			 310000 | 49 bytes`,
			`07000000 | request_id 7
			 08 616c6963652e7731 | user_identity "alice.w1"
			 00247449 | nominal_hash_rate 1e6 (F32 0x49742400)
			 ` + u256hex(0) + ` | max_target`},
		{"OpenStandardMiningChannel.Success", &OpenStandardMiningChannelSuccess{RequestID: 7, ChannelID: 1, Target: u256Seq(0x20), ExtranoncePrefix: []byte{0xde, 0xad, 0xbe, 0xef}, GroupChannelID: 0},
			`0000 | ext 0
			 11 | OpenStandardMiningChannel.Success
			 310000 | 49 bytes`,
			`07000000 | request_id 7
			 01000000 | channel_id 1
			 ` + u256hex(0x20) + ` | target
			 04 deadbeef | extranonce_prefix
			 00000000 | group_channel_id 0`},
		{"OpenMiningChannel.Error", &OpenMiningChannelError{RequestID: 9, ErrorCode: "unknown-user"},
			`0000 | ext 0
			 12 | OpenMiningChannel.Error
			 110000 | 17 bytes`,
			`09000000 | request_id 9
			 0c 756e6b6e6f776e2d75736572 | error_code "unknown-user"`},
		{"OpenExtendedMiningChannel", &OpenExtendedMiningChannel{RequestID: 1, UserIdentity: "p", NominalHashRate: 0, MaxTarget: u256Seq(1), MinExtranonceSize: 8},
			`0000 | ext 0
			 13 | OpenExtendedMiningChannel
			 2c0000 | 44 bytes`,
			`01000000 | request_id 1
			 01 70 | user_identity "p"
			 00000000 | nominal_hash_rate 0.0
			 ` + u256hex(1) + ` | max_target
			 0800 | min_extranonce_size 8`},
		{"OpenExtendedMiningChannel.Success", &OpenExtendedMiningChannelSuccess{RequestID: 1, ChannelID: 2, Target: u256Seq(2), ExtranonceSize: 8, ExtranoncePrefix: []byte{1, 2, 3, 4}, GroupChannelID: 5},
			`0000 | ext 0
			 14 | OpenExtendedMiningChannel.Success
			 330000 | 51 bytes`,
			`01000000 | request_id 1
			 02000000 | channel_id 2
			 ` + u256hex(2) + ` | target
			 0800 | extranonce_size 8
			 04 01020304 | extranonce_prefix
			 05000000 | group_channel_id 5`},
		{"NewMiningJob future", &NewMiningJob{ChannelID: 1, JobID: 2, Version: 0x20000000, MerkleRoot: u256Seq(3)},
			`0080 | ext 0, channel_msg
			 15 | NewMiningJob
			 2d0000 | 45 bytes`,
			`01000000 | channel_id 1
			 02000000 | job_id 2
			 00 | min_ntime: OPTION empty (future job)
			 00000020 | version 0x20000000
			 ` + u256hex(3) + ` | merkle_root`},
		{"NewMiningJob active", &NewMiningJob{ChannelID: 1, JobID: 3, MinNTime: SomeU32(1700000000), Version: 0x20000000, MerkleRoot: u256Seq(4)},
			`0080 | ext 0, channel_msg
			 15 | NewMiningJob
			 310000 | 49 bytes`,
			`01000000 | channel_id 1
			 03000000 | job_id 3
			 01 00f15365 | min_ntime: OPTION set, 1700000000
			 00000020 | version
			 ` + u256hex(4) + ` | merkle_root`},
		{"UpdateChannel", &UpdateChannel{ChannelID: 1, NominalHashRate: 2.5, MaximumTarget: u256Seq(5)},
			`0080 | ext 0, channel_msg
			 16 | UpdateChannel
			 280000 | 40 bytes`,
			`01000000 | channel_id 1
			 00002040 | nominal_hash_rate 2.5 (F32 0x40200000)
			 ` + u256hex(5) + ` | maximum_target`},
		{"UpdateChannel.Error", &UpdateChannelError{ChannelID: 4, ErrorCode: "invalid-channel-id"},
			`0080 | ext 0, channel_msg
			 17 | UpdateChannel.Error
			 170000 | 23 bytes`,
			`04000000 | channel_id 4
			 12 696e76616c69642d6368616e6e656c2d6964 | error_code "invalid-channel-id"`},
		{"CloseChannel", &CloseChannel{ChannelID: 4, ReasonCode: "bye"},
			`0080 | ext 0, channel_msg
			 18 | CloseChannel
			 080000 | 8 bytes`,
			`04000000 | channel_id 4
			 03 627965 | reason_code "bye"`},
		{"SetExtranoncePrefix", &SetExtranoncePrefix{ChannelID: 4, ExtranoncePrefix: []byte{9, 8}},
			`0080 | ext 0, channel_msg
			 19 | SetExtranoncePrefix
			 070000 | 7 bytes`,
			`04000000 | channel_id 4
			 02 0908 | extranonce_prefix`},
		{"SubmitSharesStandard", &SubmitSharesStandard{ChannelID: 1, SequenceNumber: 10, JobID: 2, Nonce: 0xdeadbeef, NTime: 1700000001, Version: 0x20002000},
			`0080 | ext 0, channel_msg
			 1a | SubmitSharesStandard
			 180000 | 24 bytes`,
			`01000000 | channel_id 1
			 0a000000 | sequence_number 10
			 02000000 | job_id 2
			 efbeadde | nonce 0xdeadbeef
			 01f15365 | ntime 1700000001
			 00200020 | version 0x20002000`},
		{"SubmitSharesExtended", &SubmitSharesExtended{ChannelID: 2, SequenceNumber: 11, JobID: 3, Nonce: 1, NTime: 2, Version: 3, Extranonce: []byte{0xaa, 0xbb, 0xcc, 0xdd, 0, 0, 0, 1}},
			`0080 | ext 0, channel_msg
			 1b | SubmitSharesExtended
			 210000 | 33 bytes`,
			`02000000 | channel_id 2
			 0b000000 | sequence_number 11
			 03000000 | job_id 3
			 01000000 | nonce 1
			 02000000 | ntime 2
			 03000000 | version 3
			 08 aabbccdd00000001 | extranonce`},
		{"SubmitShares.Success", &SubmitSharesSuccess{ChannelID: 1, LastSequenceNumber: 20, NewSubmitsAcceptedCount: 10, NewSharesSum: 10240},
			`0080 | ext 0, channel_msg
			 1c | SubmitShares.Success
			 140000 | 20 bytes`,
			`01000000 | channel_id 1
			 14000000 | last_sequence_number 20
			 0a000000 | new_submits_accepted_count 10
			 0028000000000000 | new_shares_sum 10240`},
		{"SubmitShares.Error", &SubmitSharesError{ChannelID: 1, SequenceNumber: 21, ErrorCode: "stale-share"},
			`0080 | ext 0, channel_msg
			 1d | SubmitShares.Error
			 140000 | 20 bytes`,
			`01000000 | channel_id 1
			 15000000 | sequence_number 21
			 0b 7374616c652d7368617265 | error_code "stale-share"`},
		{"NewExtendedMiningJob", &NewExtendedMiningJob{ChannelID: 2, JobID: 5, Version: 0x20000000, VersionRollingAllowed: true,
			MerklePath: []U256{u256Seq(6), u256Seq(7)}, CoinbaseTxPrefix: []byte{1, 0, 0, 0}, CoinbaseTxSuffix: []byte{0xff, 0xee}},
			`0080 | ext 0, channel_msg
			 1f | NewExtendedMiningJob
			 590000 | 89 bytes`,
			`02000000 | channel_id 2
			 05000000 | job_id 5
			 00 | min_ntime: future job
			 00000020 | version
			 01 | version_rolling_allowed true
			 02 | merkle_path: 2 entries
			 ` + u256hex(6) + ` | merkle_path[0]
			 ` + u256hex(7) + ` | merkle_path[1]
			 0400 01000000 | coinbase_tx_prefix (4 bytes)
			 0200 ffee | coinbase_tx_suffix (2 bytes)`},
		{"SetNewPrevHash", &SetNewPrevHash{ChannelID: 2, JobID: 5, PrevHash: u256Seq(8), MinNTime: 1700000000, NBits: 0x1d00ffff},
			`0080 | ext 0, channel_msg
			 20 | SetNewPrevHash
			 300000 | 48 bytes`,
			`02000000 | channel_id 2
			 05000000 | job_id 5
			 ` + u256hex(8) + ` | prev_hash
			 00f15365 | min_ntime 1700000000
			 ffff001d | nbits 0x1d00ffff`},
		{"SetTarget", &SetTarget{ChannelID: 3, MaximumTarget: u256Seq(9)},
			`0080 | ext 0, channel_msg
			 21 | SetTarget
			 240000 | 36 bytes`,
			`03000000 | channel_id 3
			 ` + u256hex(9) + ` | maximum_target`},
		{"SetCustomMiningJob", &SetCustomMiningJob{ChannelID: 1, RequestID: 2, MiningJobToken: []byte{7}, Version: 3, PrevHash: u256Seq(10), MinNTime: 4, NBits: 5,
			CoinbaseTxVersion: 2, CoinbasePrefix: []byte{0x51}, CoinbaseTxInputNSequence: 0xffffffff, CoinbaseTxOutputs: []byte{0}, CoinbaseTxLocktime: 0, MerklePath: nil},
			`0080 | ext 0, channel_msg
			 22 | SetCustomMiningJob
			 480000 | 72 bytes`,
			`01000000 | channel_id 1
			 02000000 | request_id 2
			 01 07 | mining_job_token
			 03000000 | version 3
			 ` + u256hex(10) + ` | prev_hash
			 04000000 | min_ntime 4
			 05000000 | nbits 5
			 02000000 | coinbase_tx_version 2
			 01 51 | coinbase_prefix
			 ffffffff | coinbase_tx_input_nSequence
			 0100 00 | coinbase_tx_outputs (1 byte: zero outputs)
			 00000000 | coinbase_tx_locktime
			 00 | merkle_path: empty`},
		{"SetCustomMiningJob.Success", &SetCustomMiningJobSuccess{ChannelID: 1, RequestID: 2, JobID: 3},
			`0080 | ext 0, channel_msg
			 23 | SetCustomMiningJob.Success
			 0c0000 | 12 bytes`,
			`01000000 | channel_id
			 02000000 | request_id
			 03000000 | job_id`},
		{"SetCustomMiningJob.Error", &SetCustomMiningJobError{ChannelID: 1, RequestID: 2, ErrorCode: "no"},
			`0080 | ext 0, channel_msg
			 24 | SetCustomMiningJob.Error
			 0b0000 | 11 bytes`,
			`01000000 | channel_id
			 02000000 | request_id
			 02 6e6f | error_code "no"`},
		{"SetGroupChannel", &SetGroupChannel{GroupChannelID: 100, ChannelIDs: []uint32{1, 2, 3}},
			`0000 | ext 0, channel_msg unset
			 25 | SetGroupChannel
			 120000 | 18 bytes`,
			`64000000 | group_channel_id 100
			 0300 | channel_ids: 3 entries (SEQ0_64K length, U16)
			 01000000 02000000 03000000 | 1, 2, 3`},
	}
}

func TestMessagesByteExact(t *testing.T) {
	seen := map[uint8]bool{}
	for _, c := range append(messageCases(), jdMessageCases()...) {
		t.Run(c.name, func(t *testing.T) {
			hdr, body := fixture(t, c.header), fixture(t, c.body)
			want := append(append([]byte(nil), hdr...), body...)
			got, err := AppendFrame(nil, c.msg)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("encoded\n got %x\nwant %x", got, want)
			}
			h, err := ParseHeader(hdr)
			if err != nil {
				t.Fatal(err)
			}
			if int(h.Length) != len(body) {
				t.Fatalf("fixture header length %d, body %d bytes", h.Length, len(body))
			}
			m, err := Decode(h, body)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(normalize(m), normalize(c.msg)) {
				t.Fatalf("decoded %+v, want %+v", m, c.msg)
			}
			// Every strict prefix of the payload is refused with ErrShort.
			for n := 0; n < len(body); n++ {
				if _, err := Decode(h, body[:n]); !errors.Is(err, ErrShort) {
					t.Fatalf("payload cut to %d of %d bytes: err %v, want ErrShort", n, len(body), err)
				}
			}
			// One trailing byte is refused.
			if _, err := Decode(h, append(body[:len(body):len(body)], 0)); err == nil || !strings.Contains(err.Error(), "trailing") {
				t.Fatalf("trailing byte: err %v", err)
			}
			seen[c.msg.MsgType()] = true
		})
	}
	for t2, name := range messageNames {
		if name != "" && !seen[uint8(t2)] {
			t.Errorf("message %s has no fixture", name)
		}
	}
}

// normalize makes nil and empty slices compare equal.
func normalize(m Message) Message {
	v := reflect.ValueOf(m).Elem()
	c := reflect.New(v.Type()).Elem()
	c.Set(v)
	for i := 0; i < c.NumField(); i++ {
		f := c.Field(i)
		if f.Kind() == reflect.Slice && f.Len() == 0 {
			f.Set(reflect.Zero(f.Type()))
		}
	}
	return c.Addr().Interface().(Message)
}

func TestDataTypeEdges(t *testing.T) {
	// BOOL: only the least significant bit counts.
	d := dec{b: []byte{0xfe, 0x03}}
	if d.boolean("a") || !d.boolean("b") {
		t.Fatal("BOOL 0xfe must be false and 0x03 true")
	}
	// OPTION with a length of 2 is refused.
	d = dec{b: []byte{2, 0, 0, 0, 0}}
	d.optU32("min_ntime")
	if d.err == nil || !strings.Contains(d.err.Error(), "OPTION length 2") {
		t.Fatalf("OPTION length 2: %v", d.err)
	}
	// B0_32 with a length of 33 is refused on decode and encode.
	d = dec{b: append([]byte{33}, make([]byte, 33)...)}
	d.b032("extranonce_prefix")
	if d.err == nil || !strings.Contains(d.err.Error(), "33 over 32") {
		t.Fatalf("B0_32 of 33: %v", d.err)
	}
	if _, err := AppendPayload(nil, &SetExtranoncePrefix{ExtranoncePrefix: make([]byte, 33)}); err == nil || !strings.Contains(err.Error(), "extranonce_prefix: length 33 over the limit 32") {
		t.Fatalf("encode B0_32 of 33: %v", err)
	}
	if _, err := AppendPayload(nil, &SetupConnection{Vendor: strings.Repeat("v", 256)}); err == nil || !strings.Contains(err.Error(), "vendor") {
		t.Fatalf("encode STR0_255 of 256: %v", err)
	}
	// U24 and B0_16M: a 3-byte little-endian length.
	var e enc
	e.b016m([]byte{1, 2})
	e.u24(0x123456)
	if want := fixture(t, `020000 0102 | B0_16M of 2 bytes
	                       563412 | U24 0x123456`); !bytes.Equal(e.b, want) {
		t.Fatalf("B0_16M/U24: %x, want %x", e.b, want)
	}
	d = dec{b: e.b}
	if b := d.b016m("x"); !bytes.Equal(b, []byte{1, 2}) || d.u24("y") != 0x123456 || d.end("t") != nil {
		t.Fatalf("B0_16M/U24 decode: %x %v", b, d.err)
	}
	// U64 and F32 little-endian.
	e = enc{}
	e.u64(0x0102030405060708)
	e.f32(-1)
	if want := fixture(t, `0807060504030201 | U64
	                       000080bf | F32 -1.0`); !bytes.Equal(e.b, want) {
		t.Fatalf("U64/F32: %x", e.b)
	}
	// SEQ0_255[U256] claiming more entries than bytes left.
	d = dec{b: append([]byte{3}, make([]byte, 64)...)}
	if d.seq255U256("merkle_path") != nil || !errors.Is(d.err, ErrShort) {
		t.Fatalf("short SEQ0_255: %v", d.err)
	}
	// SEQ0_64K over 65535 entries is refused on encode.
	if _, err := AppendPayload(nil, &SetGroupChannel{ChannelIDs: make([]uint32, 65536)}); err == nil {
		t.Fatal("SEQ0_64K of 65536 encoded")
	}
}

func TestDecodeUnknown(t *testing.T) {
	if _, err := Decode(Header{MsgType: 0x1e}, nil); !errors.Is(err, ErrUnknownMessage) {
		t.Fatalf("reserved 0x1e: %v", err)
	}
	if _, err := Decode(Header{MsgType: 0x52}, nil); !errors.Is(err, ErrUnknownMessage) {
		t.Fatalf("unassigned 0x52: %v", err)
	}
	// A message of an extension (here 0x4001 with channel_msg) is ignored.
	m, err := Decode(Header{ExtensionType: 0xc001, MsgType: 0x00}, []byte{1, 2, 3})
	if m != nil || err != nil {
		t.Fatalf("extension message: %v %v", m, err)
	}
	h := Header{ExtensionType: 0x8abc}
	if !h.ChannelMsg() || h.Extension() != 0x0abc {
		t.Fatalf("0x8abc: channel %v ext %#x", h.ChannelMsg(), h.Extension())
	}
}
