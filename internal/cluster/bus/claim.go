package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ErrTaken is wrapped by the error of ClaimKey when another candidate holds
// the key.
var ErrTaken = errors.New("bus: key is held by another candidate")

// ClaimKey is one attempt at what Elect waits for: it creates key in kv (a
// bucket with a TTL) as id and returns the Leader that renews it, or an
// error wrapping ErrTaken at once when the key exists. Callers that pick
// one of many keys (extranonce1 prefix leases) try the next key on
// ErrTaken instead of waiting. The Leader behaves as one returned by
// Elect: renewed every ttl/3 with a revision-checked update, Lost closed
// when a renewal is refused or has not succeeded for 9/10 of ttl, and the
// key deleted when ctx ends or Resign is called.
func ClaimKey(ctx context.Context, kv jetstream.KeyValue, key, id string, ttl time.Duration) (*Leader, error) {
	if id == "" {
		return nil, fmt.Errorf("bus: claim key %q: empty candidate id", key)
	}
	if ttl <= 0 {
		return nil, fmt.Errorf("bus: claim key %q: ttl %v: want > 0", key, ttl)
	}
	sent := time.Now()
	actx, cancel := context.WithTimeout(ctx, attemptTimeout)
	rev, err := kv.Create(actx, key, []byte(id))
	cancel()
	if keyTaken(err) {
		return nil, fmt.Errorf("%w: claim key %q of bucket %s as %q: %v", ErrTaken, key, kv.Bucket(), id, err)
	}
	if err != nil {
		return nil, fmt.Errorf("bus: claim key %q of bucket %s as %q: %w", key, kv.Bucket(), id, err)
	}
	return newLeader(ctx, kv, key, id, ttl, rev, sent), nil
}

// Transient reports whether err is one a retry may cure: a timeout, no
// responders while a stream elects its leader, a reconnecting connection.
func Transient(err error) bool { return transient(err) }

// keyTaken reports whether a create failed because the key exists: the
// wrong-last-sequence answer, whose code differs on replicated streams
// (10164) from a single copy (10071), and which a create returns raw when
// it raced with a delete of the key.
func keyTaken(err error) bool {
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}
