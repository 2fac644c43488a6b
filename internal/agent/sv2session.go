package agent

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/stratum"
	"github.com/powcoord/powcoord/internal/sv2"
)

// The agent's Stratum V2 client (docs/stratum-v2.md, "The agent"): a
// standard channel, header-only mining on the merkle root the pool gives,
// the same hashing engine and the same failover as Stratum V1.

// sv2FlagRequiresStandardJobs is SetupConnection's REQUIRES_STANDARD_JOBS.
const sv2FlagRequiresStandardJobs = 1

// errSV2Closed is returned when the pool closed the channel.
var errSV2Closed = errors.New("pool closed the channel")

// sv2Session is one V2 connection; the reading goroutine owns the job
// state, writes go through conn (safe for concurrent use).
type sv2Session struct {
	a    *Agent
	pool pool
	raw  net.Conn
	conn *sv2.Conn

	channel uint32
	seq     atomic.Uint32

	// Owned by the reading goroutine.
	target  chainmath.Target
	jobs    map[uint32]*sv2.NewMiningJob
	prev    chainmath.Hash
	nbits   uint32
	havePrv bool
	cur     *job // the job being hashed
}

// handshakeSV2 runs the Noise handshake (checking the certificate against
// the URL's authority key) and SetupConnection.
func (a *Agent) handshakeSV2(raw net.Conn, p pool) (*sv2.Conn, error) {
	raw.SetDeadline(time.Now().Add(handshakeTimeout))
	conn, err := sv2.ClientHandshake(raw, sv2.ClientConfig{Authority: p.authority})
	if err != nil {
		return nil, err
	}
	host, port, _ := net.SplitHostPort(p.addr)
	pn, _ := strconv.Atoi(port)
	if err := sv2.Setup(conn, raw, &sv2.SetupConnection{Protocol: 0, MinVersion: 2, MaxVersion: 2, Flags: sv2FlagRequiresStandardJobs,
		EndpointHost: host, EndpointPort: uint16(pn), Vendor: "powcoord", HardwareVersion: "cpu", Firmware: a.cfg.UserAgent}); err != nil {
		return nil, err
	}
	return conn, nil
}

// probeSV2 checks that a V2 primary pool answers: handshake and setup.
func (a *Agent) probeSV2(raw net.Conn, p pool) error {
	_, err := a.handshakeSV2(raw, p)
	return err
}

// runSV2 runs a V2 session on an open connection.
func (a *Agent) runSV2(raw net.Conn, p pool) (r sessionResult) {
	conn, err := a.handshakeSV2(raw, p)
	if err != nil {
		r.err = err
		return r
	}
	s := &sv2Session{a: a, pool: p, raw: raw, conn: conn, jobs: map[uint32]*sv2.NewMiningJob{}}
	identity := a.cfg.User
	if a.cfg.Pass != "" && a.cfg.Pass != "x" {
		identity += ":" + a.cfg.Pass
	}
	var max sv2.U256
	for i := range max {
		max[i] = 0xff
	}
	if err := conn.WriteMessages(&sv2.OpenStandardMiningChannel{RequestID: 1, UserIdentity: identity, NominalHashRate: float32(a.cfg.HashLimit), MaxTarget: max}); err != nil {
		r.err = err
		return r
	}
	for {
		if r.established {
			raw.SetReadDeadline(time.Now().Add(idleTimeout))
		}
		_, m, err := conn.ReadMessage()
		if err != nil {
			r.err = err
			return r
		}
		if m == nil {
			continue
		}
		if err := s.handle(m, &r); err != nil {
			r.err = err
			return r
		}
		if r.redirect != "" {
			return r
		}
	}
}

func (s *sv2Session) handle(m sv2.Message, r *sessionResult) error {
	a := s.a
	switch m := m.(type) {
	case *sv2.OpenStandardMiningChannelSuccess:
		s.channel, s.target = m.ChannelID, chainmath.Target(m.Target)
		r.established = true
		s.raw.SetWriteDeadline(time.Time{})
		a.mu.Lock()
		a.st.Connected = true
		a.st.Sessions++
		a.st.Extranonce1 = fmt.Sprintf("%x", m.ExtranoncePrefix)
		a.mu.Unlock()
		a.log.Info("pool session established", "pool", s.pool.url, "protocol", "sv2", "channel", m.ChannelID, "extranonce_prefix", fmt.Sprintf("%x", m.ExtranoncePrefix))
	case *sv2.OpenMiningChannelError:
		return fmt.Errorf("channel for user %q refused: %s", a.cfg.User, m.ErrorCode)
	case *sv2.NewMiningJob:
		if m.ChannelID != s.channel {
			return nil
		}
		s.jobs[m.JobID] = m
		if len(s.jobs) > 64 {
			for id := range s.jobs {
				if id != m.JobID && (s.cur == nil || strconv.FormatUint(uint64(id), 10) != s.cur.ID) {
					delete(s.jobs, id)
					break
				}
			}
		}
		if m.MinNTime.Valid && s.havePrv {
			s.start(m, m.MinNTime.Value, false)
		}
	case *sv2.SetNewPrevHash:
		nj := s.jobs[m.JobID]
		if nj == nil {
			return fmt.Errorf("SetNewPrevHash for job %d, which the pool never sent", m.JobID)
		}
		s.prev, s.nbits, s.havePrv = chainmath.Hash(m.PrevHash), m.NBits, true
		// Only the job it names is valid now.
		for id := range s.jobs {
			if id != m.JobID {
				delete(s.jobs, id)
			}
		}
		s.start(nj, m.MinNTime, true)
	case *sv2.SetTarget:
		s.target = chainmath.Target(m.MaximumTarget)
		if s.cur != nil {
			// The new target applies to the job being hashed too: go on
			// with the same work units at the new target.
			j := *s.cur
			j.target, j.diff = s.target, difficultyOf(s.target)
			sj := *s.cur.Job
			sj.Clean = false
			j.Job = &sj
			s.cur = &j
			a.publish(&j)
		}
	case *sv2.SubmitSharesSuccess:
		a.mu.Lock()
		a.st.Accepted += uint64(m.NewSubmitsAcceptedCount)
		a.mu.Unlock()
	case *sv2.SubmitSharesError:
		a.mu.Lock()
		a.st.Rejected++
		a.st.RejectedByCode[stratum.CodeOther]++
		a.mu.Unlock()
		a.log.Info("share rejected", "pool", s.pool.url, "error", m.ErrorCode, "sequence", m.SequenceNumber)
	case *sv2.Reconnect:
		host, port, _ := net.SplitHostPort(s.pool.addr)
		if m.NewHost != "" {
			host = m.NewHost
		}
		if m.NewPort != 0 {
			port = strconv.Itoa(int(m.NewPort))
		}
		r.redirect = net.JoinHostPort(host, port)
	case *sv2.CloseChannel:
		if m.ChannelID == s.channel {
			return fmt.Errorf("%w: %s", errSV2Closed, m.ReasonCode)
		}
	case *sv2.SetExtranoncePrefix, *sv2.ChannelEndpointChanged, *sv2.SetGroupChannel:
		// Nothing to do for a standard channel mining a given root.
	default:
		a.log.Debug("ignoring sv2 message", "type", fmt.Sprintf("%T", m))
	}
	return nil
}

// start publishes job m with ntime as the job every thread hashes.
func (s *sv2Session) start(m *sv2.NewMiningJob, ntime uint32, clean bool) {
	root := chainmath.Hash(m.MerkleRoot)
	sj := &stratum.Job{ID: strconv.FormatUint(uint64(m.JobID), 10), PrevHash: s.prev, Version: m.Version, Bits: s.nbits, NTime: ntime, Clean: clean}
	// Header-only mining: no extranonce to roll, the 2^32 nonces cut into
	// 256 units so the threads share them.
	j := &job{Job: sj, root: &root, sess: s, diff: difficultyOf(s.target), target: s.target,
		parts: 256, span: 1 << 24, units: 256, next: new(atomic.Uint64)}
	s.cur = j
	s.a.publish(j)
	s.a.log.Debug("new job", "job", j.ID, "clean", clean, "difficulty", j.diff)
}

// submit sends a share of j (en2 is empty on a standard channel).
func (s *sv2Session) submit(j *job, en2 []byte, nonce uint32) {
	id, _ := strconv.ParseUint(j.ID, 10, 32)
	m := &sv2.SubmitSharesStandard{ChannelID: s.channel, SequenceNumber: s.seq.Add(1), JobID: uint32(id), Nonce: nonce, NTime: j.NTime, Version: j.Version}
	s.raw.SetWriteDeadline(time.Now().Add(writeTimeout))
	if err := s.conn.WriteMessages(m); err != nil {
		s.a.log.Debug("share not sent", "job", j.ID, "err", err)
	}
}

// difficultyOf is the difficulty of a share target.
func difficultyOf(t chainmath.Target) float64 {
	if t == (chainmath.Target{}) {
		return 0
	}
	return chainmath.TargetToDifficulty(t.Big())
}
