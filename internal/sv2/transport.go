package sv2

import (
	"fmt"
	"io"
	"sync"
)

// Transport limits: a Noise message is at most 65535 bytes of ciphertext,
// so a payload travels in chunks of at most 65519 plaintext bytes, each
// with its own tag and nonce.
const (
	MaxNoiseMessage = 65535
	MaxChunk        = MaxNoiseMessage - MACSize
	EncHeaderSize   = HeaderSize + MACSize // 22
)

// CiphertextLen returns the bytes on the wire after the encrypted header
// for a payload of n plaintext bytes.
func CiphertextLen(n int) int {
	full, rest := n/MaxChunk, n%MaxChunk
	if rest > 0 {
		rest += MACSize
	}
	return full*MaxNoiseMessage + rest
}

// Conn is an encrypted SV2 connection after the handshake. Writes may come
// from several goroutines; reads from one at a time. After any error the
// connection is unusable (the cipher counters are out of step) and the
// caller closes it.
type Conn struct {
	rw io.ReadWriter

	wmu  sync.Mutex
	send cipherState
	wbuf []byte
	werr error

	recv cipherState
	caps *Caps
	hdr  [EncHeaderSize]byte
	ct   []byte
	pt   []byte
	rerr error

	server [32]byte
	cert   Certificate
}

func newConn(rw io.ReadWriter, r handshakeResult, caps *Caps) *Conn {
	return &Conn{rw: rw, send: r.send, recv: r.recv, caps: caps, server: r.server, cert: r.cert}
}

// ServerKey returns the server's x-only static key (on the client side).
func (c *Conn) ServerKey() [32]byte { return c.server }

// Certificate returns the certificate of the handshake.
func (c *Conn) Certificate() Certificate { return c.cert }

// appendEncrypted appends one encrypted frame: the 6-byte header as its own
// AEAD message (22 bytes), then the payload in chunks.
func (c *Conn) appendEncrypted(dst []byte, h Header, payload []byte) ([]byte, error) {
	if len(payload) > MaxU24 {
		return dst, fmt.Errorf("sv2: %s: payload %d bytes over msg_length's limit", MessageName(h.MsgType), len(payload))
	}
	h.Length = uint32(len(payload))
	var hb [HeaderSize]byte
	AppendHeader(hb[:0], h)
	dst, err := c.send.encryptWithAd(dst, nil, hb[:])
	if err != nil {
		return dst, err
	}
	for len(payload) > 0 {
		n := min(len(payload), MaxChunk)
		if dst, err = c.send.encryptWithAd(dst, nil, payload[:n]); err != nil {
			return dst, err
		}
		payload = payload[n:]
	}
	return dst, nil
}

// WriteFrame encrypts and writes one frame with the given header (its
// Length is taken from payload).
func (c *Conn) WriteFrame(h Header, payload []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return c.werr
	}
	var err error
	if c.wbuf, err = c.appendEncrypted(c.wbuf[:0], h, payload); err != nil {
		c.werr = err
		return err
	}
	return c.flush()
}

// WriteMessages encrypts the messages and writes them with one Write.
func (c *Conn) WriteMessages(ms ...Message) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return c.werr
	}
	c.wbuf = c.wbuf[:0]
	var scratch []byte
	for _, m := range ms {
		p, err := AppendPayload(scratch[:0], m)
		if err != nil {
			return err // nothing was encrypted for m: the stream is intact
		}
		scratch = p
		if c.wbuf, err = c.appendEncrypted(c.wbuf, HeaderFor(m, len(p)), p); err != nil {
			c.werr = err
			return err
		}
	}
	return c.flush()
}

func (c *Conn) flush() error {
	if _, err := c.rw.Write(c.wbuf); err != nil {
		c.werr = err
		return err
	}
	if cap(c.wbuf) > 1<<20 {
		c.wbuf = nil
	}
	return nil
}

// ReadFrame reads and decrypts one frame. The payload is valid until the
// next call. A frame over its cap (see Caps) is refused after its header
// is decrypted and before its payload is read; the ciphertext buffer grows
// as bytes arrive, never from msg_length alone.
func (c *Conn) ReadFrame() (Header, []byte, error) {
	if c.rerr != nil {
		return Header{}, nil, c.rerr
	}
	h, p, err := c.readFrame()
	if err != nil {
		c.rerr = err
	}
	return h, p, err
}

func (c *Conn) readFrame() (Header, []byte, error) {
	if _, err := io.ReadFull(c.rw, c.hdr[:]); err != nil {
		return Header{}, nil, err
	}
	var hb [HeaderSize]byte
	if _, err := c.recv.decryptWithAd(hb[:0], nil, c.hdr[:]); err != nil {
		return Header{}, nil, fmt.Errorf("sv2: frame header: %w", err)
	}
	h, _ := ParseHeader(hb[:])
	if err := c.caps.check(h); err != nil {
		return h, nil, err
	}
	ct, err := readGrowing(c.rw, c.ct, CiphertextLen(int(h.Length)))
	c.ct = ct
	if err != nil {
		return h, nil, err
	}
	pt := c.pt[:0]
	for len(ct) > 0 {
		k := min(len(ct), MaxNoiseMessage)
		var err error
		if pt, err = c.recv.decryptWithAd(pt, nil, ct[:k]); err != nil {
			return h, nil, fmt.Errorf("sv2: %s payload: %w", MessageName(h.MsgType), err)
		}
		ct = ct[k:]
	}
	c.pt = pt
	return h, pt, nil
}

// ReadMessage reads one frame and decodes it. A frame of an unknown
// extension gives a nil Message and no error (to be ignored).
func (c *Conn) ReadMessage() (Header, Message, error) {
	h, p, err := c.ReadFrame()
	if err != nil {
		return h, nil, err
	}
	m, err := Decode(h, p)
	return h, m, err
}
