package sv2

import (
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcec/v2/ellswift"
	"github.com/btcsuite/btcd/btcec/v2/schnorr"
	"golang.org/x/crypto/chacha20poly1305"
)

// ProtocolName is the Noise protocol name hashed into the initial state.
const ProtocolName = "Noise_NX_Secp256k1+EllSwift_ChaChaPoly_SHA256"

// Sizes of the handshake's parts.
const (
	EllSwiftSize    = 64                                                                // an ElligatorSwift-encoded public key
	MACSize         = 16                                                                // a Poly1305 tag
	CertMessageSize = 74                                                                // SIGNATURE_NOISE_MESSAGE: version, valid_from, not_valid_after, signature
	Act1Size        = EllSwiftSize                                                      // initiator -> responder: e
	Act2Size        = EllSwiftSize + EllSwiftSize + MACSize + CertMessageSize + MACSize // 234: e, encrypted s, encrypted certificate
)

// Errors of the handshake and transport.
var (
	ErrDecrypt         = errors.New("sv2: authentication failed (ciphertext tampered or wrong key)")
	ErrNonceExhausted  = errors.New("sv2: nonce space exhausted")
	ErrBadCertificate  = errors.New("sv2: server certificate refused")
	ErrHandshakeLength = errors.New("sv2: handshake message has the wrong length")
)

// cipherState is the Noise CipherState: a ChaCha20-Poly1305 key and a
// 64-bit counter used as the nonce (4 zero bytes, then the counter
// little-endian).
type cipherState struct {
	aead  cipher.AEAD
	n     uint64
	nonce [chacha20poly1305.NonceSize]byte
}

func (c *cipherState) initializeKey(k [32]byte) {
	a, err := chacha20poly1305.New(k[:])
	if err != nil {
		panic(err) // only a wrong key length fails, and k is 32 bytes
	}
	c.aead, c.n = a, 0
}

func (c *cipherState) hasKey() bool { return c.aead != nil }

func (c *cipherState) nextNonce() ([]byte, error) {
	// Noise reserves the counter value 2^64-1.
	if c.n == math.MaxUint64 {
		return nil, ErrNonceExhausted
	}
	binary.LittleEndian.PutUint64(c.nonce[4:], c.n)
	return c.nonce[:], nil
}

// encryptWithAd appends the ciphertext of pt to dst (pt itself when there
// is no key yet).
func (c *cipherState) encryptWithAd(dst, ad, pt []byte) ([]byte, error) {
	if !c.hasKey() {
		return append(dst, pt...), nil
	}
	nonce, err := c.nextNonce()
	if err != nil {
		return dst, err
	}
	c.n++
	return c.aead.Seal(dst, nonce, pt, ad), nil
}

// decryptWithAd appends the plaintext of ct to dst; on failure the counter
// does not move.
func (c *cipherState) decryptWithAd(dst, ad, ct []byte) ([]byte, error) {
	if !c.hasKey() {
		return append(dst, ct...), nil
	}
	nonce, err := c.nextNonce()
	if err != nil {
		return dst, err
	}
	out, err := c.aead.Open(dst, nonce, ct, ad)
	if err != nil {
		return dst, ErrDecrypt
	}
	c.n++
	return out, nil
}

// symmetricState is the Noise SymmetricState: chaining key, handshake hash
// and the handshake's cipher.
type symmetricState struct {
	cs cipherState
	ck [32]byte
	h  [32]byte
}

// hashedProtocolName is SHA-256 of ProtocolName (the name is over 32
// bytes, so Noise hashes it).
var hashedProtocolName = sha256.Sum256([]byte(ProtocolName))

func (s *symmetricState) init() {
	s.h = hashedProtocolName
	s.ck = s.h
	s.mixHash(nil) // the empty prologue: h = HASH(h)
}

func (s *symmetricState) mixHash(data []byte) {
	d := sha256.New()
	d.Write(s.h[:])
	d.Write(data)
	d.Sum(s.h[:0])
}

func (s *symmetricState) mixKey(ikm []byte) {
	var k [32]byte
	s.ck, k = hkdf2(s.ck[:], ikm)
	s.cs.initializeKey(k)
}

func (s *symmetricState) encryptAndHash(dst, pt []byte) ([]byte, error) {
	start := len(dst)
	dst, err := s.cs.encryptWithAd(dst, s.h[:], pt)
	if err != nil {
		return dst, err
	}
	s.mixHash(dst[start:])
	return dst, nil
}

func (s *symmetricState) decryptAndHash(ct []byte) ([]byte, error) {
	pt, err := s.cs.decryptWithAd(nil, s.h[:], ct)
	if err != nil {
		return nil, err
	}
	s.mixHash(ct)
	return pt, nil
}

// split derives the two transport ciphers: c1 carries initiator ->
// responder, c2 responder -> initiator.
func (s *symmetricState) split() (c1, c2 cipherState) {
	k1, k2 := hkdf2(s.ck[:], nil)
	c1.initializeKey(k1)
	c2.initializeKey(k2)
	return c1, c2
}

// hkdf2 is the Noise HKDF with two outputs (RFC 5869, empty info).
func hkdf2(ck, ikm []byte) (o1, o2 [32]byte) {
	m := hmac.New(sha256.New, ck)
	m.Write(ikm)
	temp := m.Sum(nil)
	m = hmac.New(sha256.New, temp)
	m.Write([]byte{1})
	m.Sum(o1[:0])
	m = hmac.New(sha256.New, temp)
	m.Write(o1[:])
	m.Write([]byte{2})
	m.Sum(o2[:0])
	return o1, o2
}

// ellKey is a secp256k1 private key with one ElligatorSwift encoding of
// its public key (the encoding is randomized; any one will do).
type ellKey struct {
	priv *btcec.PrivateKey
	ell  [EllSwiftSize]byte
}

func newEllKey(priv *btcec.PrivateKey) (ellKey, error) {
	var x btcec.FieldVal
	x.SetByteSlice(schnorr.SerializePubKey(priv.PubKey()))
	u, t, err := ellswift.XElligatorSwift(&x)
	if err != nil {
		return ellKey{}, fmt.Errorf("sv2: ElligatorSwift encoding: %w", err)
	}
	k := ellKey{priv: priv}
	copy(k.ell[:32], u.Bytes()[:])
	copy(k.ell[32:], t.Bytes()[:])
	return k, nil
}

func generateEllKey() (ellKey, error) {
	priv, err := btcec.NewPrivateKey()
	if err != nil {
		return ellKey{}, fmt.Errorf("sv2: generating a key: %w", err)
	}
	return newEllKey(priv)
}

// ecdh is the specification's ECDH: BIP324's v2 x-only ECDH, the tagged
// hash taking the initiator's encoding first.
func ecdh(k ellKey, theirs [EllSwiftSize]byte, initiator bool) ([32]byte, error) {
	h, err := ellswift.V2Ecdh(k.priv, theirs, k.ell, initiator)
	if err != nil {
		return [32]byte{}, fmt.Errorf("sv2: ECDH: %w", err)
	}
	return [32]byte(*h), nil
}

// xOnlyFromEllSwift decodes an ElligatorSwift encoding to the 32-byte
// x coordinate it stands for (every 64-byte string decodes to a point).
func xOnlyFromEllSwift(e [EllSwiftSize]byte) ([32]byte, error) {
	var u, t btcec.FieldVal
	if u.SetByteSlice(e[:32]) {
		u.Normalize()
	}
	if t.SetByteSlice(e[32:]) {
		t.Normalize()
	}
	x, err := ellswift.XSwiftEC(&u, &t)
	if err != nil {
		return [32]byte{}, fmt.Errorf("sv2: ElligatorSwift decoding: %w", err)
	}
	x.Normalize()
	return *x.Bytes(), nil
}
