package sv2

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/big"
	"strings"
)

const b58Alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

// authorityKeyVersion is the U16 LE version prefix of an encoded authority
// key: [1, 0].
var authorityKeyVersion = [2]byte{1, 0}

// EncodeAuthorityKey returns the base58check text of an x-only authority
// key as it appears in stratum2+tcp URLs: base58 of version [1, 0], the 32
// key bytes and the first 4 bytes of their double SHA-256.
func EncodeAuthorityKey(key [32]byte) string {
	payload := append(authorityKeyVersion[:], key[:]...)
	return base58Encode(append(payload, checksum(payload)...))
}

// ParseAuthorityKey decodes EncodeAuthorityKey's text.
func ParseAuthorityKey(s string) ([32]byte, error) {
	raw, err := base58Decode(s)
	if err != nil {
		return [32]byte{}, fmt.Errorf("sv2: authority key %q: %w", s, err)
	}
	if len(raw) != 2+32+4 {
		return [32]byte{}, fmt.Errorf("sv2: authority key %q: %d bytes decoded, want 38", s, len(raw))
	}
	body, sum := raw[:34], raw[34:]
	if !bytes.Equal(checksum(body), sum) {
		return [32]byte{}, fmt.Errorf("sv2: authority key %q: checksum mismatch", s)
	}
	if body[0] != authorityKeyVersion[0] || body[1] != authorityKeyVersion[1] {
		return [32]byte{}, fmt.Errorf("sv2: authority key %q: version prefix %x, want 0100", s, body[:2])
	}
	return [32]byte(body[2:]), nil
}

func checksum(b []byte) []byte {
	h := sha256.Sum256(b)
	h = sha256.Sum256(h[:])
	return h[:4]
}

func base58Encode(b []byte) string {
	n := new(big.Int).SetBytes(b)
	var out []byte
	mod, base := new(big.Int), big.NewInt(58)
	for n.Sign() > 0 {
		n.DivMod(n, base, mod)
		out = append(out, b58Alphabet[mod.Int64()])
	}
	for _, c := range b {
		if c != 0 {
			break
		}
		out = append(out, '1')
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return string(out)
}

func base58Decode(s string) ([]byte, error) {
	if s == "" {
		return nil, errors.New("empty")
	}
	n, base := new(big.Int), big.NewInt(58)
	zeros := 0
	for i, r := range s {
		d := strings.IndexRune(b58Alphabet, r)
		if d < 0 {
			return nil, fmt.Errorf("character %q at %d is not base58", r, i)
		}
		if d == 0 && n.Sign() == 0 {
			zeros++
		}
		n.Mul(n, base)
		n.Add(n, big.NewInt(int64(d)))
	}
	return append(make([]byte, zeros), n.Bytes()...), nil
}
