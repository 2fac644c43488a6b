package sv2

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// jdMessageCases are the Job Declaration messages, built by hand from the
// field tables of the specification's chapter 6.4.
func jdMessageCases() []msgCase {
	return []msgCase{
		{"AllocateMiningJobToken", &AllocateMiningJobToken{UserIdentifier: "bc1q.w", RequestID: 7},
			`0000 | ext 0, channel_msg unset
			 50 | AllocateMiningJobToken
			 0b0000 | 11 bytes`,
			`06 626331712e77 | user_identifier "bc1q.w" (STR0_255)
			 07000000 | request_id 7`},
		{"AllocateMiningJobToken.Success", &AllocateMiningJobTokenSuccess{RequestID: 7, MiningJobToken: []byte{0xaa, 0xbb},
			CoinbaseTxOutputs: fixtureBytes(`01 | CompactSize: 1 output
			 0000000000000000 | amount 0
			 02 5100 | script OP_1 OP_0`)},
			`0000 | ext 0
			 51 | AllocateMiningJobToken.Success
			 150000 | 21 bytes`,
			`07000000 | request_id 7
			 02 aabb | mining_job_token (B0_255)
			 0c00 | coinbase_tx_outputs length 12 (B0_64K, U16)
			 01 0000000000000000 02 5100 | one output of 0 sat paying OP_1 OP_0`},
		{"ProvideMissingTransactions", &ProvideMissingTransactions{RequestID: 9, UnknownTxPositionList: []uint16{0, 2, 0x0102}},
			`0000 | ext 0
			 55 | ProvideMissingTransactions
			 0c0000 | 12 bytes`,
			`09000000 | request_id 9
			 0300 | unknown_tx_position_list: 3 entries (SEQ0_64K, U16 count)
			 0000 0200 0201 | positions 0, 2, 258 (U16 each)`},
		{"ProvideMissingTransactions.Success", &ProvideMissingTransactionsSuccess{RequestID: 9, TransactionList: [][]byte{{1, 2, 3}, nil}},
			`0000 | ext 0
			 56 | ProvideMissingTransactions.Success
			 0f0000 | 15 bytes`,
			`09000000 | request_id 9
			 0200 | transaction_list: 2 entries
			 030000 010203 | B0_16M: 3 bytes (U24 length)
			 000000 | B0_16M: empty`},
		{"DeclareMiningJob", &DeclareMiningJob{RequestID: 1, MiningJobToken: []byte{5}, Version: 0x20000000,
			CoinbaseTxPrefix: []byte{1, 2}, CoinbaseTxSuffix: []byte{3}, WtxidList: []U256{u256Seq(1)}, ExcessData: nil},
			`0000 | ext 0
			 57 | DeclareMiningJob
			 350000 | 53 bytes`,
			`01000000 | request_id 1
			 01 05 | mining_job_token
			 00000020 | version 0x20000000
			 0200 0102 | coinbase_tx_prefix (B0_64K)
			 0100 03 | coinbase_tx_suffix
			 0100 ` + u256hex(1) + ` | wtxid_list: 1 entry (SEQ0_64K[U256])
			 0000 | excess_data: empty`},
		{"DeclareMiningJob.Success", &DeclareMiningJobSuccess{RequestID: 1, NewMiningJobToken: []byte{9, 8}},
			`0000 | ext 0
			 58 | DeclareMiningJob.Success
			 070000 | 7 bytes`,
			`01000000 | request_id 1
			 02 0908 | new_mining_job_token`},
		{"DeclareMiningJob.Error", &DeclareMiningJobError{RequestID: 1, ErrorCode: "invalid-mining-job-token", ErrorDetails: []byte("x")},
			`0000 | ext 0
			 59 | DeclareMiningJob.Error
			 200000 | 32 bytes`,
			`01000000 | request_id 1
			 18 696e76616c69642d6d696e696e672d6a6f622d746f6b656e | error_code "invalid-mining-job-token"
			 0100 78 | error_details "x" (B0_64K)`},
		{"PushSolution", &PushSolution{Extranonce: []byte{0, 0, 0, 1}, PrevHash: u256Seq(3), Nonce: 0x11223344, NTime: 0x65000000, NBits: 0x207fffff, Version: 0x20000000},
			`0000 | ext 0
			 60 | PushSolution
			 350000 | 53 bytes`,
			`04 00000001 | extranonce (B0_32)
			 ` + u256hex(3) + ` | prev hash
			 44332211 | nonce
			 00000065 | ntime
			 ffff7f20 | nbits
			 00000020 | version`},
	}
}

// fixtureBytes is fixture without a testing.TB (for building cases).
func fixtureBytes(s string) []byte { return fixture(panicTB{}, s) }

type panicTB struct{ testing.TB }

func (panicTB) Helper()                        {}
func (panicTB) Fatalf(format string, a ...any) { panic(format) }

// TestJDSetupConnectionFlags: a Job Declaration SetupConnection is the
// common message with protocol 1 and DECLARE_TX_DATA in bit 0.
func TestJDSetupConnectionFlags(t *testing.T) {
	got, err := AppendPayload(nil, &SetupConnection{Protocol: ProtocolJobDeclaration, MinVersion: 2, MaxVersion: 2, Flags: FlagDeclareTxData})
	if err != nil {
		t.Fatal(err)
	}
	want := fixture(t, `01 | protocol 1 = Job Declaration
		0200 0200 | versions 2..2
		01000000 | flags DECLARE_TX_DATA
		00 0000 00 00 00 00 | empty strings, port 0`)
	if !bytes.Equal(got, want) {
		t.Fatalf("got %x, want %x", got, want)
	}
}

// TestJDDecodeRefusesCountsPastThePayload: a sequence count larger than
// the bytes left is ErrShort, without allocating for the count.
func TestJDDecodeRefusesCountsPastThePayload(t *testing.T) {
	for _, c := range []struct {
		typ  uint8
		body string
	}{
		{TypeProvideMissingTransactions, `01000000 ffff 0000`},
		{TypeProvideMissingTransactionsSuccess, `01000000 ffff 000000`},
		{TypeDeclareMiningJob, `01000000 00 00000000 0000 0000 ffff`},
	} {
		if _, err := Decode(Header{MsgType: c.typ}, fixture(t, c.body)); !errors.Is(err, ErrShort) {
			t.Errorf("%s: err %v, want ErrShort", MessageName(c.typ), err)
		}
	}
	if _, err := Decode(Header{MsgType: TypePushSolution}, append([]byte{33}, make([]byte, 80)...)); err == nil {
		t.Error("PushSolution with a 33-byte extranonce decoded")
	}
}

// FuzzJDDecode decodes arbitrary payloads as each Job Declaration
// message: never a panic, and whatever decodes encodes back to the same
// bytes.
func FuzzJDDecode(f *testing.F) {
	for _, c := range jdMessageCases() {
		f.Add(c.msg.MsgType(), fixture(f, c.body))
	}
	f.Fuzz(func(t *testing.T, typ uint8, payload []byte) {
		typ = TypeAllocateMiningJobToken + typ%(TypePushSolution-TypeAllocateMiningJobToken+1)
		m, err := Decode(Header{MsgType: typ}, payload)
		if err != nil {
			return
		}
		again, err := AppendPayload(nil, m)
		if err != nil {
			t.Fatalf("%s decoded but does not encode: %v", MessageName(typ), err)
		}
		if !bytes.Equal(again, payload) {
			t.Fatalf("%s: decoded %x, encoded back %x", MessageName(typ), payload, again)
		}
	})
}

// FuzzJDTransportRead feeds arbitrary bytes, split across reads anywhere,
// to a Job Declarator Server's side of the fixed-key handshake: never a
// panic, never a payload over its type's cap from a JD client, and
// whatever decodes re-encodes to its payload.
func FuzzJDTransportRead(f *testing.F) {
	cli, _ := fixedPair(f)
	var stream bytes.Buffer
	w := newConn(&stream, cli, nil)
	for _, c := range jdMessageCases() {
		if err := w.WriteMessages(c.msg); err != nil {
			f.Fatal(err)
		}
	}
	f.Add(stream.Bytes(), []byte{3, 7})
	f.Add(stream.Bytes()[:50], []byte{})
	f.Fuzz(func(t *testing.T, data, sizes []byte) {
		_, srv := fixedPair(t)
		caps := FromJDClient()
		c := newConn(rw{&chunkReader{data: data, sizes: sizes}, io.Discard}, srv, caps)
		for {
			h, p, err := c.ReadFrame()
			if err != nil {
				return
			}
			if len(p) != int(h.Length) || len(p) > caps.Limit(h) {
				t.Fatalf("payload %d bytes, header %d, cap %d", len(p), h.Length, caps.Limit(h))
			}
			m, err := Decode(h, p)
			if err != nil || newJDMessage(h.MsgType) == nil || h.Extension() != 0 {
				continue // other messages' round trips: FuzzTransportRead
			}
			if again, err := AppendPayload(nil, m); err != nil || !bytes.Equal(again, p) {
				t.Fatalf("%s: decoded %x, encoded back %x (%v)", MessageName(h.MsgType), p, again, err)
			}
		}
	})
}
