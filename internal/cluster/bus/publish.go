package bus

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ShareMsgID is the Nats-Msg-Id of a share's message: its header hash in
// hex (internal byte order), the work the share proves. A share published
// twice within the duplicate window is stored once.
func ShareMsgID(hash [32]byte) string { return hex.EncodeToString(hash[:]) }

// attemptTimeout bounds one publish attempt: a server killed mid-publish
// never answers, and the retry goes to another.
const attemptTimeout = 2 * time.Second

// retryWait is the pause between attempts, while the cluster elects a new
// stream leader or the client reconnects.
const retryWait = 100 * time.Millisecond

// transient reports whether a failed publish may succeed when tried again
// (no answer, no stream leader yet, reconnecting), as opposed to a refusal
// that will not change (bad subject, wrong expected sequence, closed
// connection).
func transient(err error) bool {
	if errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, nats.ErrBadSubject) {
		return false
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.Code == 503 || apiErr.Code == 408
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, nats.ErrConnectionReconnecting) || errors.Is(err, jetstream.ErrAsyncPublishTimeout) ||
		errors.Is(err, nats.ErrDisconnected)
}

// Publish publishes data on subject and returns once a stream has stored
// it (on a replicated stream: a quorum of its servers). msgID, when not
// empty, is sent as Nats-Msg-Id, and then an attempt that got no answer
// (a server died, a stream leader is being elected) is retried with the
// same id until ctx ends, so the message is stored once however often it
// was sent; the PubAck's Duplicate field says the stream had it already.
// Without msgID it is not retried.
func Publish(ctx context.Context, js jetstream.JetStream, subject string, data []byte, msgID string) (*jetstream.PubAck, error) {
	return publishMsg(ctx, js, &nats.Msg{Subject: subject, Data: data}, msgID)
}

func publishMsg(ctx context.Context, js jetstream.JetStream, m *nats.Msg, msgID string, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	if msgID != "" {
		opts = append(opts, jetstream.WithMsgID(msgID))
	}
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		ack, err := js.PublishMsg(actx, m, opts...)
		cancel()
		if err == nil {
			return ack, nil
		}
		if ctx.Err() != nil || msgID == "" || !transient(err) {
			return nil, fmt.Errorf("bus: publish on %s (msg id %q, attempt %d): %w", m.Subject, msgID, attempt, err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("bus: publish on %s (msg id %q, attempt %d): %w (last: %v)", m.Subject, msgID, attempt, ctx.Err(), err)
		case <-time.After(retryWait):
		}
	}
}

// PublishAll publishes msgs without waiting for each acknowledgement in
// turn, then waits for all of them; messages that failed transiently are
// retried one by one as Publish does. Every message must carry its own
// Nats-Msg-Id header (ShareMsgID for a share). It returns the
// acknowledgements in the order of msgs, or the first error.
func PublishAll(ctx context.Context, js jetstream.JetStream, msgs []*nats.Msg) ([]*jetstream.PubAck, error) {
	for i, m := range msgs {
		if m.Header.Get(jetstream.MsgIDHeader) == "" {
			return nil, fmt.Errorf("bus: publish all: message %d of %d on %s has no %s header", i, len(msgs), m.Subject, jetstream.MsgIDHeader)
		}
	}
	futures := make([]jetstream.PubAckFuture, len(msgs))
	acks := make([]*jetstream.PubAck, len(msgs))
	retry := make([]bool, len(msgs))
	for i, m := range msgs {
		f, err := js.PublishMsgAsync(m)
		if err != nil {
			if !transient(err) && !errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
				return nil, fmt.Errorf("bus: publish all: message %d of %d on %s (msg id %q): %w", i, len(msgs), m.Subject, m.Header.Get(jetstream.MsgIDHeader), err)
			}
			retry[i] = true
			continue
		}
		futures[i] = f
	}
	// An acknowledgement that never comes (lost with a connection, say)
	// must not hold the caller for ever: past attemptTimeout the message
	// is sent again below, one by one with Publish's timeouts; the
	// Nats-Msg-Id makes a second copy a duplicate the stream drops.
	late := time.NewTimer(attemptTimeout)
	defer late.Stop()
	expired := false
	for i, f := range futures {
		if f == nil {
			continue
		}
		if expired {
			select {
			case ack := <-f.Ok():
				acks[i] = ack
			default:
				retry[i] = true
			}
			continue
		}
		select {
		case ack := <-f.Ok():
			acks[i] = ack
		case err := <-f.Err():
			if !transient(err) {
				return nil, fmt.Errorf("bus: publish all: message %d of %d on %s (msg id %q): %w", i, len(msgs), msgs[i].Subject, msgs[i].Header.Get(jetstream.MsgIDHeader), err)
			}
			retry[i] = true
		case <-late.C:
			expired = true
			retry[i] = true
		case <-ctx.Done():
			return nil, fmt.Errorf("bus: publish all: waiting for %d acknowledgements: %w", len(msgs), ctx.Err())
		}
	}
	for i, again := range retry {
		if !again {
			continue
		}
		m := msgs[i]
		// A fresh message: the failed one may still be referenced by the
		// client's async state.
		c := &nats.Msg{Subject: m.Subject, Data: m.Data, Header: nats.Header{}}
		id := m.Header.Get(jetstream.MsgIDHeader)
		for k, v := range m.Header {
			if k != jetstream.MsgIDHeader {
				c.Header[k] = v
			}
		}
		ack, err := publishMsg(ctx, js, c, id)
		if err != nil {
			return nil, fmt.Errorf("bus: publish all: message %d of %d: %w", i, len(msgs), err)
		}
		acks[i] = ack
	}
	return acks, nil
}

// NewMsg returns a message on subject with data and Nats-Msg-Id msgID, for
// PublishAll.
func NewMsg(subject string, data []byte, msgID string) *nats.Msg {
	m := nats.NewMsg(subject)
	m.Data = data
	m.Header.Set(jetstream.MsgIDHeader, msgID)
	return m
}
