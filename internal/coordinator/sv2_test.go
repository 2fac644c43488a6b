package coordinator_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/coordinator"
	"github.com/powcoord/powcoord/internal/sv2"
)

// v2harness is a coordinator serving V2 (and V1 on a second listener).
type v2harness struct {
	*harness
	auth   *btcec.PrivateKey
	srv    *sv2.Server
	v2addr string
	v1addr string // a V1 listener on the same coordinator (dialV1)
}

func newV2Harness(t *testing.T, o harnessOpts) *v2harness {
	t.Helper()
	auth, _ := btcec.NewPrivateKey()
	srv, err := sv2.NewServer(sv2.ServerConfig{Authority: auth})
	if err != nil {
		t.Fatal(err)
	}
	inner := o.listen
	o.listen = func(ln net.Listener) net.Listener {
		if inner != nil {
			ln = inner(ln)
		}
		return coordinator.WithSV2(ln, srv)
	}
	h := newHarness(t, o)
	return &v2harness{harness: h, auth: auth, srv: srv, v2addr: h.addr}
}

// v2job is one job as a V2 client sees it.
type v2job struct {
	id         uint32
	version    uint32
	root       chainmath.Hash // standard channels
	coinb1     []byte         // extended channels
	coinb2     []byte
	path       []sv2.U256
	rollingOK  bool
	activeFrom uint32 // min ntime once active
	active     bool
}

type v2client struct {
	t        *testing.T
	raw      *tamperConn
	conn     *sv2.Conn
	ch       uint32
	extended bool
	prefix   []byte
	enSize   int
	target   chainmath.Target
	jobs     map[uint32]*v2job
	cur      *v2job
	prev     chainmath.Hash
	nbits    uint32
	seq      uint32
}

func (h *v2harness) dialV2(authority [32]byte) (*v2client, error) {
	nc, err := net.Dial("tcp", h.v2addr)
	if err != nil {
		return nil, err
	}
	raw := &tamperConn{Conn: nc}
	h.t.Cleanup(func() { raw.Close() })
	raw.SetDeadline(time.Now().Add(10 * time.Second))
	conn, err := sv2.ClientHandshake(raw, sv2.ClientConfig{Authority: authority})
	if err != nil {
		raw.Close()
		return nil, err
	}
	return &v2client{t: h.t, raw: raw, conn: conn, jobs: map[uint32]*v2job{}}, nil
}

// readyV2 connects, sets up and opens a channel, and waits for work.
func (h *v2harness) readyV2(user string, extended bool) *v2client {
	h.t.Helper()
	c, err := h.dialV2(sv2.XOnly(h.auth))
	if err != nil {
		h.t.Fatal(err)
	}
	c.send(&sv2.SetupConnection{Protocol: 0, MinVersion: 2, MaxVersion: 2, Flags: 1, Vendor: "test"})
	if _, ok := c.next().(*sv2.SetupConnectionSuccess); !ok {
		h.t.Fatal("no SetupConnection.Success")
	}
	c.open(user, extended)
	c.waitActive()
	return c
}

func (c *v2client) open(user string, extended bool) {
	c.t.Helper()
	max := sv2.U256{}
	for i := range max {
		max[i] = 0xff
	}
	if extended {
		c.send(&sv2.OpenExtendedMiningChannel{RequestID: 1, UserIdentity: user, MaxTarget: max, MinExtranonceSize: 4})
	} else {
		c.send(&sv2.OpenStandardMiningChannel{RequestID: 1, UserIdentity: user, MaxTarget: max})
	}
	switch m := c.next().(type) {
	case *sv2.OpenStandardMiningChannelSuccess:
		c.ch, c.prefix, c.target = m.ChannelID, m.ExtranoncePrefix, chainmath.Target(m.Target)
	case *sv2.OpenExtendedMiningChannelSuccess:
		c.ch, c.prefix, c.target, c.enSize, c.extended = m.ChannelID, m.ExtranoncePrefix, chainmath.Target(m.Target), int(m.ExtranonceSize), true
	default:
		c.t.Fatalf("open channel answered %T %+v", m, m)
	}
}

func (c *v2client) send(ms ...sv2.Message) {
	c.t.Helper()
	if err := c.conn.WriteMessages(ms...); err != nil {
		c.t.Fatal(err)
	}
}

// next reads one message, applying job, prevhash and target messages.
func (c *v2client) next() sv2.Message {
	c.t.Helper()
	m, err := c.read()
	if err != nil {
		c.t.Fatalf("reading: %v", err)
	}
	return m
}

func (c *v2client) read() (sv2.Message, error) {
	c.raw.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, m, err := c.conn.ReadMessage()
	if err != nil {
		return nil, err
	}
	switch m := m.(type) {
	case *sv2.NewMiningJob:
		j := &v2job{id: m.JobID, version: m.Version, root: chainmath.Hash(m.MerkleRoot), active: m.MinNTime.Valid, activeFrom: m.MinNTime.Value}
		c.jobs[j.id] = j
		if j.active {
			c.cur = j
		}
	case *sv2.NewExtendedMiningJob:
		j := &v2job{id: m.JobID, version: m.Version, coinb1: m.CoinbaseTxPrefix, coinb2: m.CoinbaseTxSuffix, path: m.MerklePath, rollingOK: m.VersionRollingAllowed, active: m.MinNTime.Valid, activeFrom: m.MinNTime.Value}
		c.jobs[j.id] = j
		if j.active {
			c.cur = j
		}
	case *sv2.SetNewPrevHash:
		j := c.jobs[m.JobID]
		if j == nil {
			c.t.Fatalf("SetNewPrevHash for unknown job %d", m.JobID)
		}
		j.active, j.activeFrom = true, m.MinNTime
		c.prev, c.nbits, c.cur = chainmath.Hash(m.PrevHash), m.NBits, j
	case *sv2.SetTarget:
		c.target = chainmath.Target(m.MaximumTarget)
	}
	return m, nil
}

func (c *v2client) waitActive() {
	c.t.Helper()
	for c.cur == nil || !c.cur.active || c.prev == (chainmath.Hash{}) {
		c.next()
	}
}

// expect reads until a message of type T arrives.
func expect[T sv2.Message](c *v2client) T {
	c.t.Helper()
	for {
		if m, ok := c.next().(T); ok {
			return m
		}
	}
}

// v2share is a solved share.
type v2share struct {
	job     uint32
	nonce   uint32
	ntime   uint32
	version uint32
	en      []byte
	hash    chainmath.Hash
}

// solve finds a nonce for job j at ntime and version meeting target (and
// the block target or not, as wantBlock says); en is the extended
// channel's extranonce.
func (c *v2client) solve(j *v2job, ntime, version uint32, en []byte, target chainmath.Target, meets, wantBlock bool) v2share {
	c.t.Helper()
	root := j.root
	if c.extended {
		cb := append(append(append(append([]byte(nil), j.coinb1...), c.prefix...), en...), j.coinb2...)
		branch := make([]chainmath.Hash, len(j.path))
		for i, p := range j.path {
			branch[i] = chainmath.Hash(p)
		}
		root = chainmath.RootFromBranch(chainmath.DoubleSHA256(cb), branch)
	}
	bt, _ := chainmath.CompactToBig(c.nbits)
	blockTgt := chainmath.TargetFromBig(bt)
	hd := chainmath.Header{Version: version, PrevBlock: c.prev, MerkleRoot: root, Time: ntime, Bits: c.nbits}
	for nonce := uint32(0); nonce < 1<<31; nonce++ {
		hd.Nonce = nonce
		raw := hd.Bytes()
		h := chainmath.DoubleSHA256(raw[:])
		if target.Meets(&h) != meets || blockTgt.Meets(&h) != wantBlock {
			continue
		}
		return v2share{job: j.id, nonce: nonce, ntime: ntime, version: version, en: en, hash: h}
	}
	c.t.Fatal("no share found")
	return v2share{}
}

func (c *v2client) submit(s v2share) {
	c.t.Helper()
	c.seq++
	if c.extended {
		c.send(&sv2.SubmitSharesExtended{ChannelID: c.ch, SequenceNumber: c.seq, JobID: s.job, Nonce: s.nonce, NTime: s.ntime, Version: s.version, Extranonce: s.en})
	} else {
		c.send(&sv2.SubmitSharesStandard{ChannelID: c.ch, SequenceNumber: c.seq, JobID: s.job, Nonce: s.nonce, NTime: s.ntime, Version: s.version})
	}
}

// result reads until the answer to the last share: "" for success.
func (c *v2client) result() string {
	c.t.Helper()
	for {
		switch m := c.next().(type) {
		case *sv2.SubmitSharesSuccess:
			if m.LastSequenceNumber != c.seq || m.ChannelID != c.ch {
				c.t.Fatalf("success %+v, want seq %d", m, c.seq)
			}
			return ""
		case *sv2.SubmitSharesError:
			if m.SequenceNumber != c.seq {
				c.t.Fatalf("error %+v, want seq %d", m, c.seq)
			}
			return m.ErrorCode
		}
	}
}

func (c *v2client) goodShare() v2share {
	j := c.cur
	en := make([]byte, c.enSize)
	return c.solve(j, j.activeFrom, j.version, en, c.target, true, false)
}

func TestSV2StandardAndExtendedShares(t *testing.T) {
	h := newV2Harness(t, harnessOpts{})
	for _, extended := range []bool{false, true} {
		user := "v2std"
		if extended {
			user = "v2ext"
		}
		c := h.readyV2(user, extended)
		if !extended && len(c.prefix) != 8 {
			t.Fatalf("standard extranonce prefix %x: want extranonce1 and 4 zero bytes", c.prefix)
		}
		if extended && (len(c.prefix) != 4 || c.enSize != 4) {
			t.Fatalf("extended prefix %x size %d", c.prefix, c.enSize)
		}
		s := c.goodShare()
		c.submit(s)
		if code := c.result(); code != "" {
			t.Fatalf("extended=%v: share refused: %s", extended, code)
		}
		// A rolled version inside the mask is accepted.
		s = c.solve(c.cur, c.cur.activeFrom+1, c.cur.version|0x00002000, make([]byte, c.enSize), c.target, true, false)
		c.submit(s)
		if code := c.result(); code != "" {
			t.Fatalf("rolled version refused: %s", code)
		}
		shares, err := h.store.Shares(context.Background(), user)
		if err != nil || len(shares) != 2 {
			t.Fatalf("ledger has %d shares of %s (%v)", len(shares), user, err)
		}
		if shares[1].Hash != s.hash || shares[1].Version != c.cur.version|0x2000 || shares[1].NTime != s.ntime {
			t.Fatalf("ledger share %+v, want hash %s", shares[1], s.hash)
		}
	}
}

// TestSV2ErrorCodes produces each SubmitShares.Error code with a share
// valid except for the rule under test.
func TestSV2ErrorCodes(t *testing.T) {
	h := newV2Harness(t, harnessOpts{cfg: func(c *coordinator.Config) { c.BanMinShares = -1 }})
	c := h.readyV2("errs", false)
	j := c.cur
	mask := uint32(0x1fffe000)
	hardTarget, _ := chainmath.TargetForDifficulty(1e-3)
	cases := []struct {
		name string
		make func() (v2share, func(*v2share))
		want string
	}{
		{"unknown job", func() (v2share, func(*v2share)) {
			return c.goodShare(), func(s *v2share) { s.job = 999 }
		}, coordinator.SV2ErrInvalidJob},
		{"ntime before the job", func() (v2share, func(*v2share)) {
			return c.solve(j, j.activeFrom-1, j.version, nil, c.target, true, false), nil
		}, coordinator.SV2ErrNTime},
		{"ntime too far ahead", func() (v2share, func(*v2share)) {
			return c.solve(j, uint32(time.Now().Add(3*time.Hour).Unix()), j.version, nil, c.target, true, false), nil
		}, coordinator.SV2ErrNTime},
		{"version outside the mask", func() (v2share, func(*v2share)) {
			return c.solve(j, j.activeFrom, j.version^1, nil, c.target, true, false), nil
		}, coordinator.SV2ErrVersion},
		{"low difficulty", func() (v2share, func(*v2share)) {
			return c.solve(j, j.activeFrom, j.version, nil, c.target, false, false), nil
		}, coordinator.SV2ErrLowDifficulty},
	}
	_ = mask
	_ = hardTarget
	for _, tc := range cases {
		s, mod := tc.make()
		if mod != nil {
			mod(&s)
		}
		c.submit(s)
		if got := c.result(); got != tc.want {
			t.Fatalf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
	// Duplicate: the same good share twice.
	s := c.goodShare()
	c.submit(s)
	if got := c.result(); got != "" {
		t.Fatalf("good share: %q", got)
	}
	c.submit(s)
	if got := c.result(); got != coordinator.SV2ErrDuplicate {
		t.Fatalf("duplicate: %q", got)
	}
	// Unknown channel.
	s = c.goodShare()
	c.seq++
	c.send(&sv2.SubmitSharesStandard{ChannelID: 77, SequenceNumber: c.seq, JobID: s.job, Nonce: s.nonce, NTime: s.ntime, Version: s.version})
	if m := expect[*sv2.SubmitSharesError](c); m.ErrorCode != coordinator.SV2ErrInvalidChannel || m.ChannelID != 77 {
		t.Fatalf("unknown channel: %+v", m)
	}
	// Extended channel: an extranonce of the wrong size.
	e := h.readyV2("errs-ext", true)
	s = e.solve(e.cur, e.cur.activeFrom, e.cur.version, make([]byte, 3), e.target, true, false)
	e.submit(s)
	if got := e.result(); got != coordinator.SV2ErrExtranonceSize {
		t.Fatalf("3-byte extranonce: %q", got)
	}
	// None of these reached the ledger; the two good shares did.
	if shares, _ := h.store.Shares(context.Background(), "errs"); len(shares) != 1 {
		t.Fatalf("ledger has %d shares of errs, want 1", len(shares))
	}
}

func TestSV2BlockThenStale(t *testing.T) {
	h := newV2Harness(t, harnessOpts{blockDiff: 2e-6, shareDiff: 1e-7})
	a := h.readyV2("alice2", false)
	b := h.readyV2("bob2", true)
	height := h.chain.Current().Height
	old := b.cur
	s := a.solve(a.cur, a.cur.activeFrom, a.cur.version, nil, a.target, true, true)
	a.submit(s)
	if code := a.result(); code != "" {
		t.Fatalf("block share refused: %s", code)
	}
	// Both get a future job and SetNewPrevHash for the new tip.
	// (The announcement may come before the share's answer.)
	for _, c := range []*v2client{a, b} {
		for c.prev != s.hash {
			expect[*sv2.SetNewPrevHash](c)
		}
		if c.cur.activeFrom == 0 || c.jobs[c.cur.id] != c.cur {
			t.Fatalf("no active job after SetNewPrevHash: %+v", c.cur)
		}
	}
	if got := h.chain.Current().Height; got != height+1 {
		t.Fatalf("height %d, want %d", got, height+1)
	}
	blocks, _ := h.store.LastBlocks(context.Background(), 1)
	if len(blocks) != 1 || blocks[0].Hash != s.hash || blocks[0].Finder != "alice2" {
		t.Fatalf("stored tip %+v", blocks)
	}
	// A share on the job before the block is stale.
	prev := b.prev
	b.prev = chainmath.Hash(blocks[0].Header[4:36])
	st := b.solve(old, old.activeFrom, old.version, make([]byte, 4), b.target, true, false)
	b.prev = prev
	b.submit(st)
	if got := b.result(); got != coordinator.SV2ErrStale {
		t.Fatalf("old job: %q, want %q", got, coordinator.SV2ErrStale)
	}
}

func TestSV2WrongAuthorityRefused(t *testing.T) {
	h := newV2Harness(t, harnessOpts{})
	other, _ := btcec.NewPrivateKey()
	if _, err := h.dialV2(sv2.XOnly(other)); !errors.Is(err, sv2.ErrBadCertificate) {
		t.Fatalf("wrong authority key: %v", err)
	}
	// The coordinator still serves.
	c := h.readyV2("after", false)
	c.submit(c.goodShare())
	if code := c.result(); code != "" {
		t.Fatal(code)
	}
}

// TestSV2TamperedFrameClosesOnlyThatConnection flips one ciphertext bit
// on one connection: that one is closed, a V2 and a V1 neighbour go on.
func TestSV2TamperedFrameClosesOnlyThatConnection(t *testing.T) {
	h := newV2Harness(t, harnessOpts{})
	bad := h.readyV2("tamper", false)
	good := h.readyV2("neighbour", false)
	bad.raw.tamper.Store(true)
	bad.submit(bad.goodShare())
	for {
		if _, err := bad.read(); err != nil {
			if errors.Is(err, sv2.ErrDecrypt) {
				t.Fatal("the client saw a bad frame: the coordinator's answer, not a close")
			}
			break
		}
	}
	if shares, _ := h.store.Shares(context.Background(), "tamper"); len(shares) != 0 {
		t.Fatalf("a tampered share reached the ledger: %d", len(shares))
	}
	good.submit(good.goodShare())
	if code := good.result(); code != "" {
		t.Fatalf("V2 neighbour refused: %s", code)
	}
}

// tamperConn flips one bit of the next write once tamper is set, and
// counts the bytes each way.
type tamperConn struct {
	net.Conn
	tamper     atomic.Bool
	read, sent atomic.Int64
}

func (c *tamperConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.read.Add(int64(n))
	return n, err
}

func (c *tamperConn) Write(p []byte) (int, error) {
	c.sent.Add(int64(len(p)))
	if c.tamper.CompareAndSwap(true, false) {
		q := append([]byte(nil), p...)
		q[len(q)-3] ^= 0x10
		return c.Conn.Write(q)
	}
	return c.Conn.Write(p)
}

// closed reports whether the coordinator closed c (it reads until an
// error other than a timeout).
func (c *v2client) closed() bool {
	for {
		_, err := c.read()
		if err == nil {
			continue
		}
		var ne net.Error
		return !(errors.As(err, &ne) && ne.Timeout())
	}
}

func TestSV2HostileInput(t *testing.T) {
	// No SetupConnection within the handshake deadline: a harness of its
	// own with a short one (the rest keep the default, so that a Noise
	// handshake on a loaded machine does not run into it).
	short := newV2Harness(t, harnessOpts{cfg: func(c *coordinator.Config) { c.HandshakeTimeout = 800 * time.Millisecond }})
	c, err := short.dialV2(sv2.XOnly(short.auth))
	if err != nil {
		t.Fatal(err)
	}
	if !c.closed() {
		t.Fatal("silent client not closed")
	}
	h := newV2Harness(t, harnessOpts{})
	auth := sv2.XOnly(h.auth)
	// A first message other than SetupConnection.
	c, _ = h.dialV2(auth)
	c.send(&sv2.OpenStandardMiningChannel{UserIdentity: "x"})
	if !c.closed() {
		t.Fatal("channel before setup not closed")
	}
	// A protocol it does not serve: SetupConnection.Error, then closed.
	c, _ = h.dialV2(auth)
	c.send(&sv2.SetupConnection{Protocol: 2, MinVersion: 2, MaxVersion: 2})
	if m, ok := c.next().(*sv2.SetupConnectionError); !ok || m.ErrorCode != coordinator.SV2ErrUnsupportedProto {
		t.Fatalf("template distribution: %+v", m)
	}
	if !c.closed() {
		t.Fatal("not closed after SetupConnection.Error")
	}
	// Work selection is refused with its flag named.
	if c, err = h.dialV2(auth); err != nil {
		t.Fatal(err)
	}
	c.send(&sv2.SetupConnection{MinVersion: 2, MaxVersion: 2, Flags: 0x7})
	if m, ok := c.next().(*sv2.SetupConnectionError); !ok || m.Flags != 2 || m.ErrorCode != coordinator.SV2ErrUnsupportedFlags {
		t.Fatalf("work selection: %+v", m)
	}
	// After setup: an unknown message type, a server-only message, a
	// frame over the cap; each closes the connection.
	for name, send := range map[string]func(*v2client){
		"unknown type":   func(c *v2client) { c.conn.WriteFrame(sv2.Header{MsgType: 0x50}, nil) },
		"server message": func(c *v2client) { c.send(&sv2.SetTarget{ChannelID: c.ch}) },
		"over the cap": func(c *v2client) {
			c.conn.WriteFrame(sv2.Header{ExtensionType: 0x8000, MsgType: 0x1a}, make([]byte, 25))
		},
		"truncated": func(c *v2client) {
			c.conn.WriteFrame(sv2.Header{ExtensionType: 0x8000, MsgType: 0x1a}, make([]byte, 10))
		},
	} {
		c := h.readyV2("hostile", false)
		send(c)
		if !c.closed() {
			t.Fatalf("%s: not closed", name)
		}
	}
	// An extension's message is ignored: the connection goes on.
	c = h.readyV2("ext", false)
	c.conn.WriteFrame(sv2.Header{ExtensionType: 0x4001, MsgType: 1}, []byte{1, 2, 3})
	c.submit(c.goodShare())
	if code := c.result(); code != "" {
		t.Fatalf("after an extension message: %s", code)
	}
	// SetCustomMiningJob is refused, the channel lives.
	c.send(&sv2.SetCustomMiningJob{ChannelID: c.ch, RequestID: 9})
	if m := expect[*sv2.SetCustomMiningJobError](c); m.RequestID != 9 || m.ErrorCode != coordinator.SV2ErrCustomJobRefused {
		t.Fatalf("custom job: %+v", m)
	}
}

func TestSV2BanAndChannels(t *testing.T) {
	h := newV2Harness(t, harnessOpts{cfg: func(c *coordinator.Config) { c.BanMinShares = 4; c.BanRejectRatio = 0.75; c.BanIPAfter = 1 }})
	c := h.readyV2("banme", false)
	// A second channel on the connection gets another extranonce prefix.
	first := c.ch
	firstPrefix := append([]byte(nil), c.prefix...)
	c.open("banme.2", false)
	if c.ch == first || string(c.prefix) == string(firstPrefix) {
		t.Fatalf("second channel %d prefix %x, first %d %x", c.ch, c.prefix, first, firstPrefix)
	}
	c.waitActive()
	// CloseChannel: shares on it are then refused as an unknown channel.
	c.send(&sv2.CloseChannel{ChannelID: c.ch, ReasonCode: "done"})
	s := c.goodShare()
	c.submit(s)
	if got := c.result(); got != coordinator.SV2ErrInvalidChannel {
		t.Fatalf("share on a closed channel: %q", got)
	}
	c.ch = first
	for i := 0; i < 3; i++ {
		c.submit(c.solve(c.cur, c.cur.activeFrom, c.cur.version, nil, c.target, false, false))
		if i < 2 {
			c.result()
		}
	}
	if !c.closed() {
		t.Fatal("not closed after 4 rejected shares of 4")
	}
	if !h.coord.Banned("127.0.0.1") {
		t.Fatal("address not banned")
	}
}

func TestSV2UpdateChannelAndReconnect(t *testing.T) {
	h := newV2Harness(t, harnessOpts{shareDiff: 1e-7})
	c := h.readyV2("upd", false)
	// A maximum target below the channel's: SetTarget at most that, then
	// a job at the new target.
	max, _ := chainmath.TargetForDifficulty(1e-5)
	c.send(&sv2.UpdateChannel{ChannelID: c.ch, NominalHashRate: 1e6, MaximumTarget: sv2.U256(max)})
	m := expect[*sv2.SetTarget](c)
	if !max.Meets((*chainmath.Hash)(&m.MaximumTarget)) {
		t.Fatalf("SetTarget %x above the maximum %x", m.MaximumTarget, max)
	}
	expect[*sv2.NewMiningJob](c)
	c.send(&sv2.UpdateChannel{ChannelID: 55})
	if e := expect[*sv2.UpdateChannelError](c); e.ErrorCode != coordinator.SV2ErrInvalidChannel {
		t.Fatalf("unknown channel: %+v", e)
	}
	// A graceful shutdown sends Reconnect to the same host and port.
	go h.stop()
	r := expect[*sv2.Reconnect](c)
	_, port, _ := net.SplitHostPort(h.v2addr)
	if r.NewHost != "127.0.0.1" || port != fmtPort(r.NewPort) {
		t.Fatalf("reconnect %+v, want %s", r, h.v2addr)
	}
}

func fmtPort(p uint16) string { return strconv.Itoa(int(p)) }

// TestSV2ListenerMaxDifficulty: on a V2 listener with a ceiling, a
// channel opens at the ceiling rather than the higher starting
// difficulty, and a miner whose maximum target asks for more than the
// ceiling is refused.
func TestSV2ListenerMaxDifficulty(t *testing.T) {
	auth, _ := btcec.NewPrivateKey()
	srv, err := sv2.NewServer(sv2.ServerConfig{Authority: auth})
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, harnessOpts{shareDiff: 1e-6, listen: func(ln net.Listener) net.Listener {
		return coordinator.WithMaxDifficulty(coordinator.WithSV2(ln, srv), 2e-7)
	}})
	vh := &v2harness{harness: h, auth: auth, srv: srv, v2addr: h.addr}
	c := vh.readyV2("capped", false)
	want, _ := chainmath.TargetForDifficulty(2e-7)
	if c.target != want {
		t.Fatalf("channel target %x, want the ceiling's %x", c.target, want)
	}
	// A maximum target of difficulty 1e-6: above the ceiling, refused.
	c2, err := vh.dialV2(sv2.XOnly(auth))
	if err != nil {
		t.Fatal(err)
	}
	c2.send(&sv2.SetupConnection{Protocol: 0, MinVersion: 2, MaxVersion: 2, Flags: 1, Vendor: "test"})
	c2.next()
	hard, _ := chainmath.TargetForDifficulty(1e-6)
	c2.send(&sv2.OpenStandardMiningChannel{RequestID: 3, UserIdentity: "hard", MaxTarget: sv2.U256(hard)})
	if m, ok := c2.next().(*sv2.OpenMiningChannelError); !ok || m.ErrorCode != coordinator.SV2ErrMaxTarget {
		t.Fatalf("max target above the ceiling answered %T %+v", m, m)
	}
}
