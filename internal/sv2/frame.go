package sv2

import (
	"errors"
	"fmt"
	"io"
)

// HeaderSize is the length of the frame header: extension_type U16,
// msg_type U8, msg_length U24.
const HeaderSize = 6

// ChannelMsgBit is the channel_msg bit of extension_type: the most
// significant bit of the U16 value, so the second header byte on the wire
// is 0x80 (docs/stratum-v2.md, "channel_msg bit").
const ChannelMsgBit uint16 = 0x8000

// ErrFrameTooLarge reports a frame whose msg_length is over the cap (see
// Caps).
var ErrFrameTooLarge = errors.New("frame payload over the limit")

// ErrUnknownMessage reports a core message type (extension 0) this package
// does not know.
var ErrUnknownMessage = errors.New("unknown message type")

// Header is a decoded frame header.
type Header struct {
	ExtensionType uint16 // with the channel_msg bit as received
	MsgType       uint8
	Length        uint32 // payload length in bytes, 0..2^24-1
}

// ChannelMsg reports whether the channel_msg bit is set.
func (h Header) ChannelMsg() bool { return h.ExtensionType&ChannelMsgBit != 0 }

// Extension returns the extension type without the channel_msg bit.
func (h Header) Extension() uint16 { return h.ExtensionType &^ ChannelMsgBit }

// AppendHeader appends the 6 header bytes.
func AppendHeader(dst []byte, h Header) []byte {
	return append(dst, byte(h.ExtensionType), byte(h.ExtensionType>>8), h.MsgType,
		byte(h.Length), byte(h.Length>>8), byte(h.Length>>16))
}

// ParseHeader decodes 6 header bytes.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderSize {
		return Header{}, fmt.Errorf("sv2: frame header: %d bytes, need %d: %w", len(b), HeaderSize, ErrShort)
	}
	return Header{
		ExtensionType: uint16(b[0]) | uint16(b[1])<<8,
		MsgType:       b[2],
		Length:        uint32(b[3]) | uint32(b[4])<<8 | uint32(b[5])<<16,
	}, nil
}

// Message is one message of the Common or Mining protocol.
type Message interface {
	// MsgType returns the message's msg_type number.
	MsgType() uint8
	encode(*enc)
	decode(*dec)
	check(*lengths)
}

// MessageName returns the specification's name of a core message type, or
// a hex placeholder for an unknown one.
func MessageName(t uint8) string {
	if n := messageNames[t]; n != "" {
		return n
	}
	return fmt.Sprintf("unknown(0x%02x)", t)
}

// IsChannelMsg reports whether core message type t is sent with the
// channel_msg bit set (the bit column of the message type table).
func IsChannelMsg(t uint8) bool { return channelMsg[t] }

// AppendPayload appends m's serialized payload to dst. It fails, naming the
// field, if a variable-length field is over its type's limit.
func AppendPayload(dst []byte, m Message) ([]byte, error) {
	var l lengths
	m.check(&l)
	if l.err != nil {
		return dst, fmt.Errorf("sv2: %s: %w", MessageName(m.MsgType()), l.err)
	}
	e := enc{b: dst}
	m.encode(&e)
	return e.b, nil
}

// HeaderFor returns the frame header of m with a payload of n bytes:
// extension 0, the channel_msg bit as the message type table says.
func HeaderFor(m Message, n int) Header {
	h := Header{MsgType: m.MsgType(), Length: uint32(n)}
	if channelMsg[h.MsgType] {
		h.ExtensionType = ChannelMsgBit
	}
	return h
}

// AppendFrame appends m as a plaintext frame (header and payload).
func AppendFrame(dst []byte, m Message) ([]byte, error) {
	start := len(dst)
	dst = append(dst, make([]byte, HeaderSize)...)
	dst, err := AppendPayload(dst, m)
	if err != nil {
		return dst[:start], err
	}
	n := len(dst) - start - HeaderSize
	if n > MaxU24 {
		return dst[:start], fmt.Errorf("sv2: %s: payload %d bytes over msg_length's limit", MessageName(m.MsgType()), n)
	}
	AppendHeader(dst[start:start], HeaderFor(m, n))
	return dst, nil
}

// Decode parses a frame's payload into its message. A frame of a non-zero
// extension yields (nil, nil): the specification says messages of unknown
// extensions are ignored (powcoord negotiates none). An unknown core
// message type yields ErrUnknownMessage.
func Decode(h Header, payload []byte) (Message, error) {
	if h.Extension() != 0 {
		return nil, nil
	}
	m := newMessage(h.MsgType)
	if m == nil {
		return nil, fmt.Errorf("sv2: message type 0x%02x: %w", h.MsgType, ErrUnknownMessage)
	}
	d := dec{b: payload}
	m.decode(&d)
	if err := d.end(MessageName(h.MsgType)); err != nil {
		return nil, err
	}
	return m, nil
}

// FrameReader reads plaintext frames from an io.Reader, however the input
// is split across reads, refusing any frame whose payload is over its cap
// before reading it, and growing its buffer as payload bytes arrive.
type FrameReader struct {
	r    io.Reader
	caps *Caps
	hdr  [HeaderSize]byte
	buf  []byte
}

// NewFrameReader returns a FrameReader with the given caps (nil:
// FromMiner()).
func NewFrameReader(r io.Reader, caps *Caps) *FrameReader {
	if caps == nil {
		caps = FromMiner()
	}
	return &FrameReader{r: r, caps: caps}
}

// Next reads one frame. The payload is valid until the next call. io.EOF
// is returned only at a clean frame boundary; a frame cut short gives
// io.ErrUnexpectedEOF.
func (fr *FrameReader) Next() (Header, []byte, error) {
	if _, err := io.ReadFull(fr.r, fr.hdr[:]); err != nil {
		return Header{}, nil, err
	}
	h, _ := ParseHeader(fr.hdr[:])
	if err := fr.caps.check(h); err != nil {
		return h, nil, err
	}
	p, err := readGrowing(fr.r, fr.buf, int(h.Length))
	fr.buf = p
	if err != nil {
		return h, nil, err
	}
	return h, p, nil
}
