package chainmath

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
)

// HeaderSize is the size of a serialized Bitcoin block header.
const HeaderSize = 80

// Hash is a 32-byte hash in internal byte order (as sha256d produces it).
type Hash [32]byte

// DoubleSHA256 returns sha256(sha256(b)).
func DoubleSHA256(b []byte) Hash {
	first := sha256.Sum256(b)
	return sha256.Sum256(first[:])
}

// String returns the display hex of h: the bytes reversed, as block
// explorers and RPC interfaces print block hashes and txids.
func (h Hash) String() string {
	var r [32]byte
	for i := range h {
		r[i] = h[31-i]
	}
	return hex.EncodeToString(r[:])
}

// HashFromDisplay parses a 64-character display-order hex string.
func HashFromDisplay(s string) (Hash, error) {
	var h Hash
	if len(s) != 64 {
		return h, fmt.Errorf("hash %q: want 64 hex characters, have %d", s, len(s))
	}
	var r [32]byte
	if _, err := hex.Decode(r[:], []byte(s)); err != nil {
		return h, fmt.Errorf("hash %q: %w", s, err)
	}
	for i := range r {
		h[i] = r[31-i]
	}
	return h, nil
}

// Header is the parsed form of an 80-byte block header. Hashes are in
// internal byte order.
type Header struct {
	Version    uint32
	PrevBlock  Hash
	MerkleRoot Hash
	Time       uint32
	Bits       uint32
	Nonce      uint32
}

// Bytes serializes h into Bitcoin's 80-byte header format.
func (h *Header) Bytes() [HeaderSize]byte {
	var b [HeaderSize]byte
	binary.LittleEndian.PutUint32(b[0:], h.Version)
	copy(b[4:36], h.PrevBlock[:])
	copy(b[36:68], h.MerkleRoot[:])
	binary.LittleEndian.PutUint32(b[68:], h.Time)
	binary.LittleEndian.PutUint32(b[72:], h.Bits)
	binary.LittleEndian.PutUint32(b[76:], h.Nonce)
	return b
}

// Hash returns the block hash: sha256d of the serialized header.
func (h *Header) Hash() Hash {
	b := h.Bytes()
	return DoubleSHA256(b[:])
}

// ParseHeader decodes an 80-byte header.
func ParseHeader(b []byte) (Header, error) {
	var h Header
	if len(b) != HeaderSize {
		return h, fmt.Errorf("block header: want %d bytes, have %d", HeaderSize, len(b))
	}
	h.Version = binary.LittleEndian.Uint32(b[0:])
	copy(h.PrevBlock[:], b[4:36])
	copy(h.MerkleRoot[:], b[36:68])
	h.Time = binary.LittleEndian.Uint32(b[68:])
	h.Bits = binary.LittleEndian.Uint32(b[72:])
	h.Nonce = binary.LittleEndian.Uint32(b[76:])
	return h, nil
}

// StratumPrevHash encodes a previous-block hash for mining.notify: the
// internal bytes with each 4-byte word byte-swapped, as 64 hex characters.
func StratumPrevHash(h Hash) string {
	var w [32]byte
	for i := 0; i < 32; i += 4 {
		w[i], w[i+1], w[i+2], w[i+3] = h[i+3], h[i+2], h[i+1], h[i]
	}
	return hex.EncodeToString(w[:])
}

// ParseStratumPrevHash reverses StratumPrevHash.
func ParseStratumPrevHash(s string) (Hash, error) {
	var h Hash
	if len(s) != 64 {
		return h, fmt.Errorf("prevhash %q: want 64 hex characters, have %d", s, len(s))
	}
	var w [32]byte
	if _, err := hex.Decode(w[:], []byte(s)); err != nil {
		return h, fmt.Errorf("prevhash %q: %w", s, err)
	}
	for i := 0; i < 32; i += 4 {
		h[i], h[i+1], h[i+2], h[i+3] = w[i+3], w[i+2], w[i+1], w[i]
	}
	return h, nil
}
