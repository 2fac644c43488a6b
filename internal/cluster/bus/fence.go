package bus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrFenced is wrapped by an Appender's errors when the stream has moved
// on since the appender's last append: another writer (a newer leader)
// has appended, so this one must stop.
var ErrFenced = errors.New("bus: fenced off: another writer appended to the stream")

// Headers on a CHAIN term marker (see Claim).
const (
	HeaderKind   = "Powcoord-Kind"   // "term" on a marker; absent on data
	HeaderTerm   = "Powcoord-Term"   // the leader's term (Leader.Term)
	HeaderLeader = "Powcoord-Leader" // the leader's id
)

// Appender appends to a stream only while nobody else does: each append
// carries the stream's last sequence as the appender saw it
// (Nats-Expected-Last-Sequence), and the stream refuses it when any other
// message was stored since. Appenders of one stream are thereby
// serialized into one linear history; a deposed leader's appender fails
// with ErrFenced as soon as the new leader has claimed the stream. An
// Appender is not safe for concurrent use.
type Appender struct {
	js      jetstream.JetStream
	stream  string
	subject string
	last    uint64
}

// Claim makes the caller the stream's only writer: it appends a term
// marker (headers HeaderKind "term", HeaderTerm, HeaderLeader) on subject
// at the stream's current end, and returns an Appender positioned after
// it. Every Appender made before, in this process or any other, fails from
// then on. Call it after winning an election, with the leader's term and
// id; readers of the stream skip the markers.
func Claim(ctx context.Context, js jetstream.JetStream, stream, subject string, term uint64, id string) (*Appender, error) {
	for attempt := 1; ; attempt++ {
		// A stream electing its leader does not answer: retry() bounds
		// each request.
		s, err := retry(ctx, func(ctx context.Context) (jetstream.Stream, error) { return js.Stream(ctx, stream) })
		if err != nil {
			return nil, fmt.Errorf("bus: claiming stream %s for term %d: %w", stream, term, err)
		}
		a := &Appender{js: js, stream: stream, subject: subject, last: s.CachedInfo().State.LastSeq}
		m := nats.NewMsg(subject)
		m.Header.Set(HeaderKind, "term")
		m.Header.Set(HeaderTerm, strconv.FormatUint(term, 10))
		m.Header.Set(HeaderLeader, id)
		// The msg id lets a retried marker whose answer was lost count.
		_, err = a.append(ctx, m, "term."+strconv.FormatUint(term, 10)+"."+id)
		if err == nil {
			return a, nil
		}
		// Someone appended between reading the end and our marker (the
		// previous leader's last block): read the end again.
		if !errors.Is(err, ErrFenced) || attempt >= 10 {
			return nil, fmt.Errorf("bus: claiming stream %s for term %d: %w", stream, term, err)
		}
	}
}

func wait(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(retryWait):
		return nil
	}
}

// Last returns the stream sequence of the appender's last append (or of
// the stream's end when it was claimed).
func (a *Appender) Last() uint64 { return a.last }

// Append appends data on the appender's subject with the given headers
// (may be nil) and Nats-Msg-Id msgID (required: it lets an append whose
// acknowledgement was lost be recognized as done), and returns its stream
// sequence. It fails with an error wrapping ErrFenced when the stream has
// moved on since the appender's last append.
func (a *Appender) Append(ctx context.Context, data []byte, header nats.Header, msgID string) (uint64, error) {
	if msgID == "" {
		return 0, fmt.Errorf("bus: append to stream %s on %s: empty msg id", a.stream, a.subject)
	}
	m := &nats.Msg{Subject: a.subject, Data: data, Header: nats.Header{}}
	for k, v := range header {
		m.Header[k] = v
	}
	return a.append(ctx, m, msgID)
}

func (a *Appender) append(ctx context.Context, m *nats.Msg, msgID string) (uint64, error) {
	expect := a.last
	opts := []jetstream.PublishOpt{jetstream.WithExpectStream(a.stream), jetstream.WithExpectLastSequence(expect)}
	if msgID != "" {
		opts = append(opts, jetstream.WithMsgID(msgID))
	}
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		ack, err := a.js.PublishMsg(actx, m, opts...)
		cancel()
		if err == nil {
			if ack.Duplicate {
				// Stored by an earlier attempt whose answer was lost; it
				// is this append only if nothing came after it.
				if ack.Sequence != expect+1 {
					return 0, fmt.Errorf("bus: append to stream %s on %s (msg id %q): already stored at sequence %d, not at the end (%d): %w",
						a.stream, a.subject, msgID, ack.Sequence, expect+1, ErrFenced)
				}
			}
			a.last = ack.Sequence
			return ack.Sequence, nil
		}
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
			// Our own earlier attempt may be what moved the end.
			if attempt > 1 && msgID != "" && a.storedAt(ctx, expect+1, msgID) {
				a.last = expect + 1
				return a.last, nil
			}
			return 0, fmt.Errorf("bus: append to stream %s on %s expecting last sequence %d: %s: %w",
				a.stream, a.subject, expect, apiErr.Description, ErrFenced)
		}
		if ctx.Err() != nil || !transient(err) {
			return 0, fmt.Errorf("bus: append to stream %s on %s expecting last sequence %d (attempt %d): %w", a.stream, a.subject, expect, attempt, err)
		}
		if werr := wait(ctx); werr != nil {
			return 0, fmt.Errorf("bus: append to stream %s on %s expecting last sequence %d (attempt %d): %w (last: %v)", a.stream, a.subject, expect, attempt, werr, err)
		}
	}
}

// storedAt reports whether the message at seq carries msgID.
func (a *Appender) storedAt(ctx context.Context, seq uint64, msgID string) bool {
	m, err := retry(ctx, func(ctx context.Context) (*jetstream.RawStreamMsg, error) {
		s, err := a.js.Stream(ctx, a.stream)
		if err != nil {
			return nil, err
		}
		return s.GetMsg(ctx, seq)
	})
	if err != nil {
		return false
	}
	return m.Header.Get(jetstream.MsgIDHeader) == msgID
}
