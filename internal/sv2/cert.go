package sv2

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcec/v2/schnorr"
)

// CertVersion is the certificate format version powcoord signs (SRI signs
// 0 too).
const CertVersion = 0

// Certificate is the SIGNATURE_NOISE_MESSAGE the responder sends in the
// handshake: a BIP340 signature by the pool's authority key over the
// server's static key and a validity window.
type Certificate struct {
	Version       uint16
	ValidFrom     uint32 // unix seconds
	NotValidAfter uint32 // unix seconds
	Signature     [64]byte
}

// certHash is what the signature signs: SHA-256 of version (U16 LE),
// valid_from (U32 LE), not_valid_after (U32 LE) and the server's static
// key as a 32-byte x coordinate (docs/stratum-v2.md, "What the certificate
// signs").
func (c *Certificate) certHash(server [32]byte) [32]byte {
	var m [10 + 32]byte
	binary.LittleEndian.PutUint16(m[0:], c.Version)
	binary.LittleEndian.PutUint32(m[2:], c.ValidFrom)
	binary.LittleEndian.PutUint32(m[6:], c.NotValidAfter)
	copy(m[10:], server[:])
	return sha256.Sum256(m[:])
}

// SignCertificate returns a certificate for server's x-only static key,
// signed by authority, valid from from until until.
func SignCertificate(authority *btcec.PrivateKey, server [32]byte, from, until time.Time) (Certificate, error) {
	c := Certificate{Version: CertVersion, ValidFrom: unix32(from), NotValidAfter: unix32(until)}
	h := c.certHash(server)
	sig, err := schnorr.Sign(authority, h[:])
	if err != nil {
		return Certificate{}, fmt.Errorf("sv2: signing the certificate: %w", err)
	}
	copy(c.Signature[:], sig.Serialize())
	return c, nil
}

// Verify checks the certificate against the authority's x-only key, the
// server's x-only static key and the time now: valid_from <= now <=
// not_valid_after and a good BIP340 signature.
func (c *Certificate) Verify(authority, server [32]byte, now time.Time) error {
	t := unix32(now)
	if t < c.ValidFrom || t > c.NotValidAfter {
		return fmt.Errorf("%w: valid from %d to %d, now %d", ErrBadCertificate, c.ValidFrom, c.NotValidAfter, t)
	}
	pub, err := schnorr.ParsePubKey(authority[:])
	if err != nil {
		return fmt.Errorf("%w: authority key %x: %v", ErrBadCertificate, authority, err)
	}
	sig, err := schnorr.ParseSignature(c.Signature[:])
	if err != nil {
		return fmt.Errorf("%w: signature: %v", ErrBadCertificate, err)
	}
	h := c.certHash(server)
	if !sig.Verify(h[:], pub) {
		return fmt.Errorf("%w: signature does not verify under authority key %x", ErrBadCertificate, authority)
	}
	return nil
}

func (c *Certificate) marshal() []byte {
	b := make([]byte, 0, CertMessageSize)
	b = binary.LittleEndian.AppendUint16(b, c.Version)
	b = binary.LittleEndian.AppendUint32(b, c.ValidFrom)
	b = binary.LittleEndian.AppendUint32(b, c.NotValidAfter)
	return append(b, c.Signature[:]...)
}

func parseCertificate(b []byte) (Certificate, error) {
	if len(b) != CertMessageSize {
		return Certificate{}, fmt.Errorf("sv2: certificate of %d bytes, want %d: %w", len(b), CertMessageSize, ErrHandshakeLength)
	}
	c := Certificate{
		Version:       binary.LittleEndian.Uint16(b[0:]),
		ValidFrom:     binary.LittleEndian.Uint32(b[2:]),
		NotValidAfter: binary.LittleEndian.Uint32(b[6:]),
	}
	copy(c.Signature[:], b[10:])
	return c, nil
}

// unix32 clamps a time to the U32 seconds the certificate carries.
func unix32(t time.Time) uint32 {
	s := t.Unix()
	switch {
	case s < 0:
		return 0
	case s > 1<<32-1:
		return 1<<32 - 1
	}
	return uint32(s)
}

// XOnly returns the 32-byte BIP340 x-only encoding of a key's public key.
func XOnly(priv *btcec.PrivateKey) [32]byte {
	return [32]byte(schnorr.SerializePubKey(priv.PubKey()))
}
