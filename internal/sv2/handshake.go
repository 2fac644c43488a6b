package sv2

import (
	"fmt"
	"io"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
)

// initiator runs the client side of the handshake.
type initiator struct {
	ss symmetricState
	e  ellKey
}

func newInitiator(e ellKey) *initiator {
	i := &initiator{e: e}
	i.ss.init()
	return i
}

// act1 returns the first message: the ephemeral key's encoding (-> e).
func (i *initiator) act1() ([]byte, error) {
	i.ss.mixHash(i.e.ell[:])
	// EncryptAndHash of the empty payload: no key yet, so MixHash("").
	return i.ss.encryptAndHash(append([]byte(nil), i.e.ell[:]...), nil)
}

// handshakeResult is what a finished handshake yields.
type handshakeResult struct {
	send, recv cipherState
	server     [32]byte // the responder's static key, x-only
	cert       Certificate
}

// act2 processes the responder's message (<- e, ee, s, es, certificate)
// and checks the certificate against authority at time now.
func (i *initiator) act2(msg []byte, authority [32]byte, now time.Time) (handshakeResult, error) {
	if len(msg) != Act2Size {
		return handshakeResult{}, fmt.Errorf("sv2: second handshake message of %d bytes, want %d: %w", len(msg), Act2Size, ErrHandshakeLength)
	}
	var re, rs [EllSwiftSize]byte
	copy(re[:], msg[:EllSwiftSize])
	i.ss.mixHash(re[:])
	ee, err := ecdh(i.e, re, true)
	if err != nil {
		return handshakeResult{}, err
	}
	i.ss.mixKey(ee[:])
	pt, err := i.ss.decryptAndHash(msg[EllSwiftSize : 2*EllSwiftSize+MACSize])
	if err != nil {
		return handshakeResult{}, fmt.Errorf("sv2: server static key: %w", err)
	}
	copy(rs[:], pt)
	es, err := ecdh(i.e, rs, true)
	if err != nil {
		return handshakeResult{}, err
	}
	i.ss.mixKey(es[:])
	pt, err = i.ss.decryptAndHash(msg[2*EllSwiftSize+MACSize:])
	if err != nil {
		return handshakeResult{}, fmt.Errorf("sv2: certificate: %w", err)
	}
	cert, err := parseCertificate(pt)
	if err != nil {
		return handshakeResult{}, err
	}
	server, err := xOnlyFromEllSwift(rs)
	if err != nil {
		return handshakeResult{}, err
	}
	if err := cert.Verify(authority, server, now); err != nil {
		return handshakeResult{}, err
	}
	c1, c2 := i.ss.split()
	return handshakeResult{send: c1, recv: c2, server: server, cert: cert}, nil
}

// respond runs the whole responder side on the initiator's first message,
// with ephemeral key e and static key s, and returns the second message.
func respond(act1 []byte, e, s ellKey, cert Certificate) ([]byte, handshakeResult, error) {
	if len(act1) != Act1Size {
		return nil, handshakeResult{}, fmt.Errorf("sv2: first handshake message of %d bytes, want %d: %w", len(act1), Act1Size, ErrHandshakeLength)
	}
	var ss symmetricState
	ss.init()
	var re [EllSwiftSize]byte
	copy(re[:], act1)
	ss.mixHash(re[:])
	if _, err := ss.decryptAndHash(nil); err != nil {
		return nil, handshakeResult{}, err
	}
	out := make([]byte, 0, Act2Size)
	out = append(out, e.ell[:]...)
	ss.mixHash(e.ell[:])
	ee, err := ecdh(e, re, false)
	if err != nil {
		return nil, handshakeResult{}, err
	}
	ss.mixKey(ee[:])
	if out, err = ss.encryptAndHash(out, s.ell[:]); err != nil {
		return nil, handshakeResult{}, err
	}
	es, err := ecdh(s, re, false)
	if err != nil {
		return nil, handshakeResult{}, err
	}
	ss.mixKey(es[:])
	if out, err = ss.encryptAndHash(out, cert.marshal()); err != nil {
		return nil, handshakeResult{}, err
	}
	c1, c2 := ss.split()
	return out, handshakeResult{send: c2, recv: c1, cert: cert}, nil
}

// Server is the responder side: the pool's authority key signs a
// certificate for the server's static key at each handshake.
type Server struct {
	authority *btcec.PrivateKey
	static    ellKey
	validity  time.Duration
	backdate  time.Duration
	now       func() time.Time
	caps      *Caps
}

// ServerConfig configures a Server.
type ServerConfig struct {
	// Authority is the pool authority's private key (required).
	Authority *btcec.PrivateKey
	// Static is the server's static Noise key; nil generates one.
	Static *btcec.PrivateKey
	// CertValidity is how long a certificate is valid after it is signed
	// (default 24h).
	CertValidity time.Duration
	// Backdate moves valid_from back, so clients whose clock is behind
	// still accept the certificate (default 1h).
	Backdate time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Caps caps received frame payloads (default FromMiner()).
	Caps *Caps
}

// NewServer returns a Server.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.Authority == nil {
		return nil, fmt.Errorf("sv2: server without an authority key")
	}
	static := cfg.Static
	if static == nil {
		var err error
		if static, err = btcec.NewPrivateKey(); err != nil {
			return nil, fmt.Errorf("sv2: generating the static key: %w", err)
		}
	}
	sk, err := newEllKey(static)
	if err != nil {
		return nil, err
	}
	s := &Server{authority: cfg.Authority, static: sk, validity: cfg.CertValidity, backdate: cfg.Backdate, now: cfg.Now, caps: cfg.Caps}
	if s.validity <= 0 {
		s.validity = 24 * time.Hour
	}
	if s.backdate <= 0 {
		s.backdate = time.Hour
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.caps == nil {
		s.caps = FromMiner()
	}
	return s, nil
}

// AuthorityKey returns the x-only public authority key clients pin.
func (s *Server) AuthorityKey() [32]byte { return XOnly(s.authority) }

// Handshake runs the responder side over rw (the caller sets deadlines)
// and returns the encrypted connection.
func (s *Server) Handshake(rw io.ReadWriter) (*Conn, error) {
	act1 := make([]byte, Act1Size)
	if _, err := io.ReadFull(rw, act1); err != nil {
		return nil, fmt.Errorf("sv2: reading the first handshake message: %w", err)
	}
	e, err := generateEllKey()
	if err != nil {
		return nil, err
	}
	now := s.now()
	cert, err := SignCertificate(s.authority, XOnly(s.static.priv), now.Add(-s.backdate), now.Add(s.validity))
	if err != nil {
		return nil, err
	}
	out, res, err := respond(act1, e, s.static, cert)
	if err != nil {
		return nil, err
	}
	if _, err := rw.Write(out); err != nil {
		return nil, fmt.Errorf("sv2: writing the second handshake message: %w", err)
	}
	return newConn(rw, res, s.caps), nil
}

// ClientConfig configures ClientHandshake.
type ClientConfig struct {
	// Authority is the pool's x-only authority key (from the URL).
	Authority [32]byte
	// Now is the clock the certificate is checked against (default time.Now).
	Now func() time.Time
	// Caps caps received frame payloads (default FromPool()).
	Caps *Caps
}

// ClientHandshake runs the initiator side over rw and returns the
// encrypted connection once the server has proved it holds a certificate
// from cfg.Authority.
func ClientHandshake(rw io.ReadWriter, cfg ClientConfig) (*Conn, error) {
	e, err := generateEllKey()
	if err != nil {
		return nil, err
	}
	i := newInitiator(e)
	a1, err := i.act1()
	if err != nil {
		return nil, err
	}
	if _, err := rw.Write(a1); err != nil {
		return nil, fmt.Errorf("sv2: writing the first handshake message: %w", err)
	}
	a2 := make([]byte, Act2Size)
	if _, err := io.ReadFull(rw, a2); err != nil {
		return nil, fmt.Errorf("sv2: reading the second handshake message: %w", err)
	}
	now := time.Now
	if cfg.Now != nil {
		now = cfg.Now
	}
	res, err := i.act2(a2, cfg.Authority, now())
	if err != nil {
		return nil, err
	}
	caps := cfg.Caps
	if caps == nil {
		caps = FromPool()
	}
	return newConn(rw, res, caps), nil
}

// WithCaps returns a Server with the same keys, certificate settings and
// clock whose connections cap received frames with caps: the Job
// Declarator Server answers under the pool's authority with its own caps.
func (s *Server) WithCaps(caps *Caps) *Server {
	c := *s
	c.caps = caps
	return &c
}
