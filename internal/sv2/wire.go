// Package sv2 implements the Stratum V2 wire protocol: the 6-byte frame
// header, the specification's data types, the messages of the Common and
// Mining protocols, the Noise_NX_Secp256k1+EllSwift_ChaChaPoly_SHA256
// handshake with the pool authority's certificate, and the encrypted
// transport. docs/stratum-v2.md records how each ambiguous place in the
// specification was read and why.
//
// Nothing here knows about jobs, shares or the ledger: the coordinator and
// the agent translate between these messages and their own types.
package sv2

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// ErrShort reports a payload that ended before a field did.
var ErrShort = errors.New("payload too short")

// Limits of the length-prefixed types, in elements (bytes for the byte
// arrays and strings).
const (
	MaxB032   = 32
	MaxB0255  = 255
	MaxB064K  = 1<<16 - 1
	MaxB016M  = 1<<24 - 1
	MaxU24    = 1<<24 - 1
	maxSeq255 = 255
	maxSeq64K = 1<<16 - 1
)

// U256 is the specification's U256: 32 bytes, little-endian, in the order
// they appear on the wire (for a hash: its raw SHA-256 output order).
type U256 [32]byte

// OptionU32 is OPTION[U32]: absent, or one U32.
type OptionU32 struct {
	Valid bool
	Value uint32
}

// SomeU32 returns an OptionU32 holding v.
func SomeU32(v uint32) OptionU32 { return OptionU32{Valid: true, Value: v} }

// enc appends fields to a payload. Length checks happen before encoding
// (in Validate), so the append functions only truncate defensively.
type enc struct{ b []byte }

func (e *enc) u8(v uint8)   { e.b = append(e.b, v) }
func (e *enc) u16(v uint16) { e.b = binary.LittleEndian.AppendUint16(e.b, v) }
func (e *enc) u24(v uint32) { e.b = append(e.b, byte(v), byte(v>>8), byte(v>>16)) }
func (e *enc) u32(v uint32) { e.b = binary.LittleEndian.AppendUint32(e.b, v) }
func (e *enc) u64(v uint64) { e.b = binary.LittleEndian.AppendUint64(e.b, v) }
func (e *enc) f32(v float32) {
	e.u32(math.Float32bits(v))
}
func (e *enc) boolean(v bool) {
	if v {
		e.u8(1)
	} else {
		e.u8(0)
	}
}
func (e *enc) u256(v *U256)  { e.b = append(e.b, v[:]...) }
func (e *enc) str(s string)  { e.b0255([]byte(s)) }
func (e *enc) b032(v []byte) { e.u8(uint8(len(v))); e.b = append(e.b, v...) }
func (e *enc) b0255(v []byte) {
	e.u8(uint8(len(v)))
	e.b = append(e.b, v...)
}
func (e *enc) b064k(v []byte) { e.u16(uint16(len(v))); e.b = append(e.b, v...) }
func (e *enc) b016m(v []byte) { e.u24(uint32(len(v))); e.b = append(e.b, v...) }
func (e *enc) optU32(v OptionU32) {
	if v.Valid {
		e.u8(1)
		e.u32(v.Value)
	} else {
		e.u8(0)
	}
}
func (e *enc) seq255U256(v []U256) {
	e.u8(uint8(len(v)))
	for i := range v {
		e.u256(&v[i])
	}
}
func (e *enc) seq64kU32(v []uint32) {
	e.u16(uint16(len(v)))
	for _, x := range v {
		e.u32(x)
	}
}

// dec reads fields from a payload; the first failure sticks and names the
// field, later reads return zero values.
type dec struct {
	b   []byte
	off int
	err error
}

func (d *dec) take(field string, n int) []byte {
	if d.err != nil {
		return nil
	}
	if len(d.b)-d.off < n {
		d.err = fmt.Errorf("%s: need %d bytes at offset %d, have %d: %w", field, n, d.off, len(d.b)-d.off, ErrShort)
		return nil
	}
	p := d.b[d.off : d.off+n]
	d.off += n
	return p
}

func (d *dec) u8(f string) uint8 {
	if p := d.take(f, 1); p != nil {
		return p[0]
	}
	return 0
}
func (d *dec) u16(f string) uint16 {
	if p := d.take(f, 2); p != nil {
		return binary.LittleEndian.Uint16(p)
	}
	return 0
}
func (d *dec) u24(f string) uint32 {
	if p := d.take(f, 3); p != nil {
		return uint32(p[0]) | uint32(p[1])<<8 | uint32(p[2])<<16
	}
	return 0
}
func (d *dec) u32(f string) uint32 {
	if p := d.take(f, 4); p != nil {
		return binary.LittleEndian.Uint32(p)
	}
	return 0
}
func (d *dec) u64(f string) uint64 {
	if p := d.take(f, 8); p != nil {
		return binary.LittleEndian.Uint64(p)
	}
	return 0
}
func (d *dec) f32(f string) float32 { return math.Float32frombits(d.u32(f)) }

// boolean reads BOOL: only the least significant bit means anything.
func (d *dec) boolean(f string) bool { return d.u8(f)&1 == 1 }

func (d *dec) u256(f string) (v U256) {
	if p := d.take(f, 32); p != nil {
		copy(v[:], p)
	}
	return v
}

func (d *dec) bytesN(f string, n int) []byte {
	p := d.take(f, n)
	if p == nil {
		return nil
	}
	return append([]byte(nil), p...)
}

func (d *dec) b032(f string) []byte {
	n := int(d.u8(f + " length"))
	if d.err == nil && n > MaxB032 {
		d.err = fmt.Errorf("%s: B0_32 length %d over 32", f, n)
		return nil
	}
	return d.bytesN(f, n)
}
func (d *dec) b0255(f string) []byte { return d.bytesN(f, int(d.u8(f+" length"))) }
func (d *dec) str(f string) string   { return string(d.b0255(f)) }
func (d *dec) b064k(f string) []byte { return d.bytesN(f, int(d.u16(f+" length"))) }
func (d *dec) b016m(f string) []byte { return d.bytesN(f, int(d.u24(f+" length"))) }

func (d *dec) optU32(f string) OptionU32 {
	switch n := d.u8(f + " length"); {
	case d.err != nil:
	case n == 0:
	case n == 1:
		return SomeU32(d.u32(f))
	default:
		d.err = fmt.Errorf("%s: OPTION length %d, must be 0 or 1", f, n)
	}
	return OptionU32{}
}

func (d *dec) seq255U256(f string) []U256 {
	n := int(d.u8(f + " length"))
	if d.err != nil {
		return nil
	}
	if len(d.b)-d.off < 32*n {
		d.take(f, 32*n)
		return nil
	}
	v := make([]U256, n)
	for i := range v {
		v[i] = d.u256(f)
	}
	return v
}

func (d *dec) seq64kU32(f string) []uint32 {
	n := int(d.u16(f + " length"))
	if d.err != nil {
		return nil
	}
	if len(d.b)-d.off < 4*n {
		d.take(f, 4*n)
		return nil
	}
	v := make([]uint32, n)
	for i := range v {
		v[i] = d.u32(f)
	}
	return v
}

// end fails if bytes are left over: without negotiated extensions there
// are no TLV fields, so trailing bytes mean a malformed message.
func (d *dec) end(msg string) error {
	if d.err != nil {
		return fmt.Errorf("sv2: %s: %w", msg, d.err)
	}
	if d.off != len(d.b) {
		return fmt.Errorf("sv2: %s: %d trailing bytes after the last field", msg, len(d.b)-d.off)
	}
	return nil
}

// lengths collects length-limit violations before encoding.
type lengths struct{ err error }

func (l *lengths) check(field string, n, max int) {
	if l.err == nil && n > max {
		l.err = fmt.Errorf("%s: length %d over the limit %d", field, n, max)
	}
}
