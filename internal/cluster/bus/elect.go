package bus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrNotLeader is wrapped by the errors of a Leader that is no longer (or
// never was) the holder of its key.
var ErrNotLeader = errors.New("bus: not the leader")

// Leader is a won election: the candidate's id is the value of the key,
// and a goroutine renews it every ttl/3 with an update that expects the
// revision of the previous one, so that the renewal of a leader whose key
// was taken over (it expired while the leader was cut off or paused)
// fails rather than overwriting the new leader's.
//
// A leader stops believing it leads (Lost is closed) when a renewal is
// refused, or when it has not renewed for 9/10 of the TTL (it cannot reach
// the cluster), which is before the key can have expired: a standby can
// only take over after that.
type Leader struct {
	kv   jetstream.KeyValue
	key  string
	id   string
	ttl  time.Duration
	term uint64

	renewMu sync.Mutex // one renewal at a time

	mu         sync.Mutex
	rev        uint64    // revision of our last write
	validUntil time.Time // we may act as leader until then
	err        error     // why leadership ended
	lost       chan struct{}

	stop chan struct{} // closed by Resign
	done chan struct{} // closed when the renewer has returned
}

// Elect campaigns for key in the KV bucket kv (whose TTL must be set; see
// EnsureStreams) as id, and returns once this candidate is the leader: when
// the key does not exist it creates it, otherwise it waits (watching the
// key, and trying again every ttl/4) until the key is deleted or expires.
// ttl is the leadership's lease: it must be positive and at most the
// bucket's TTL. ids must be unique among candidates (a host name plus a
// random suffix, say).
//
// The leader renews the key until ctx ends or Resign is called (both
// delete the key so a standby takes over at once) or leadership is lost;
// Lost reports the end. Elect fails only when ctx ends first or the
// election cannot be held at all (no such bucket, closed connection, bad
// key).
func Elect(ctx context.Context, kv jetstream.KeyValue, key, id string, ttl time.Duration) (*Leader, error) {
	if id == "" {
		return nil, fmt.Errorf("bus: elect on key %q: empty candidate id", key)
	}
	if ttl <= 0 {
		return nil, fmt.Errorf("bus: elect on key %q: ttl %v: want > 0", key, ttl)
	}
	st, err := retry(ctx, kv.Status)
	if err != nil {
		return nil, fmt.Errorf("bus: elect on key %q: reading bucket %s: %w", key, kv.Bucket(), err)
	}
	if st.TTL() <= 0 {
		return nil, fmt.Errorf("bus: elect on key %q: bucket %s has no TTL, so a dead leader's key would never expire", key, kv.Bucket())
	}
	if ttl > st.TTL() {
		return nil, fmt.Errorf("bus: elect on key %q: ttl %v is longer than bucket %s's TTL %v: the key would expire while its leader still believes it leads",
			key, ttl, kv.Bucket(), st.TTL())
	}

	var updates <-chan jetstream.KeyValueEntry
	if w, err := kv.Watch(ctx, key, jetstream.MetaOnly()); err == nil {
		defer w.Stop()
		updates = w.Updates()
	}
	poll := time.NewTimer(0)
	defer poll.Stop()
	for {
		sent := time.Now()
		// Bounded: a request sent while the bucket's stream elects its
		// leader goes unanswered. (A create whose answer was lost leaves
		// the key held under our id until it expires: slower, not wrong.)
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		rev, err := kv.Create(actx, key, []byte(id))
		cancel()
		if err == nil {
			return newLeader(ctx, kv, key, id, ttl, rev, sent), nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("bus: elect on key %q of bucket %s as %q: %w", key, kv.Bucket(), id, ctx.Err())
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !transient(err) {
			return nil, fmt.Errorf("bus: elect on key %q of bucket %s as %q: %w", key, kv.Bucket(), id, err)
		}
		// Wait until the key looks free, or the next poll.
		poll.Reset(ttl / 4)
	wait:
		for {
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("bus: elect on key %q of bucket %s as %q: %w", key, kv.Bucket(), id, ctx.Err())
			case <-poll.C:
				break wait
			case e, ok := <-updates:
				if !ok {
					updates = nil
					continue
				}
				if e != nil && e.Operation() != jetstream.KeyValuePut {
					break wait // deleted, purged or expired
				}
			}
		}
	}
}

func newLeader(ctx context.Context, kv jetstream.KeyValue, key, id string, ttl time.Duration, rev uint64, sent time.Time) *Leader {
	l := &Leader{
		kv: kv, key: key, id: id, ttl: ttl, term: rev,
		rev: rev, validUntil: sent.Add(ttl * 9 / 10),
		lost: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{}),
	}
	go l.renewer()
	go l.watchdog()
	go func() {
		select {
		case <-ctx.Done():
			c, cancel := context.WithTimeout(context.Background(), attemptTimeout)
			l.Resign(c)
			cancel()
		case <-l.lost:
		}
	}()
	return l
}

// Term returns the key's revision when this leader won. Every later
// leader of the key has a greater term.
func (l *Leader) Term() uint64 { return l.term }

// ID returns the candidate id this leader holds the key as.
func (l *Leader) ID() string { return l.id }

// Lost returns a channel closed when leadership has ended; Err then says
// why.
func (l *Leader) Lost() <-chan struct{} { return l.lost }

// Err returns nil while this candidate leads, and afterwards why it
// stopped (an error wrapping ErrNotLeader).
func (l *Leader) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// ValidUntil returns the time until which this leader may act as leader
// without renewing again (9/10 of the TTL after its last successful
// renewal was sent).
func (l *Leader) ValidUntil() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.validUntil
}

func (l *Leader) lose(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err == nil {
		l.err = err
		close(l.lost)
	}
}

// Renew extends the lease now (the renewer goroutine also does it every
// ttl/3). It fails with an error wrapping ErrNotLeader when the key has
// been taken over or leadership has otherwise ended.
func (l *Leader) Renew(ctx context.Context) error {
	l.renewMu.Lock()
	defer l.renewMu.Unlock()
	if err := l.Err(); err != nil {
		return err
	}
	l.mu.Lock()
	rev, validUntil := l.rev, l.validUntil
	l.mu.Unlock()
	if !time.Now().Before(validUntil) {
		err := fmt.Errorf("%w: key %q of bucket %s: lease ran out at %s (9/10 of the TTL %v after the last renewal)",
			ErrNotLeader, l.key, l.kv.Bucket(), validUntil.Format(time.RFC3339Nano), l.ttl)
		l.lose(err)
		return err
	}
	rctx, cancel := context.WithDeadline(ctx, validUntil)
	defer cancel()
	sent := time.Now()
	newRev, err := l.kv.Update(rctx, l.key, []byte(l.id), rev)
	if err == nil {
		l.mu.Lock()
		l.rev, l.validUntil = newRev, sent.Add(l.ttl*9/10)
		l.mu.Unlock()
		return nil
	}
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
		// An earlier renewal whose answer was lost may have gone through.
		if e, gerr := l.kv.Get(rctx, l.key); gerr == nil && string(e.Value()) == l.id && e.Revision() > rev {
			l.mu.Lock()
			l.rev, l.validUntil = e.Revision(), sent.Add(l.ttl*9/10)
			l.mu.Unlock()
			return nil
		}
		err := fmt.Errorf("%w: key %q of bucket %s was taken over (renewing %q at revision %d: %v)", ErrNotLeader, l.key, l.kv.Bucket(), l.id, rev, err)
		l.lose(err)
		return err
	}
	if errors.Is(err, nats.ErrConnectionClosed) {
		err := fmt.Errorf("%w: key %q of bucket %s: connection closed: %v", ErrNotLeader, l.key, l.kv.Bucket(), err)
		l.lose(err)
		return err
	}
	if !time.Now().Before(validUntil) {
		err := fmt.Errorf("%w: key %q of bucket %s could not be renewed within 9/10 of the TTL %v: %v", ErrNotLeader, l.key, l.kv.Bucket(), l.ttl, err)
		l.lose(err)
		return err
	}
	return fmt.Errorf("bus: renewing key %q of bucket %s (still leader until %s): %w", l.key, l.kv.Bucket(), validUntil.Format(time.RFC3339Nano), err)
}

func (l *Leader) renewer() {
	defer close(l.done)
	t := time.NewTimer(l.ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-l.lost:
			return
		case <-t.C:
		}
		err := l.Renew(context.Background())
		switch {
		case err == nil:
			t.Reset(l.ttl / 3)
		case errors.Is(err, ErrNotLeader):
			return
		default:
			t.Reset(l.ttl / 10) // transient: try again soon
		}
	}
}

// watchdog ends leadership when the time the last renewal bought runs
// out, whether or not a renewal is still waiting for its answer: a
// renewal stuck behind a congested connection must not let a leader act
// past its lease.
func (l *Leader) watchdog() {
	t := time.NewTimer(time.Until(l.ValidUntil()))
	defer t.Stop()
	for {
		select {
		case <-l.lost:
			return
		case <-l.done:
			return // resigned
		case <-t.C:
		}
		vu := l.ValidUntil()
		if d := time.Until(vu); d > 0 {
			t.Reset(d)
			continue
		}
		l.lose(fmt.Errorf("%w: key %q of bucket %s: lease ran out at %s (9/10 of the TTL %v after the last renewal; no renewal came back in time)",
			ErrNotLeader, l.key, l.kv.Bucket(), vu.Format(time.RFC3339Nano), l.ttl))
		return
	}
}

// Resign ends leadership: it stops renewing and deletes the key (only if
// it still holds this leader's last revision), so a standby takes over at
// once instead of after the TTL.
func (l *Leader) Resign(ctx context.Context) error {
	l.mu.Lock()
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.mu.Unlock()
	<-l.done
	l.renewMu.Lock()
	defer l.renewMu.Unlock()
	if l.Err() != nil {
		return nil // already lost: the key is someone else's, or gone
	}
	l.mu.Lock()
	rev := l.rev
	l.mu.Unlock()
	l.lose(fmt.Errorf("%w: resigned key %q of bucket %s", ErrNotLeader, l.key, l.kv.Bucket()))
	if err := l.kv.Delete(ctx, l.key, jetstream.LastRevision(rev)); err != nil && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return fmt.Errorf("bus: resigning key %q of bucket %s at revision %d: %w", l.key, l.kv.Bucket(), rev, err)
	}
	return nil
}

// Holder returns the id holding key in kv and the key's revision, or ""
// when nobody holds it.
func Holder(ctx context.Context, kv jetstream.KeyValue, key string) (id string, revision uint64, err error) {
	e, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return "", 0, nil
	}
	if err != nil {
		return "", 0, fmt.Errorf("bus: reading key %q of bucket %s: %w", key, kv.Bucket(), err)
	}
	return string(e.Value()), e.Revision(), nil
}
