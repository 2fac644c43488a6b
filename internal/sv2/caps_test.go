package sv2

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
)

// s255 is a string at STR0_255's limit.
var s255 = strings.Repeat("s", 255)

// maximal returns a message of type t with every variable-length field
// at its data type's limit: the largest payload its definition allows.
func maximal(t uint8) Message {
	b32, b255, b64k := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 255), bytes.Repeat([]byte{3}, MaxB064K)
	path := make([]U256, 255)
	some := SomeU32(1)
	switch t {
	case TypeSetupConnection:
		return &SetupConnection{EndpointHost: s255, Vendor: s255, HardwareVersion: s255, Firmware: s255, DeviceID: s255}
	case TypeOpenStandardMiningChannel:
		return &OpenStandardMiningChannel{UserIdentity: s255}
	case TypeOpenExtendedMiningChannel:
		return &OpenExtendedMiningChannel{UserIdentity: s255}
	case TypeCloseChannel:
		return &CloseChannel{ReasonCode: s255}
	case TypeSubmitSharesExtended:
		return &SubmitSharesExtended{Extranonce: b32}
	case TypeSetCustomMiningJob:
		return &SetCustomMiningJob{MiningJobToken: b255, CoinbasePrefix: b255, CoinbaseTxOutputs: b64k, MerklePath: path}
	case TypeSetupConnectionError:
		return &SetupConnectionError{ErrorCode: s255}
	case TypeReconnect:
		return &Reconnect{NewHost: s255}
	case TypeOpenStandardMiningChannelSuccess:
		return &OpenStandardMiningChannelSuccess{ExtranoncePrefix: b32}
	case TypeOpenMiningChannelError:
		return &OpenMiningChannelError{ErrorCode: s255}
	case TypeOpenExtendedMiningChannelSuccess:
		return &OpenExtendedMiningChannelSuccess{ExtranoncePrefix: b32}
	case TypeNewMiningJob:
		return &NewMiningJob{MinNTime: some}
	case TypeUpdateChannelError:
		return &UpdateChannelError{ErrorCode: s255}
	case TypeSetExtranoncePrefix:
		return &SetExtranoncePrefix{ExtranoncePrefix: b32}
	case TypeSubmitSharesError:
		return &SubmitSharesError{ErrorCode: s255}
	case TypeNewExtendedMiningJob:
		return &NewExtendedMiningJob{MinNTime: some, MerklePath: path, CoinbaseTxPrefix: b64k, CoinbaseTxSuffix: b64k}
	case TypeSetCustomMiningJobError:
		return &SetCustomMiningJobError{ErrorCode: s255}
	case TypeSetGroupChannel:
		return &SetGroupChannel{ChannelIDs: make([]uint32, maxSeq64K)}
	case TypeAllocateMiningJobToken:
		return &AllocateMiningJobToken{UserIdentifier: s255}
	case TypeAllocateMiningJobTokenSuccess:
		return &AllocateMiningJobTokenSuccess{MiningJobToken: b255, CoinbaseTxOutputs: b64k}
	case TypeDeclareMiningJob:
		return &DeclareMiningJob{MiningJobToken: b255, CoinbaseTxPrefix: b64k, CoinbaseTxSuffix: b64k, WtxidList: make([]U256, maxSeq64K), ExcessData: b64k}
	case TypeDeclareMiningJobSuccess:
		return &DeclareMiningJobSuccess{NewMiningJobToken: b255}
	case TypeDeclareMiningJobError:
		return &DeclareMiningJobError{ErrorCode: s255, ErrorDetails: b64k}
	case TypeProvideMissingTransactions:
		return &ProvideMissingTransactions{UnknownTxPositionList: make([]uint16, maxSeq64K)}
	case TypeProvideMissingTransactionsSuccess:
		// 65,535 entries sharing a block's 4,000,000 bytes.
		txs := make([][]byte, maxSeq64K)
		for i := range txs {
			txs[i] = make([]byte, 4_000_000/maxSeq64K)
		}
		txs[0] = make([]byte, 4_000_000-(maxSeq64K-1)*(4_000_000/maxSeq64K))
		return &ProvideMissingTransactionsSuccess{TransactionList: txs}
	case TypePushSolution:
		return &PushSolution{Extranonce: b32}
	}
	return newMessage(t) // all fields fixed-size
}

// TestMaxPayloadsFromDefinitions encodes the largest instance of every
// core message and checks it against the cap of the side that sends it:
// the caps are exactly the definitions' maxima (one byte less would refuse
// a legitimate message, one more is slack).
func TestMaxPayloadsFromDefinitions(t *testing.T) {
	size := func(typ uint8) int {
		p, err := AppendPayload(nil, maximal(typ))
		if err != nil {
			t.Fatalf("%s: %v", MessageName(typ), err)
		}
		return len(p)
	}
	for typ := range 256 {
		for _, c := range []*Caps{FromMiner(), FromPool(), FromJDClient(), FromJDServer()} {
			if n := c.types[typ]; n > 0 && size(uint8(typ)) != n {
				t.Errorf("%s %s: largest payload %d bytes, cap %d", MessageName(uint8(typ)), c.name, size(uint8(typ)), n)
			}
		}
	}
	if got := size(TypeSetCustomMiningJob); got != maxSetCustomMiningJob {
		t.Errorf("SetCustomMiningJob: %d bytes", got)
	}
	for _, c := range []struct {
		caps *Caps
		h    Header
		want int
	}{
		{FromMiner(), Header{MsgType: TypeSetupConnection}, 1291},
		{FromMiner(), Header{ExtensionType: ChannelMsgBit, MsgType: TypeSubmitSharesExtended}, 57},
		{FromMiner(), Header{ExtensionType: ChannelMsgBit, MsgType: TypeSubmitSharesStandard}, 24},
		{FromMiner(), Header{MsgType: TypeOpenExtendedMiningChannel}, 298},
		{FromMiner(), Header{ExtensionType: ChannelMsgBit, MsgType: TypeSetCustomMiningJob}, 74274},  // a work-selection miner's
		{FromMiner(), Header{MsgType: TypeDeclareMiningJob}, 1291},                                   // not on a mining connection
		{FromMiner(), Header{ExtensionType: ChannelMsgBit, MsgType: TypeNewExtendedMiningJob}, 1291}, // a pool's message
		{FromMiner(), Header{ExtensionType: 0x4001, MsgType: TypeSubmitSharesStandard}, 1291},        // an extension's
		{FromPool(), Header{ExtensionType: ChannelMsgBit, MsgType: TypeNewExtendedMiningJob}, 139253},
		{FromPool(), Header{MsgType: TypeSetGroupChannel}, 262146},
		{FromPool(), Header{ExtensionType: 0x4001, MsgType: 3}, 262146},
		{FromJDClient(), Header{MsgType: TypeDeclareMiningJob}, 2293997},
		{FromJDClient(), Header{MsgType: TypeProvideMissingTransactionsSuccess}, 4196611},
		{FromJDClient(), Header{MsgType: TypeAllocateMiningJobToken}, 260},
		{FromJDClient(), Header{MsgType: TypeOpenExtendedMiningChannel}, 1291}, // not a JD message
		{FromJDServer(), Header{MsgType: TypeProvideMissingTransactions}, 131076},
		{FromJDServer(), Header{MsgType: TypeDeclareMiningJobError}, 65797},
	} {
		if got := c.caps.Limit(c.h); got != c.want {
			t.Errorf("%s, %s: cap %d, want %d", c.caps.name, MessageName(c.h.MsgType), got, c.want)
		}
	}
}

// TestMinerFrameOverCapRefused: a miner's frame one byte over its type's
// cap is refused on the header, with an error naming the message, the
// length and the cap, plaintext and encrypted; the largest legitimate
// miner messages get through a pool's default caps.
func TestMinerFrameOverCapRefused(t *testing.T) {
	over := fixture(t, `0080 | channel_msg
		1b | SubmitSharesExtended
		3a0000 | msg_length 58, cap 57`)
	_, _, err := NewFrameReader(bytes.NewReader(over), FromMiner()).Next()
	const want = "sv2: SubmitSharesExtended: msg_length 58 over the cap 57 for frames from a miner"
	if !errors.Is(err, ErrFrameTooLarge) || !strings.Contains(err.Error(), want) {
		t.Fatalf("plaintext: %v, want %q", err, want)
	}
	auth := fixedKey(t, 0x42)
	srv, err := NewServer(ServerConfig{Authority: auth})
	if err != nil {
		t.Fatal(err)
	}
	cl, sv, cerr, serr := pipePair(t, srv, ClientConfig{Authority: XOnly(auth)})
	if cerr != nil || serr != nil {
		t.Fatalf("handshake: client %v, server %v", cerr, serr)
	}
	go func() {
		for _, typ := range []uint8{TypeSetupConnection, TypeOpenExtendedMiningChannel, TypeSubmitSharesExtended, TypeCloseChannel} {
			cl.WriteMessages(maximal(typ))
		}
		cl.WriteFrame(Header{MsgType: TypeSetupConnection}, make([]byte, 1292))
	}()
	for _, typ := range []uint8{TypeSetupConnection, TypeOpenExtendedMiningChannel, TypeSubmitSharesExtended, TypeCloseChannel} {
		h, m, err := sv.ReadMessage()
		if err != nil || h.MsgType != typ || m == nil {
			t.Fatalf("largest %s: %v", MessageName(typ), err)
		}
	}
	_, _, err = sv.ReadFrame()
	const want2 = "sv2: SetupConnection: msg_length 1292 over the cap 1291 for frames from a miner"
	if !errors.Is(err, ErrFrameTooLarge) || !strings.Contains(err.Error(), want2) {
		t.Fatalf("encrypted: %v, want %q", err, want2)
	}
	// The pool's largest job reaches a miner with the client's defaults.
	cl2, sv2c, cerr, serr := pipePair(t, srv, ClientConfig{Authority: XOnly(auth)})
	if cerr != nil || serr != nil {
		t.Fatalf("handshake: client %v, server %v", cerr, serr)
	}
	go sv2c.WriteMessages(maximal(TypeNewExtendedMiningJob))
	if h, m, err := cl2.ReadMessage(); err != nil || h.Length != 139253 || len(m.(*NewExtendedMiningJob).CoinbaseTxSuffix) != MaxB064K {
		t.Fatalf("largest NewExtendedMiningJob: %+v %v", h, err)
	}
}

// TestHeaderClaimDoesNotAllocate: many connections each receive a header
// claiming the largest NewExtendedMiningJob (139,253 bytes, within the
// cap) and then only 1,000 bytes before the peer stops. The readers
// allocate in proportion to what arrived, not to what the header claims:
// before, each allocated the claimed ciphertext on the header alone.
func TestHeaderClaimDoesNotAllocate(t *testing.T) {
	const conns, claimed, sent = 200, maxNewExtendedMiningJob, 1000
	cli, srv := fixedPair(t)
	var hb [HeaderSize]byte
	AppendHeader(hb[:0], Header{ExtensionType: ChannelMsgBit, MsgType: TypeNewExtendedMiningJob, Length: claimed})
	enc, err := srv.send.encryptWithAd(nil, nil, hb[:])
	if err != nil {
		t.Fatal(err)
	}
	stream := append(enc, bytes.Repeat([]byte{9}, sent)...)
	readers := make([]*Conn, conns)
	for i := range readers {
		readers[i] = newConn(rw{bytes.NewReader(stream), io.Discard}, cli, FromPool())
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for _, c := range readers {
		if _, _, err := c.ReadFrame(); err != io.ErrUnexpectedEOF {
			t.Fatalf("near-complete frame: %v, want io.ErrUnexpectedEOF", err)
		}
	}
	runtime.ReadMemStats(&after)
	perConn := int(after.TotalAlloc-before.TotalAlloc) / conns
	if perConn > 4*sent {
		t.Fatalf("%d bytes allocated per connection for %d bytes received (header claims %d)", perConn, sent, claimed)
	}
	// The plaintext reader likewise.
	plain := append(AppendHeader(nil, Header{MsgType: TypeSetGroupChannel, Length: maxSetGroupChannel}), make([]byte, sent)...)
	runtime.ReadMemStats(&before)
	for range conns {
		if _, _, err := NewFrameReader(bytes.NewReader(plain), FromPool()).Next(); err != io.ErrUnexpectedEOF {
			t.Fatalf("plaintext near-complete frame: %v", err)
		}
	}
	runtime.ReadMemStats(&after)
	if perConn := int(after.TotalAlloc-before.TotalAlloc) / conns; perConn > 4*sent {
		t.Fatalf("plaintext: %d bytes allocated per reader for %d bytes received (header claims %d)", perConn, sent, maxSetGroupChannel)
	}
}
