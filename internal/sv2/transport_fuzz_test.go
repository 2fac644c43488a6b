package sv2

import (
	"bytes"
	"errors"
	"io"
	"sync"
	"testing"
)

// rw joins a reader and a discarding writer.
type rw struct {
	io.Reader
	io.Writer
}

var (
	fixedOnce sync.Once
	fixedCli  handshakeResult
	fixedSrv  handshakeResult
)

// fixedPair is detPair computed once: the fuzz targets take fresh copies
// of its cipher states (counters at 0) instead of a handshake per input.
func fixedPair(t testing.TB) (cli, srv handshakeResult) {
	fixedOnce.Do(func() { _, _, fixedCli, fixedSrv = detPair(t) })
	return fixedCli, fixedSrv
}

// encryptedStream is every fixture message encrypted by the client side of
// the fixed-key handshake.
func encryptedStream(t testing.TB) []byte {
	cli, _ := fixedPair(t)
	var wire bytes.Buffer
	w := newConn(&wire, cli, nil)
	for _, c := range messageCases() {
		if err := w.WriteMessages(c.msg); err != nil {
			t.Fatal(err)
		}
	}
	return wire.Bytes()
}

// FuzzTransportRead feeds arbitrary bytes, split across reads anywhere, to
// the server side of the fixed-key handshake: it must never panic, never
// return a payload over its type's cap from a miner, and once it fails it
// stays failed.
func FuzzTransportRead(f *testing.F) {
	f.Add(encryptedStream(f), []byte{5, 9})
	f.Add(encryptedStream(f)[:40], []byte{})
	f.Fuzz(func(t *testing.T, data, sizes []byte) {
		_, srv := fixedPair(t)
		caps := FromMiner()
		c := newConn(rw{&chunkReader{data: data, sizes: sizes}, io.Discard}, srv, caps)
		for {
			h, p, err := c.ReadFrame()
			if err != nil {
				if _, _, again := c.ReadFrame(); again == nil {
					t.Fatal("a read succeeded after a failed one")
				}
				return
			}
			if len(p) != int(h.Length) || len(p) > caps.Limit(h) {
				t.Fatalf("payload %d bytes, header %d", len(p), h.Length)
			}
			Decode(h, p)
		}
	})
}

// FuzzTransportRoundTrip encrypts a fuzzer-chosen frame, reads it back
// split across reads, then flips one fuzzer-chosen bit: the clean copy must
// come back exactly, the flipped one must fail authentication.
func FuzzTransportRoundTrip(f *testing.F) {
	f.Add(uint16(0x8000), uint8(0x1a), bytes.Repeat([]byte{1}, 24), []byte{3}, uint32(7))
	f.Add(uint16(0), uint8(0), []byte{}, []byte{}, uint32(0))
	f.Add(uint16(0x4001), uint8(9), bytes.Repeat([]byte{7}, MaxChunk+3), []byte{200, 1}, uint32(65540))
	f.Fuzz(func(t *testing.T, ext uint16, typ uint8, payload, sizes []byte, flip uint32) {
		cli, srv := fixedPair(t)
		var wire bytes.Buffer
		w := newConn(&wire, cli, nil)
		h := Header{ExtensionType: ext, MsgType: typ}
		if err := w.WriteFrame(h, payload); err != nil {
			t.Fatal(err)
		}
		if want := EncHeaderSize + CiphertextLen(len(payload)); wire.Len() != want {
			t.Fatalf("%d bytes on the wire, want %d", wire.Len(), want)
		}
		b := wire.Bytes()
		r := newConn(rw{&chunkReader{data: append([]byte(nil), b...), sizes: sizes}, io.Discard}, srv, UniformCaps(1<<20))
		gh, gp, err := r.ReadFrame()
		if err != nil || gh.ExtensionType != ext || gh.MsgType != typ || !bytes.Equal(gp, payload) {
			t.Fatalf("round trip: %+v %v", gh, err)
		}
		_, srv2 := fixedPair(t)
		bad := append([]byte(nil), b...)
		bit := int(flip) % (len(bad) * 8)
		bad[bit/8] ^= 1 << (bit % 8)
		r = newConn(rw{bytes.NewReader(bad), io.Discard}, srv2, UniformCaps(1<<20))
		if _, _, err := r.ReadFrame(); !errors.Is(err, ErrDecrypt) && !errors.Is(err, ErrFrameTooLarge) && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("flipped bit %d accepted: %v", bit, err)
		}
	})
}

func writeTransportSeeds(t *testing.T, write func(target, name string, args ...[]byte)) {
	s := encryptedStream(t)
	write("FuzzTransportRead", "all-messages", s, []byte{1, 2, 3})
	write("FuzzTransportRead", "header-only", s[:EncHeaderSize], nil)
	bad := append([]byte(nil), s...)
	bad[30] ^= 4
	write("FuzzTransportRead", "tampered-payload", bad, []byte{0})
	cli, _ := fixedPair(t)
	var wire bytes.Buffer
	w := newConn(&wire, cli, nil)
	w.WriteMessages(maximal(TypeSetupConnection))
	w.WriteFrame(Header{ExtensionType: ChannelMsgBit, MsgType: TypeSubmitSharesExtended}, make([]byte, maxSubmitExtended+1))
	write("FuzzTransportRead", "largest-setup-then-over-cap", wire.Bytes(), []byte{7, 200, 3})
}
